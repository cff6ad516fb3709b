"""The command line: bad input exits 2 with one line and writes nothing; run, show, list."""

import json
import os
import sys

import pytest
from typer.testing import CliRunner

from optlab.analysis.claims import judge
from optlab.analysis.cost import training_time
from optlab.cli import app
from optlab.config import load_experiment
from optlab.store import Store

runner = CliRunner()
TINY = ["--set", "train.steps=40", "--set", "task.n_eval=100", "--set", "task.n_test=100"]
RMSPROP = ["run", "ladder", "--set", "optimizer.name=torch.optim.RMSprop"]
CONTROL = ["--set", "train.batch_controller=norm_test", "--set", "train.batch_theta=0.5"]
HUGE_STREAM = ["--set", "train.steps=10000000", "--set", "train.batch_size=1024"]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (
            ["run", "nope"],
            "catalog: adaptive_batch, charlm, digits, final, gradient_noise, gradient_noise_centers",
        ),
        (["run", "ladder", "--set", "optimizer.lr=-1"], "optimizer.lr: -1"),
        (["run", "ladder", "--set", "optimizer.betas=[0.9, 1.5]"], "optimizer.betas"),
        (["run", "ladder", "--set", "train.batch_size=0"], "train.batch_size: 0"),
        (["run", "final", "--cases", "baseline,nope"], "--cases: 'nope' is not a case here"),
        (["run", "ladder", "--set", "task.classes=1"], "task.classes: 1"),
        (["run", "ladder", "--set", "task.dim=0"], "task.dim: 0"),
        (["run", "ladder", "--set", "bogus.key=1"], "unknown key 'bogus.key'"),
        (["run", "ladder", "--set", "model.name=mlpx"], "valid: exact"),
        (["run", "ladder", "--set", "task.name=nope"], "task.name: 'nope' is not a task"),
        (["run", "mg_toy", "--set", "model.name=centers"], "read the voronoi task's centers"),
        (["run", "digits", "--set", "model.kwargs.depth=-1"], "failed to build"),
        (["run", "digits", "--set", "model.kwargs.bogus=1"], "model.kwargs"),
        (["run", "digits", "--set", "model.hidden_dim=8"], "model.kwargs"),
        (["run", "digits", "--set", "train.data=stream"], "train.data"),
        (["run", "digits", "--set", "model.name=no_such_pkg.nets:make"], "cannot import"),
        (["run", "charlm", "--set", "task.sha256=beef"], "task.sha256: the text"),
        (["run", "ladder", "--set", "task.seed=4294967296"], "task.seed: 4294967296"),
        (["run", "ladder", "--set", "optimizer.name=adamx"], "valid: adamw"),
        (["run", "ladder", "--set", "optimizer.decay=l3"], "valid: l2, l1, min, none"),
        (["run", "ladder", "--seeds", "0"], "--seeds: 0"),
        (["run", "ladder", "--profile", "huge"], "no 'huge' profile; valid: paper, quick"),
        (["run", "ladder", "--set", 'probes.record=["nope"]'], "unknown probe; valid: params"),
        (["report"], "--store"),
        (["export", "tensorboard"], "--store"),
        (["run", "ladder", "--workers", "0"], "--workers: 0"),
        (
            ["reproduce", "nope"],
            "catalog: adaptive_batch, charlm, digits, final, gradient_noise, gradient_noise_centers",
        ),
        (["reproduce", "paper", "--seeds", "0"], "--seeds: 0"),
        (["reproduce", "paper", "--workers", "0"], "--workers: 0"),
        (
            ["run", "ladder", "--executor", "dask"],
            "--executor: 'dask' is not allowed: one of local, ray",
        ),
        (["reproduce", "paper", "--executor", "mpi"], "--executor: 'mpi' is not allowed"),
        (
            ["run", "ladder", "--address", "10.0.0.1:6379"],
            "--address: '10.0.0.1:6379' is not allowed with --executor local",
        ),
        (
            ["run", "ladder", "--executor", "ray", "--address", "127.0.0.1:1"],
            "--address: '127.0.0.1:1' is not a Ray cluster this machine can join: nothing answers",
        ),
        (["run", "ladder", "--max-memory", "lots"], "--max-memory: 'lots'"),
        (["reproduce", "paper", "--max-memory", "-1G"], "--max-memory: '-1G'"),
        (
            [*RMSPROP, "--set", "optimizer.decay=l1"],
            "optimizer.decay: 'l1' is not allowed: torch.optim.RMSprop does not take decay; it "
            "takes lr, alpha, eps, weight_decay, momentum, centered",
        ),
        (
            [*RMSPROP, "--set", "optimizer.decay_groups={b = 0.0}"],
            "optimizer.decay_groups: {'b': 0.0} is not allowed: torch.optim.RMSprop does not take",
        ),
        (
            ["run", "ladder", "--set", "model.hidden_dim=64"],
            "model.hidden_dim: 64 is not allowed: exact does not read it (it reads no model "
            "option); model.hidden_dim is read by centers, generalized, final",
        ),
        (
            ["run", "optimization", "--set", "model.nonlinearity=gelu"],
            "model.nonlinearity: 'gelu' is not allowed: centers does not read it",
        ),
        (
            ["run", "final", "--set", "model.activation=abs"],
            "model.activation: 'abs' is not allowed: final does not read it",
        ),
        (
            ["run", "digits", "--set", "model.init=normal"],
            "model.init: 'normal' is not allowed: mlp is an nn.Module factory",
        ),
        (
            ["run", "ladder", *HUGE_STREAM, "--max-memory", "64G"],
            "train.steps × train.batch_size: 10,000,000 × 1,024 points need ~687 GB in stream "
            "mode (10,240,020,000 points drawn with the training, eval and test sets); "
            "--max-memory is 64 GB",
        ),
        (
            ["run", "ladder", "--set", "task.n_test=100000000", "--max-memory", "4G"],
            "task.n_test: 100,000,000 points need ~",
        ),
        (
            ["run", "optimization", "--set", "model.hidden_dim=10000000", "--max-memory", "1G"],
            "model.hidden_dim: 10,000,000 (centers) at train.batch_size 32: one run needs ~15 GB",
        ),
        (
            ["run", "digits", "--set", "train.batch_controller=sizes"],
            "train.batch_controller: 'sizes' is not allowed: Input should be 'none', "
            "'norm_test' or 'inner_product'",
        ),
        (
            ["run", "digits", "--set", "train.batch_controller=norm_test"],
            "train.batch_theta: None is not allowed: batch_controller 'norm_test' needs its "
            "threshold",
        ),
        (
            ["run", "digits", *CONTROL, "--set", "train.batch_nu=2"],
            "train.batch_nu: 2.0 is not allowed: only batch_controller 'inner_product' reads it, "
            "not 'norm_test'",
        ),
        (
            ["run", "digits", *CONTROL, "--set", "train.batch_max=8"],
            "train.batch_max: 8 is not allowed: below batch_size 128",
        ),
        (
            ["run", "digits", *CONTROL, "--set", "train.batch_factor=1"],
            "train.batch_factor: 1 is not allowed: a controller grows by 2 or more",
        ),
        (
            ["run", "digits", *CONTROL, "--set", "train.batch_milestones=[100]"],
            "train.batch_milestones: [100.0] is not allowed: batch_controller 'norm_test' sets "
            "the batch",
        ),
        (
            ["run", "digits", "--set", "train.batch_every=5"],
            "train.batch_every: 5 is not allowed: only a batch_controller reads it",
        ),
        (
            ["run", "digits", "--set", "train.batch_lr=hold"],
            "train.batch_lr: 'hold' is not allowed: the batch never grows",
        ),
        (
            ["run", "digits", *CONTROL, "--set", "model.kwargs.normalization=batchnorm"],
            "train.batch_controller: 'norm_test' needs per-example gradients, which a BatchNorm",
        ),
        (
            ["run", "ladder", *CONTROL],
            "train.batch_controller: 'norm_test' is not allowed: needs train.data 'dataset'",
        ),
        (
            ["run", "mg_toy", "--set", "task.samples=10000000"],  # beyond any machine
            "task.samples: 10,000,000 makes inputs of 10,000,000 × 10,000,001 in each of the 3 "
            "splits, ~2.8 PB; this machine has",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, fragment):
    store = tmp_path / "store" / "optlab.db"
    result = runner.invoke(app, [*args, "--store", str(store)])
    assert result.exit_code == 2
    assert fragment in result.output and result.output.strip().count("\n") == 0
    assert not store.parent.exists()


