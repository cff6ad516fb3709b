"""Specs: overrides, expansion order, run ids, and one-line errors."""

import pytest

from optlab.config import RunSpec, SpecError, expand, load_experiment, load_suite, parse_override


def test_parse_override_reads_toml_values():
    assert parse_override("optimizer.lr=3e-3") == ("optimizer.lr", 3e-3)
    assert parse_override("optimizer.betas=[0.9, 0.99]") == ("optimizer.betas", [0.9, 0.99])
    assert parse_override("model.nonlinearity=gelu") == ("model.nonlinearity", "gelu")
    with pytest.raises(SpecError):
        parse_override("no-equals")


def test_ladder_expands_to_eight_rungs_with_their_learning_rates():
    runs = expand(load_experiment("ladder"))
    lrs = {r.case: r.spec.optimizer.lr for r in runs}
    assert lrs == {
        "exact": 1e-100,
        "center_labels": 1e-2,
        "learn_offset": 5e-3,
        "offset_scale": 1e-2,
        "abs_relu": 1e-2,
        "plus_minus": 5e-3,
        "centers": 1e-2,
        "generalized": 2e-2,
    }
    gen = next(r for r in runs if r.case == "generalized").spec
    assert gen.optimizer.weight_decay == 0 and gen.model.hidden_dim == 2048
    assert all(r.spec.train.steps == 10_000 and r.spec.task.n_test == 10_000 for r in runs)


def test_order_profile_then_case_then_set():
    runs = expand(load_experiment("ladder"), {"optimizer.lr": 7e-3}, profile="quick", seeds=[1, 2])
    assert len(runs) == 16 and {r.spec.optimizer.lr for r in runs} == {7e-3}
    assert {r.spec.train.steps for r in runs} == {2000} and {r.spec.train.seed for r in runs} == {
        1,
        2,
    }


def test_run_id_is_a_hash_of_the_config_without_device():
    a = RunSpec()
    assert a.run_id == RunSpec().run_id
    assert a.run_id == RunSpec.model_validate({"train": {"device": "cpu"}}).run_id
    assert a.run_id != RunSpec.model_validate({"train": {"seed": 1}}).run_id


@pytest.mark.parametrize(
    "key,value,fragment",
    [
        ("optimizer.lr", -1.0, "optimizer.lr: -1.0 is not allowed"),
        ("optimizer.betas", [0.9, 1.0], "optimizer.betas"),
        ("train.batch_size", 0, "train.batch_size: 0"),
        ("train.steps", 0, "train.steps: 0"),
        ("task.classes", 1, "task.classes: 1"),
        ("task.dim", 0, "task.dim: 0"),
        ("optimizer.decay", "l3", "valid: l2, l1, min, none"),
        ("optimizer.name", "adamx", "valid: adamw, adam, sgd, rmsprop"),
        ("model.name", "mlpx", "valid: exact, center_labels"),
        ("optimizer.lrr", 1.0, "unknown key 'optimizer.lrr'"),
    ],
)
def test_bad_values_name_field_value_and_what_is_allowed(key, value, fragment):
    with pytest.raises(SpecError, match=None) as err:
        expand(load_experiment("ladder"), {key: value})
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_import_path_optimizer_is_accepted():
    runs = expand(load_experiment("ladder"), {"optimizer.name": "torch.optim.Adagrad"})
    assert runs[0].spec.optimizer.name == "torch.optim.Adagrad"


def test_probes_default_and_unknown_probe_is_one_line():
    assert RunSpec().probes.record == ("params", "outputs", "scalars")
    with pytest.raises(SpecError, match=r"probes.record.*unknown probe; valid: params"):
        expand(load_experiment({"name": "e"}), {"probes.record": ["params", "nope"]})


