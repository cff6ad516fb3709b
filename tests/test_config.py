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
        (
            {"name": "torch.optim.RMSprop", "decay": "l1"},
            "optimizer.decay: 'l1' is not allowed: torch.optim.RMSprop does not take decay; "
            "it takes lr, alpha, eps, weight_decay, momentum, centered",
        ),
        (
            {"name": "torch.optim.SGD", "betas": [0.8, 0.9]},
            "optimizer.betas: (0.8, 0.9) is not allowed: torch.optim.SGD does not take betas",
        ),
        (
            {"name": "torch.optim.AdamW", "decay_groups": {"b": 0.0}},
            "optimizer.decay_groups: {'b': 0.0} is not allowed: torch.optim.AdamW does not take",
        ),
        (
            {"name": "torch.optim.Adam", "bias_correction": "exact"},
            "optimizer.bias_correction: 'exact' is not allowed: torch.optim.Adam does not take",
        ),
        (
            {"name": "torch.optim.SGD", "momentum": 0.9, "kwargs": {"momentum": 0.5}},
            "optimizer.kwargs.momentum: 0.5 is not allowed: optimizer.momentum is set too",
        ),
        (
            {"name": "torch.optim.SGD", "kwargs": {"lr": 0.5}},
            "optimizer.kwargs.lr: 0.5 is not allowed: optimizer.lr is set too",
        ),
        (
            {"name": "torch.optim.SGD", "kwargs": {"betas": [0.9, 0.9]}},
            "optimizer.kwargs.betas: [0.9, 0.9] is not allowed: torch.optim.SGD takes lr, momentum",
        ),
        (
            {"name": "torch.optim.SGD", "nesterov": True},
            "optimizer.name: 'torch.optim.SGD' is not allowed: with {'lr': 0.001, 'nesterov': "
            "True}: ValueError: Nesterov momentum requires a momentum",
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


def test_an_import_path_optimizer_gets_the_fields_set_that_its_class_takes():
    """A field at its spec default leaves the class's own default (RMSprop's weight decay
    is 0, the spec's 1e-2); one set away from it is passed; kwargs pass as they are."""
    from optlab.config import OptimizerSpec

    rmsprop = OptimizerSpec(name="torch.optim.RMSprop", lr=0.1)
    assert rmsprop.torch_arguments() == {"lr": 0.1}
    fields = {"weight_decay": 0.0, "momentum": 0.9, "alpha": 0.9, "centered": True, "eps": 1e-6}
    assert OptimizerSpec(name="torch.optim.RMSprop", **fields).torch_arguments() == {
        "lr": 1e-3,
        **fields,
    }
    adam = OptimizerSpec(name="torch.optim.Adam", betas=(0.8, 0.99), kwargs={"amsgrad": True})
    assert adam.torch_arguments() == {"lr": 1e-3, "betas": (0.8, 0.99), "amsgrad": True}
    schedule = {"kind": "cosine"}  # applied by the engine to η, not passed
    assert OptimizerSpec(name="torch.optim.SGD", lr_schedule=schedule).torch_arguments() == {
        "lr": 1e-3
    }


@pytest.mark.parametrize(
    "model,fragment",
    [
        (
            {"name": "exact", "hidden_dim": 64},
            "model.hidden_dim: 64 is not allowed: exact does not read it (it reads no model "
            "option); model.hidden_dim is read by centers, generalized, final",
        ),
        (
            {"name": "plus_minus", "nonlinearity": "gelu"},
            "model.nonlinearity: 'gelu' is not allowed: plus_minus does not read it",
        ),
        (
            {"name": "centers", "activation": "abs"},
            "model.activation: 'abs' is not allowed: centers does not read it (it reads "
            "hidden_dim); model.activation is read by generalized",
        ),
        (
            {"name": "generalized", "init": "normal"},
            "model.init: 'normal' is not allowed: generalized does not read it (it reads "
            "hidden_dim, activation)",
        ),
        (
            {"name": "final", "activation": "abs"},
            "model.activation: 'abs' is not allowed: final does not read it (it reads "
            "hidden_dim, nonlinearity, init, layernorm_normalization)",
        ),
        (
            {"name": "final", "kwargs": {"width": 8}},
            "model.kwargs: {'width': 8} is not allowed: final does not read it",
        ),
        (
            {"name": "mlp", "init": "normal"},
            "model.init: 'normal' is not allowed: mlp is an nn.Module factory: its arguments "
            "go in model.kwargs",
        ),
    ],
)
def test_a_model_option_the_model_does_not_read_is_one_line(model, fragment):
    task = {"name": "digits"} if model["name"] == "mlp" else {}
    with pytest.raises(SpecError) as err:
        load_experiment({"name": "t", "base": {"model": model, "task": task}})
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_every_hand_written_model_declares_the_options_it_reads():
    from optlab.config import HAND_OPTIONS, MODEL_OPTIONS, ModelSpec
    from optlab.models import MODEL_DEFAULTS, MODELS

    assert set(MODEL_OPTIONS) == set(MODELS)
    assert all(set(reads) <= set(HAND_OPTIONS) for reads in MODEL_OPTIONS.values())
    # a model with a default width reads hidden_dim, and only those do
    assert {m for m, reads in MODEL_OPTIONS.items() if "hidden_dim" in reads} == {
        m for m, width in MODEL_DEFAULTS.items() if width is not None
    }
    # each option a model reads may be set away from its default; any at its default is no error
    away = dict(
        hidden_dim=8,
        nonlinearity="gelu",
        init="normal",
        layernorm_normalization=True,
        activation="abs",
    )
    for name, reads in MODEL_OPTIONS.items():
        assert ModelSpec(name=name, **{f: away[f] for f in reads}).name == name
        at_default = {f: ModelSpec.model_fields[f].default for f in HAND_OPTIONS}
        assert ModelSpec(name=name, **at_default).name == name


def test_an_override_of_what_cases_set_is_noted_with_the_runs_left():
    from optlab.config import overridden_note

    spec = load_experiment("ladder")
    overrides = {"model.name": "centers"}
    runs = expand(spec, overrides, seeds=[1, 2])
    note = overridden_note(spec, overrides, "paper", runs)
    assert note == (
        "--set model.name=centers overrides what cases exact, center_labels, learn_offset, "
        "offset_scale, abs_relu, plus_minus, centers, generalized set: they now train the "
        "same model (8 cases → 4 distinct runs per seed)"  # 4 learning rates among the 8
    )
    lr = {"optimizer.lr": 1e-3, "optimizer.weight_decay": 0.0}
    note = overridden_note(spec, {**overrides, **lr}, "paper", expand(spec, {**overrides, **lr}))
    assert note.endswith(
        "they now share optimizer.weight_decay=0.0 (8 cases → 1 distinct run per seed)"
    )
    assert "cases generalized set" in note  # only generalized sets its weight decay
    assert overridden_note(spec, {"optimizer.eps": 1e-6}, "paper", []) is None
    final = load_experiment("final")  # the width cases, set in the spec and again by quick
    assert overridden_note(final, {"model.hidden_dim": 16}, "quick", []) == (
        "--set model.hidden_dim=16 overrides what cases hidden_256, hidden_1024, hidden_2048 "
        "set: they now share model.hidden_dim=16"
    )


def test_an_override_of_a_grid_axis_is_noted():
    from optlab.config import overridden_note

    spec = load_experiment({"name": "g", "grid": {"optimizer.lr": [1e-3, 1e-2]}, "seeds": [1, 2]})
    overrides = {"optimizer.lr": 3e-3}
    note = overridden_note(spec, overrides, "paper", expand(spec, overrides))
    assert note == (
        "--set optimizer.lr=0.003 replaces the values of the grid axis optimizer.lr "
        "(2 runs → 1 distinct run per seed)"
    )


def test_a_profile_runs_its_own_default_seeds():
    final = load_experiment("final")
    assert final.seeds_for("paper") == final.seeds == [42]
    assert final.seeds_for("quick") == list(range(42, 51))
    quick = expand(final, profile="quick")
    assert sorted({r.spec.train.seed for r in quick}) == list(range(42, 51))
    assert {r.spec.train.seed for r in expand(final)} == {42}
    assert {r.spec.train.seed for r in expand(final, profile="quick", seeds=[7])} == {7}


def test_a_profiles_seeds_must_be_ints():
    tree = {"name": "x", "profiles": {"quick": {"seeds": "many"}}}
    with pytest.raises(SpecError, match="profiles.quick.seeds: 'many' is not allowed"):
        load_experiment(tree)


def test_precision_is_how_a_run_is_computed_not_what_it_is():
    """bf16 keeps the run id, as compile and the device do (its numeric path says it:
    tests/engine/test_precision.py); the old id of an fp32 run holds."""
    bf16 = {"train": {"precision": "bf16", "force_precision": True}}
    assert RunSpec.model_validate(bf16).run_id == RunSpec().run_id == "940936394e9bc162"


@pytest.mark.parametrize(
    "overrides,fragment",
    [
        ({"train.precision": "fp16"}, "train.precision: 'fp16'"),
        (
            {"train.precision": "bf16", "train.dtype": "float64"},
            "train.precision: 'bf16' is not allowed: it autocasts float32 matmuls, and "
            "train.dtype is 'float64'",
        ),
        (
            {"train.force_precision": True},
            "train.force_precision: True is not allowed: it forces bf16 on a device without "
            "native bfloat16, and train.precision is 'fp32'",
        ),
    ],
)
def test_a_precision_that_cannot_apply_is_one_line(overrides, fragment):
    with pytest.raises(SpecError) as err:
        expand(load_experiment("ladder"), overrides)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_a_folder_named_like_a_catalog_experiment_leaves_the_name_the_catalogs(
    tmp_path, monkeypatch
):
    (tmp_path / "ladder").mkdir()  # e.g. a folder of the ladder's results
    monkeypatch.chdir(tmp_path)
    assert load_experiment("ladder").name == "ladder"