@pytest.mark.parametrize(
    "args,option",
    [
        (["run", "ladder", "--executor", "ray"], "--executor ray"),
        (["reproduce", "paper", "--executor", "ray"], "--executor ray"),
        (["bench", "--executors"], "--executors"),
    ],
)
def test_ray_without_ray_says_how_to_install_it(tmp_path, monkeypatch, args, option):
    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` raises ImportError
    store = tmp_path / "store" / "optlab.db"
    store_args = [] if args[0] == "bench" else ["--store", str(store)]  # bench has no store
    result = runner.invoke(app, [*args, *store_args])
    assert result.exit_code == 2
    assert (
        result.output.strip() == f"error: {option}: Ray is not installed; pip install 'optlab[ray]'"
    )
    assert not store.parent.exists()


def test_run_then_show_json(tmp_path):
    store = str(tmp_path / "s.db")
    result = runner.invoke(
        app, ["run", "ladder", "--profile", "quick", "--seeds", "1", *TINY, "--store", store]
    )
    assert result.exit_code == 0, result.output
    records = json.loads(runner.invoke(app, ["show", "--json", "--store", store]).output)
    assert len(records) == 8 and {r["status"] for r in records} == {"complete"}
    exact = next(r for r in records if r["model"] == "exact")
    assert exact["test_accuracy"] == 1.0 and abs(exact["test_loss"] - 0.31326) < 1e-4
    again = runner.invoke(
        app, ["run", "ladder", "--profile", "quick", "--seeds", "1", *TINY, "--store", store]
    )
    assert "8 runs, 0 to train" in again.output


def test_run_on_a_local_ray_instance_of_two_workers(tmp_path):
    import ray

    store = str(tmp_path / "s.db")
    args = ["run", "ladder", "--profile", "quick", "--seeds", "1", *TINY, "--store", store]
    try:
        result = runner.invoke(app, [*args, "--executor", "ray", "--workers", "2"])
        # two workers, each with its share of the machine's cores
        assert ray.cluster_resources()["CPU"] == 2 * max(1, (os.cpu_count() or 1) // 2)
    finally:
        ray.shutdown()
    assert result.exit_code == 0, result.output
    records = json.loads(runner.invoke(app, ["show", "--json", "--store", store]).output)
    assert len(records) == 8 and {r["status"] for r in records} == {"complete"}
    exact = next(r for r in records if r["model"] == "exact")
    assert exact["test_accuracy"] == 1.0 and abs(exact["test_loss"] - 0.31326) < 1e-4


def test_list_and_task_plot(tmp_path):
    listing = runner.invoke(app, ["list"]).output
    assert "ladder" in listing and "probes (probes.record): params, outputs, scalars" in listing
    png = tmp_path / "env.png"
    result = runner.invoke(app, ["task", "--set", "train.steps=10", "--plot", str(png)])
    assert result.exit_code == 0 and png.stat().st_size > 10_000


def test_report_and_export_of_a_small_experiment(tmp_path):
    spec = tmp_path / "small.toml"
    spec.write_text(
        'name = "small"\n[base.model]\nname = "plus_minus"\n'
        "[base.train]\nsteps = 20\neval_every = 10\n[base.task]\nn_eval = 50\nn_test = 50\n"
    )
    store = str(tmp_path / "s.db")
    assert runner.invoke(app, ["run", str(spec), "--store", store]).exit_code == 0
    bad = runner.invoke(app, ["report", "--store", store, "--out", str(tmp_path / "r.txt")])
    assert bad.exit_code == 2 and "--out" in bad.output and not (tmp_path / "r.txt").exists()
    out = tmp_path / "r.html"
    result = runner.invoke(app, ["report", "--store", store, "--out", str(out)])
    assert result.exit_code == 0 and result.output.strip() == f"report: {out.resolve()}"
    assert "<h2>small</h2>" in out.read_text()
    logs = tmp_path / "tb"
    result = runner.invoke(app, ["export", "tensorboard", "--store", store, "--out", str(logs)])
    assert result.exit_code == 0 and "1 runs" in result.output
    assert len(list(logs.glob("small/base/*/events.out.tfevents.*"))) == 1


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--set", "optimizer.bias_correction=full"], "optimizer.bias_correction: 'full'"),
        (["--set", "optimizer.name=nested"], "valid: adamw, adam, sgd, rmsprop, nested_adam"),
        (["--set", "optimizer.lr_schedule.kind=linear"], "optimizer.lr_schedule.kind: 'linear'"),
        (["--set", "optimizer.magnitude=lion"], "a graft's child is one of adamw"),
    ],
)
def test_bad_optimizer_options_exit_2_naming_the_valid_ones(tmp_path, args, fragment):
    store = tmp_path / "store" / "optlab.db"
    result = runner.invoke(app, ["run", "optimizers", *args, "--store", str(store)])
    assert result.exit_code == 2
    assert fragment in result.output and result.output.strip().count("\n") == 0
    assert not store.parent.exists()


def test_unknown_option_in_a_toml_file_lists_the_valid_options(tmp_path):
    spec = tmp_path / "e.toml"
    spec.write_text('name = "e"\n[base.optimizer]\nname = "signum"\nbeta = 0.9\n')
    result = runner.invoke(app, ["run", str(spec), "--store", str(tmp_path / "s" / "s.db")])
    assert result.exit_code == 2
    assert "optimizer.beta: unknown option; valid: name, lr, betas" in result.output
    assert not (tmp_path / "s").exists()


def test_run_over_seeds_prints_mean_and_sd_per_case(tmp_path):
    spec = tmp_path / "e.toml"
    spec.write_text(
        'name = "e"\nseeds = [1, 2]\n[base.model]\nname = "centers"\nhidden_dim = 8\n'
        '[cases.adamw]\n"optimizer.name" = "adamw"\n'
        '[cases.graft]\n"optimizer.name" = "graft"\n"optimizer.magnitude" = "adamw"\n'
        '"optimizer.direction" = "signsgd"\n'
    )
    store = str(tmp_path / "s.db")
    result = runner.invoke(app, ["run", str(spec), *TINY, "--store", store])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "±" in line and "mean" not in line]
    assert len(rows) == 2 and "adamw" in rows[0] and "graft" in rows[1]
    assert all("│ centers │" in row for row in rows)  # the model each cell trained
    records = json.loads(runner.invoke(app, ["show", "--json", "--store", store]).output)
    for case in ("adamw", "graft"):
        accs = [r["test_accuracy"] for r in records if r["case"] == case]
        mean = sum(accs) / 2
        assert f"{mean:.4f} ± {abs(accs[0] - accs[1]) / 2**0.5:.4f}" in next(
            row for row in rows if case in row
        )


def test_reproduce_trains_what_is_missing_and_judges_the_claims_of_its_experiments(tmp_path):
    spec = tmp_path / "optimization.toml"
    spec.write_text(
        'name = "optimization"\nseeds = [1, 2]\n'
        '[base]\nmodel = {name = "centers", hidden_dim = 4}\n'
        "train = {steps = 40, eval_every = 10}\ntask = {n_eval = 100, n_test = 100}\n"
        '[cases]\nl2 = {"optimizer.decay" = "l2"}\nl1 = {"optimizer.decay" = "l1"}\n'
    )
    store = str(tmp_path / "s.db")
    args = ["reproduce", str(spec), "--json", "--workers", "1", "--store", store]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{") :])  # the runner mixes in stderr
    cells = out["cells"]["optimization"]
    assert [c["case"] for c in cells] == ["l2", "l1"] and {c["seeds"] for c in cells} == {2}
    assert [v["id"] for v in out["verdicts"]] == ["l1_lower_loss_and_settles"]
    judged, _ = judge(Store(store), experiments={"optimization"})  # what the store says
    assert [v["verdict"] for v in out["verdicts"]] == [v.verdict for v in judged]
    cost = training_time(Store(store).runs("optimization"))  # once per stack, not per run
    assert out["training_time"]["optimization"] == vars(cost) and cost.runs == 4
    assert 0 < cost.seconds and 1 <= cost.stacks <= 4
    again = runner.invoke(app, [a for a in args if a != "--json"])
    assert "4 runs, 0 to train" in again.output
    assert f"optimization: {cost}" in again.output


def test_cases_slice_a_sweep_that_a_later_run_without_them_resumes(tmp_path):
    store = str(tmp_path / "s.db")
    args = ["reproduce", "ladder", "--profile", "quick", "--seeds", "1", *TINY, "--store", store]
    sliced = runner.invoke(app, [*args, "--cases", "center_labels,learn_offset", "--json"])
    assert sliced.exit_code == 0, sliced.output
    out = json.loads(sliced.output[sliced.output.index("{") :])
    assert [c["case"] for c in out["cells"]["ladder"]] == ["center_labels", "learn_offset"]
    assert set(Store(store).runs("ladder")["case"]) == {"center_labels", "learn_offset"}
    # judged: the claims about these two cases alone; the others wait for theirs
    judged = ["center_labels_logits_diverge", "learn_offset_jump", "learn_offset_noisy"]
    assert [v["id"] for v in out["verdicts"]] == judged
    assert "offset_scale_less_noise_more_bias" in out["not_judged"]  # learn_offset and another
    assert len(out["not_judged"]) == 4
    whole = runner.invoke(app, ["run", *args[1:]])
    assert whole.exit_code == 0, whole.output
    cases = len(load_experiment("ladder").cases)
    assert f"{cases} runs, {cases - 2} to train" in whole.output


def test_a_users_own_module_trains_through_optlab_run_with_four_seeds_stacked(
    tmp_path, monkeypatch
):
    """A factory in the user's own package, named by import path, with its arguments in
    model.kwargs: four seeds train as one stack, each from its own draw."""
    package = tmp_path / "usernets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(
        "from torch import nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, d, classes, width):\n"
        "        super().__init__()\n"
        "        self.a, self.b = nn.Linear(d, width), nn.Linear(width, classes)\n\n"
        "    def forward(self, x):\n"
        "        return self.b(self.a(x).relu())\n\n"
        "def make_net(input_shape, classes, width=8):\n"
        "    return Net(input_shape[0], classes, width)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "mine.toml").write_text(
        'name = "mine"\nseeds = [0, 1, 2, 3]\n'
        '[base.task]\nname = "digits"\n'
        '[base.model]\nname = "usernets.nets:make_net"\nkwargs = { width = 16 }\n'
        "[base.train]\nsteps = 60\neval_every = 20\nbatch_size = 64\n"
        '[base.optimizer]\nlr = 1e-2\n[base.probes]\nrecord = ["params"]\n'
    )
    store = tmp_path / "s.db"
    # one worker: on two, the sweep would split the stack to keep both cores busy
    args = ["run", str(tmp_path / "mine.toml"), "--store", str(store), "--workers", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    recs = json.loads(runner.invoke(app, ["show", "--json", "--store", str(store)]).output)
    assert len(recs) == 4
    assert all(r["status"] == "complete" and r["model"] == "usernets.nets:make_net" for r in recs)
    assert len({r["train_seconds"] for r in recs}) == 1  # one stack: one training time
    db = Store(store)
    weights = db.metrics([r["id"] for r in recs], "params")
    first = weights[(weights.step == 0) & (weights.name == "a.weight/l2")]
    assert first["value"].nunique() == 4  # each seed its own initial draw
    assert all(r["test_accuracy"] > 0.6 for r in recs)  # 60 steps from 10% chance
    db.close()


def test_task_describes_every_task_in_its_own_terms():
    digits = json.loads(runner.invoke(app, ["task", "digits", "--json"]).output)
    assert sum(digits[split]["n"] for split in ("train", "eval", "test")) == 1797
    toy = json.loads(runner.invoke(app, ["task", "mg_toy", "--json"]).output)
    assert toy["weights"] == 101 and toy["min_norm_solution"]["generalizer"] == 100 / 101
    text = json.loads(runner.invoke(app, ["task", "charlm", "--json"]).output)
    assert len(text["sha256"]) == 64 and 3 < text["unigram_entropy_bits"] < 6
    pinned = load_experiment("charlm").base["task"]["sha256"]
    assert text["sha256"] == pinned  # the catalog's text is this Python's
    mismatch = runner.invoke(app, ["task", "charlm", "--set", "task.sha256=beef"])
    assert mismatch.exit_code == 2 and "task.sha256: the text" in mismatch.output


@pytest.mark.parametrize(
    "content,fragment",
    [(b"name = [unclosed", "is not valid TOML"), (b"\xff\xfe\x00binary", "is not text")],
)
def test_an_experiment_file_that_is_not_toml_is_refused_with_one_line(tmp_path, content, fragment):
    spec = tmp_path / "bad.toml"
    spec.write_bytes(content)
    store = tmp_path / "store" / "optlab.db"
    result = runner.invoke(app, ["run", str(spec), "--store", str(store)])
    assert result.exit_code == 2 and fragment in result.output
    assert result.output.strip().count("\n") == 0 and not store.parent.exists()


@pytest.mark.parametrize("seed", [-1, 2**63])
def test_a_seed_the_generator_cannot_take_is_refused_with_one_line(tmp_path, seed):
    spec = tmp_path / "seeds.toml"
    spec.write_text(f'name = "s"\nseeds = [{seed}]\n[base.train]\nsteps = 2\n')
    store = tmp_path / "store" / "optlab.db"
    result = runner.invoke(app, ["run", str(spec), "--store", str(store)])
    assert result.exit_code == 2 and f"train.seed: {seed}" in result.output
    assert result.output.strip().count("\n") == 0 and not store.parent.exists()


def test_a_file_that_is_not_a_store_is_refused_and_left_as_it_was(tmp_path):
    import optlab
    from optlab.errors import StoreError

    notes = tmp_path / "notes.txt"
    notes.write_text("not a database, " * 100)
    before = notes.read_bytes()
    for command in (["show"], ["report", "--out", str(tmp_path / "r.html")]):
        result = runner.invoke(app, [*command, "--store", str(notes)])
        assert result.exit_code == 2 and "is not an optlab store" in result.output
    with pytest.raises(StoreError, match="is not an optlab store"):
        optlab.load(notes)
    assert notes.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_an_override_of_what_cases_set_is_a_warning_and_the_tables_name_the_model(tmp_path):
    """--set model.name=centers over cases that name their models: exit 0, one warning line
    on stderr naming the cases and the runs left (the two cases are now one run per seed),
    and the tables show the model each row trained."""
    spec = tmp_path / "models.toml"
    spec.write_text(
        'name = "models"\nseeds = [1, 2]\n'
        '[cases.rung]\n"model.name" = "plus_minus"\n[cases.learned]\n"model.name" = "centers"\n'
    )
    store = str(tmp_path / "s.db")
    sets = ["--set", "model.name=centers", "--set", "model.hidden_dim=8"]
    result = runner.invoke(app, ["run", str(spec), *sets, *TINY, "--store", store])
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == (
        "warning: --set model.name=centers overrides what cases rung, learned set: they now "
        "train the same model (2 cases → 1 distinct run per seed)"
    )
    assert "4 runs, 2 to train" in result.stdout  # 2 distinct
    rows = [line for line in result.stdout.splitlines() if "complete" in line]
    assert len(rows) == 2 and all("│ rung │ centers │" in row for row in rows)  # stored first
    assert "┃ case ┃ model " in result.stdout


def test_task_refuses_a_size_no_machine_holds():
    result = runner.invoke(app, ["task", "ladder", "--set", "train.steps=10000000000"])
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0
    assert result.output.startswith(
        "error: train.steps × train.batch_size: 10,000,000,000 × 32 points need ~"
    )


def test_bf16_without_native_support_is_refused_with_one_line_unless_forced(tmp_path, monkeypatch):
    """On a CPU without AMX or AVX512-BF16 (as the detection is told here) bf16 is emulated,
    slower than fp32: refused with the field, the value, why and how to force it, exit 2,
    no store; forced, the run trains and its numeric path says bf16."""
    from optlab.engine import precision

    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    spec = tmp_path / "tiny.toml"
    spec.write_text(
        'name = "tiny"\n[base.model]\nname = "final"\nhidden_dim = 8\n'
        "[base.train]\nsteps = 10\neval_every = 5\n[base.task]\nn_eval = 50\nn_test = 50\n"
    )
    store = tmp_path / "store" / "optlab.db"
    bf16 = ["run", str(spec), "--set", "train.precision=bf16", "--store", str(store)]
    result = runner.invoke(app, bf16)
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0
    assert result.output.startswith("error: train.precision: 'bf16' has no native support on")
    assert "set train.force_precision = true" in result.output and not store.parent.exists()
    forced = runner.invoke(app, [*bf16, "--set", "train.force_precision=true", "--workers", "1"])
    assert forced.exit_code == 0, forced.output
    (path,) = Store(store).runs()["numeric_path"]
    assert ", float32, bf16 autocast, eager," in path
