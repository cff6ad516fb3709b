"""The catalog: the optimizers experiment covers every rule and stateful decay, over 3 seeds."""

from optlab.config import expand, load_experiment
from optlab.optim import OPTIMIZERS
from optlab.optim.decay import STATEFUL_DECAYS


def _names(opt):
    names = {opt.name}
    if opt.name == "graft":
        names |= {opt.child("magnitude").name, opt.child("direction").name}
    return names


def test_optimizers_catalog_runs_every_rule_and_decay_on_centers_over_three_seeds():
    for profile in ("paper", "quick"):
        runs = expand(load_experiment("optimizers"), profile=profile)
        assert {r.spec.model.name for r in runs} == {"centers"}
        cases = {r.case for r in runs}
        assert len(runs) == 3 * len(cases)
        used = set().union(*(_names(r.spec.optimizer) for r in runs))
        assert used == set(OPTIMIZERS) - {"kfac"}  # K-FAC needs Linear layers: kfac_mechanisms
        assert set(STATEFUL_DECAYS) <= {r.spec.optimizer.decay for r in runs}
        assert any(r.spec.optimizer.decay_groups for r in runs)
        assert any(r.spec.train.batch_milestones for r in runs)
        kinds = {r.spec.optimizer.lr_schedule.kind for r in runs}
        assert kinds == {"constant", "warmup", "cosine", "step"}


def test_final_model_catalog_has_a_case_per_rule_family():
    runs = expand(load_experiment("optimizers_final"), profile="quick")
    assert {r.spec.model.name for r in runs} == {"final"}
    used = set().union(*(_names(r.spec.optimizer) for r in runs))
    assert used >= set(OPTIMIZERS) - {
        "adam",
        "rmsprop",
        "signsgd",
        "kfac",
    }  # kfac: no Linear layers