@pytest.mark.parametrize(
    "optimizer,fragment",
    [
        (
            {"name": "nested", "lr": 1e-3},
            "optimizer.name: 'nested' is not allowed: unknown optimizer; valid: adamw, adam, sgd, rmsprop, nested_adam",
        ),
        (
            {"bias_corection": "exact"},
            "optimizer.bias_corection: unknown option; valid: name, lr, betas",
        ),
        (
            {"lr_schedule": {"knd": "cosine"}},
            "optimizer.lr_schedule.knd: unknown option; valid: kind, warmup",
        ),
        ({"lr_schedule": {"kind": "linear"}}, "optimizer.lr_schedule.kind: 'linear'"),
        ({"bias_correction": "full"}, "'none', 'standard' or 'exact'"),
        ({"blocks": "rows"}, "optimizer.blocks: 'rows'"),
        ({"decay": "l3"}, "grad_scaled, dropout, sign_ema"),
        ({"decay_p": 1.5}, "optimizer.decay_p: 1.5"),
        ({"name": "graft", "magnitude": "sgd"}, "graft needs magnitude and direction"),
        (
            {"name": "graft", "magnitude": "graft", "direction": "sgd"},
            "a graft's child is one of adamw",
        ),
        (
            {"name": "graft", "magnitude": {"name": "sgd", "lrr": 1}, "direction": "sgd"},
            "lrr: unknown option",
        ),
        (
            {"name": "sgd", "eps_schedule": {"kind": "lr_equivalent"}},
            "lr_equivalent is for adam and adamw",
        ),
        (
            {"eps_schedule": {"kind": "lr_equivalent"}, "lr_schedule": {"kind": "cosine"}},
            "stays > 0",
        ),
        ({"name": "sgd", "decay": "l1"}, "sgd adds λθ to its gradient; decay 'l1' is for"),
        (
            {"name": "graft", "magnitude": "sgd", "direction": "adamw", "decay": "dropout"},
            "magnitude, with what it inherits: sgd adds λθ",
        ),
        ({"name": "signum", "eps_schedule": {"kind": "warmup"}}, "signum has no eps to schedule"),
        (
            {"name": "torch.optim.Adagrad", "eps_schedule": {"kind": "warmup"}},
            "use optim.LambdaEps",
        ),
    ],
)
def test_bad_optimizer_specs_get_one_line_naming_the_valid_choices(optimizer, fragment):
    spec = {"name": "t", "base": {"optimizer": optimizer}}
    with pytest.raises(SpecError) as err:
        load_experiment(spec)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_graft_children_inherit_the_parent_fields_under_their_own():
    spec = load_experiment(
        {
            "name": "t",
            "base": {
                "optimizer": {
                    "name": "graft",
                    "lr": 0.05,
                    "weight_decay": 0.0,
                    "magnitude": {"name": "sgd", "lr": 0.5},
                    "direction": "adamw",
                }
            },
        }
    )
    opt = expand(spec)[0].spec.optimizer
    assert (opt.child("magnitude").lr, opt.child("direction").lr) == (0.5, 0.05)
    assert opt.child("direction").weight_decay == 0.0 and opt.child("direction").name == "adamw"


def test_new_keys_can_be_set_from_the_command_line_language():
    spec = load_experiment("ladder")
    runs = expand(
        spec,
        {
            "optimizer.lr_schedule.kind": "cosine",
            "optimizer.lr_schedule.warmup": 10,
            "train.batch_milestones": [100],
        },
    )
    assert runs[0].spec.optimizer.lr_schedule.warmup == 10
    assert runs[0].spec.n_train == 100 * 32 + 9_900 * 64


def test_tune_axes_expand_like_a_grid_and_profiles_override_per_case():
    spec = load_experiment("final")
    runs = expand(spec, profile="quick", seeds=[1, 2])
    assert len(runs) == 18 * 3 * 2
    widths = {r.case: r.spec.model.hidden_dim for r in runs}
    assert widths["baseline"] == 64 and widths["hidden_2048"] == 256 and widths["hidden_256"] == 32
    assert {r.spec.optimizer.lr for r in runs} == {2e-3, 3e-3, 5e-3}
    paper = expand(spec, seeds=[1])
    assert {r.spec.model.hidden_dim for r in paper if r.case == "hidden_2048"} == {2048}
    assert {r.spec.train.batch_size for r in paper} == {1024}


def test_a_suite_names_its_experiments():
    assert [s.name for s in load_suite("paper")] == ["ladder", "optimization", "final"]
    assert [s.name for s in load_suite("ladder")] == ["ladder"]


def test_profile_case_overrides_must_name_a_case():
    tree = {"name": "x", "cases": {"a": {}}, "profiles": {"quick": {"cases": {"b": {}}}}}
    with pytest.raises(SpecError, match="profiles.quick.cases: 'b' is not a case; valid: a"):
        load_experiment(tree)
