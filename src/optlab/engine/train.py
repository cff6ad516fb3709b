"""The training loop over a group of R runs that share a shape (DESIGN principle 3).

Parameters are stacked on a leading run axis; the loss is the sum over runs of each
run's mean loss (the task's: cross-entropy or ½·squared error), so each run's slice of
the gradient is exactly its own gradient. Buffers (BatchNorm's running statistics) are
stacked the same way, per run, and passed to the model beside the parameters. Metrics
stay on the device and reach the store once per ``eval_every`` steps: per-step training
loss, eval loss and accuracy (also at step 0) and the task's own metrics (bits per
character), and the same on the test set at the end. A run whose training loss turns NaN or infinite is
recorded as diverged at that step; the other runs of its group go on.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from optlab.config import RunSpec
from optlab.engine.allocator import keep_freed_memory
from optlab.engine.batch_control import BatchControl
from optlab.engine.curvature import PROBE_POINTS, CurvatureStep, gauss_newton_pass
from optlab.engine.data import Batches, task_tensors
from optlab.engine.grad_moments import PROBE_EXAMPLES, Spread, probe_spreads
from optlab.engine.losses import run_losses
from optlab.engine.norms import SHADOW, NormControl, needs_scale_invariant, shadows
from optlab.engine.optimizer import StackedOptimizer, update_path
from optlab.engine.per_sample import check_per_sample
from optlab.engine.precision import check_precision, model_outputs
from optlab.models import MODELS, Model, Params, build_model
from optlab.probes import Evaluation
from optlab.probes.outputs import OUTPUTS, output_sums
from optlab.probes.recorder import Recorder
from optlab.stacking import stack_runs
from optlab.store import Store
from optlab.store.record import GroupRecord
from optlab.tasks import Task, build_task, extra_metrics

# runs × points × width per eval forward pass: 4 MB of float32 activations stay in cache,
# about 5× faster here than 8192 point·runs at width 2048 (measured, centers at R = 1 and 32)
EVAL_CHUNK_ELEMENTS = 2**20
# the fewest points an eval chunk keeps when a stack is wide: at 16 points per chunk (32 runs
# of width 2048) the fixed cost per forward call made centers' eval 10% slower (measured)
EVAL_MIN_POINTS = 256
EVAL_CHUNK_RUNS = 32  # the stack an eval chunk is sized for; fewer runs take bigger slices
# runs × batch × width per training forward/backward: a wide stack trains a slice of its
# runs at a time, each run's gradient bitwise unchanged, so that activations stay in cache
# (1 MB: centers at R = 32, B = 32 steps 1.5× faster than in one piece, measured here)
TRAIN_CHUNK_ELEMENTS = 2**18
# compiled graphs kept per process (torch's default, 8, would fall back to eager silently
# in a sweep of many models and stack sizes)
COMPILED_SHAPES = 64

LossFunction = Callable[[Model, Params, Tensor, Tensor, str, str, Tensor | None], Tensor]


@dataclass(frozen=True)
class Outcome:
    run_id: str
    diverged_step: int | None
    test_loss: float
    test_accuracy: float | None  # None for a regression


def task_for(spec: RunSpec) -> Task:
    """The run's task (data drawn once per process and task)."""
    return build_task(spec.task, spec.n_train if spec.task.name == "voronoi" else 0)


def check_buildable(specs: Sequence[RunSpec]) -> None:
    """Build each distinct task and model of ``specs`` once, so that a factory that fails, a
    model that cannot serve its task, a batch controller on a model without per-example
    gradients (BatchNorm), a text that is not the catalog's or bf16 where the device lacks it
    stops a sweep before anything is written (a ``ValueError`` with one line). The voronoi
    task with a hand-written model always builds and is not drawn here (drawing it can take
    seconds)."""
    seen = set()
    for spec in specs:
        check_precision(spec, resolve_device(spec.train.device))
        key = json.dumps([spec.task.model_dump(mode="json"), spec.model.model_dump(mode="json")])
        if spec.model.name in MODELS:
            _check_kfac(spec, None)  # a hand-written model has no taped Linear layers
        if key in seen or (spec.task.name == "voronoi" and spec.model.name in MODELS):
            continue
        seen.add(key)
        model = build_model(spec.model, task_for(spec))
        if spec.model.name not in MODELS:
            _check_kfac(spec, model)
        if spec.train.batch_controller != "none":  # its tests read per-example gradients
            check_per_sample(model, f"train.batch_controller: {spec.train.batch_controller!r}")
        if "grad_stats" in spec.probes.record:
            check_per_sample(model, "probes.record: grad_stats")
        setting = needs_scale_invariant(spec)
        if setting and not getattr(model, "scale_invariant", ()):
            raise ValueError(
                f"{setting} acts on scale-invariant weights (a bias-free Linear into a "
                f"normalizer), and model {spec.model.name} has none"
            )


def _check_kfac(spec: RunSpec, model: Model | None) -> None:
    """K-FAC steps Linear layers that optlab's stacked path tapes: an nn.Sequential of the
    layers it stacks (``model.fast``); a hand-written model has none."""
    if spec.optimizer.name == "kfac" and getattr(model, "fast", None) is None:
        raise ValueError(
            f"optimizer.name: kfac needs an nn.Sequential of Linear layers (of the layers "
            f"optlab stacks); model {spec.model.name} is not one"
        )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def evaluate(
    model: Model,
    params: Params,
    x: Tensor,
    y: Tensor,
    runs: int,
    keep_predictions: bool = False,
    loss: str = "cross_entropy",
    precision: str = "fp32",
) -> Evaluation:
    """Loss, accuracy and output statistics of each run on (x, y), without autograd, in
    pieces of about ``EVAL_CHUNK_ELEMENTS`` activations: a slice of runs times a chunk of
    points, in the run's ``precision``. A regression (``half_mse``) has neither accuracy nor
    output statistics; a sequence's every position counts as one target."""
    slices, chunk = eval_pieces(runs, len(x), model.width)
    if getattr(model, "whole_set_eval", False):
        chunk = len(x)
    if not params:  # nothing per run (``exact``): one forward serves the stack
        slices = [slice(0, runs)]
    classify = loss == "cross_entropy"
    if classify:
        counts = torch.bincount(y.reshape(-1), minlength=model.classes)
        majority, minority = int(counts.argmax()), int(counts.argmin())
    dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()  # tokens: int
    loss_sum = torch.zeros(runs, dtype=dtype, device=x.device)
    correct = loss_sum.new_zeros(runs)
    sums = loss_sum.new_zeros(runs, len(OUTPUTS))
    predictions = [[] for _ in slices]
    for part, kept in zip(slices, predictions, strict=True):
        sub = {k: p[part] for k, p in params.items()}
        r = part.stop - part.start
        for lo in range(0, len(x), chunk):
            xb, yb = x[None, lo : lo + chunk], y[None, lo : lo + chunk]
            out = model_outputs(model, sub, xb, precision)
            out = out.expand(r, *out.shape[1:])
            loss_sum[part] += run_losses(out, yb, r, loss) * xb.shape[1]
            if not classify:
                continue
            predicted = out.argmax(-1)
            correct[part] += (predicted == yb).reshape(r, -1).sum(1)
            sums[part] += output_sums(out.reshape(r, -1, out.shape[-1]), majority, minority)
            if keep_predictions:
                kept.append(predicted)
    n, targets = len(x), y.numel()
    return Evaluation(
        loss=loss_sum / n,
        accuracy=correct / targets if classify else None,
        outputs=dict(zip(OUTPUTS, (sums / targets).T, strict=True)) if classify else {},
        predictions=torch.cat([torch.cat(k, 1) for k in predictions]) if keep_predictions else None,
    )


def eval_pieces(runs: int, points: int, width: int) -> tuple[list[slice], int]:
    """Run slices and the point chunk of an eval, each piece about ``EVAL_CHUNK_ELEMENTS``
    activations. The chunk depends on the width alone: chunks of points (at least
    ``EVAL_MIN_POINTS``, so that a wide stack does not shrink them to a few) sized for
    ``EVAL_CHUNK_RUNS`` runs, and as many runs per slice as fill a piece. A run's eval then
    sums the same chunks in any stack, and its loss is bitwise the same alone or stacked."""
    chunk = max(EVAL_MIN_POINTS, EVAL_CHUNK_ELEMENTS // (EVAL_CHUNK_RUNS * width))
    per = max(1, EVAL_CHUNK_ELEMENTS // (min(chunk, points) * width))
    return [slice(lo, min(lo + per, runs)) for lo in range(0, runs, per)], chunk


@dataclass
class Stack:
    """R runs set up for training: their task, model, and parameters and buffers stacked on
    the run axis (each run drawn from its own training seed), on one device."""

    task: Task
    model: Model
    params: Params  # trained, ready for autograd
    buffers: Params  # per-run state the forward updates itself (BatchNorm's running statistics)
    dtype: torch.dtype
    precision: str  # train.precision: bf16 autocasts the forward's matmuls

    @property
    def state(self) -> Params:
        """What the model's forward takes: the parameters and the buffers, one dict."""
        return {**self.params, **self.buffers} if self.buffers else self.params


def build_stack(specs: Sequence[RunSpec], device: torch.device) -> Stack:
    """The runs' task and model, their initial parameters and buffers stacked, on ``device``."""
    task = task_for(specs[0])
    model = build_model(specs[0].model, task).to(device)
    dtype = getattr(torch, specs[0].train.dtype)
    generators = [torch.Generator().manual_seed(s.train.seed) for s in specs]
    params = stack_runs([model.init(g) for g in generators])
    buffers = {}
    if hasattr(model, "init_buffers"):
        buffers = stack_runs([model.init_buffers(g) for g in generators])
    return Stack(
        task,
        model,
        {k: v.to(device, dtype).requires_grad_() for k, v in params.items()},
        {k: v.to(device, dtype if v.is_floating_point() else None) for k, v in buffers.items()},
        dtype,
        specs[0].train.precision,
    )


def run_slices(runs: int, batch: int, width: int) -> list[slice]:
    """The stack's runs in slices of about ``TRAIN_CHUNK_ELEMENTS`` activations each."""
    per = max(1, TRAIN_CHUNK_ELEMENTS // (batch * width))
    return [slice(lo, min(lo + per, runs)) for lo in range(0, runs, per)]


def stack_losses(
    model: Model,
    state: Params,
    x: Tensor,
    y: Tensor,
    loss: str = "cross_entropy",
    precision: str = "fp32",
    mask: Tensor | None = None,
) -> Tensor:
    """Each run's mean loss (R,) for a stack of parameters (and buffers), its forward in
    ``precision``, over its own examples where ``mask`` marks them: the function a step
    differentiates, and what ``train.compile`` compiles."""
    runs = next(iter(state.values())).shape[0]
    return run_losses(model_outputs(model, state, x, precision), y, runs, loss, mask)


@functools.cache
def compiled_stack_losses() -> LossFunction:
    """``stack_losses`` through ``torch.compile`` (Inductor, static shapes), one per process:
    its guards take a new model of the same kind and shapes without compiling again."""
    torch._dynamo.config.cache_size_limit = COMPILED_SHAPES
    return torch.compile(stack_losses, dynamic=False)


def loss_and_grads(
    losses_of: LossFunction,
    stack: Stack,
    x: Tensor,
    y: Tensor,
    slices: Sequence[slice],
    mask: Tensor | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """Each run's loss (R,) and the gradients of their sum, one slice of runs at a time;
    ``mask`` (R, B): each run's own examples of a padded batch (a batch controller's).

    The runs are independent, so a slice's gradient is exactly its runs' part of the whole
    stack's; with one slice this is a plain backward over the stack. A slice's buffers are
    views of the stack's, so what the forward writes to them lands in the stack."""
    params, buffers, loss_kind = stack.params, stack.buffers, stack.task.loss
    if len(slices) == 1:
        loss = losses_of(stack.model, stack.state, x, y, loss_kind, stack.precision, mask)
        return loss, list(torch.autograd.grad(loss.sum(), list(params.values())))
    grads = [torch.empty_like(p) for p in params.values()]
    losses = []
    for part in slices:
        sub = {k: p.detach()[part].requires_grad_() for k, p in params.items()}
        state = {**sub, **{k: b[part] for k, b in buffers.items()}}
        xs, ys = (x, y) if x.shape[0] == 1 else (x[part], y[part])
        own = None if mask is None else mask[part]
        loss = losses_of(stack.model, state, xs, ys, loss_kind, stack.precision, own)
        for buf, g in zip(grads, torch.autograd.grad(loss.sum(), list(sub.values())), strict=True):
            buf[part] = g
        losses.append(loss.detach())
    return torch.cat(losses), grads


def train_group(
    specs: Sequence[RunSpec],
    store: Store | GroupRecord,
    on_steps: Callable[[int], None] = lambda n: None,
    redo: bool = False,
) -> list[Outcome]:
    """Train runs that differ only in numbers (seed, lr, decay, betas, eps) as one stack:
    those the store leases to this process (another may be training the rest; done runs
    only if ``redo``), or all of them into a ``GroupRecord`` that a driver will write."""
    keep_freed_memory()
    spec = specs[0]
    torch.set_flush_denormal(spec.train.flush_subnormals)
    device = resolve_device(spec.train.device)
    leased = set(store.start([s.run_id for s in specs], numeric_path(spec, device), redo))
    specs = [s for s in specs if s.run_id in leased]
    if not specs:
        return []
    own = len(specs)  # the stored runs; grafted runs' shadow partners follow them
    specs = [*specs, *shadows(specs)]
    runs, run_ids = len(specs), [s.run_id for s in specs[:own]]
    run_ids += [f"{s.run_id}{SHADOW}" for s in specs[own:]]
    stack = build_stack(specs, device)
    task, model, params = stack.task, stack.model, stack.params
    norms = NormControl(specs[:own], getattr(model, "scale_invariant", ()), device)
    norms(params)
    seeds, sizes = [s.train.seed for s in specs], spec.train.batch_sizes
    batches = Batches(task, spec.train.data, sizes, seeds, device, stack.dtype)
    control = BatchControl(specs, len(batches.x), device)
    optimizer = StackedOptimizer(
        [s.optimizer for s in specs],
        params,
        spec.train.steps,
        seeds,
        sizes if spec.train.batch_lr == "scale" else None,
        per_run_lr=control.kind != "none" and control.scale_lr,
    )
    eval_x, eval_y = task_tensors(task, "eval", device, stack.dtype)
    steps, every = spec.train.steps, spec.train.eval_every
    recorder = Recorder(
        spec.probes,
        run_ids,
        params,
        optimizer,
        every,
        steps,
        functools.partial(batch_of, control, batches.effective_sizes, runs),
        scale_invariant=getattr(model, "scale_invariant", ()),
        task=task.arrays(),
        scalars_of=getattr(model, "scalars", None),
        gauss_newton=functools.partial(gauss_newton_pass, stack, eval_x[:PROBE_POINTS]),
        # the training examples reach the device only where the probe will read them
        per_sample=per_sample_probe(stack, device) if "grad_stats" in spec.probes.record else None,
    )

    def observe(step: int, final: bool = False) -> tuple[list, list]:
        """Eval loss and accuracy plus every probe's rows at ``step``."""
        keep = recorder.wants_predictions and recorder.arrays_due(step, final)
        ev = evaluate(model, stack.state, eval_x, eval_y, runs, keep, task.loss, stack.precision)
        rows, arrays = recorder.record(step, params, ev, final)
        return _eval_rows(run_ids, step, ev, task, "eval") + rows, arrays

    started = time.perf_counter()
    train_loss = torch.zeros(every, runs, device=device, dtype=stack.dtype)
    diverged_at = torch.full((runs,), -1, dtype=torch.long, device=device)
    rows, arrays = observe(0)
    batch_rows = control.rows(run_ids, 0) if control.varies else []
    store.log(_stored(rows + batch_rows), _stored(arrays))
    last_flush = 0
    slices = run_slices(runs, max(sizes), model.width)
    losses_of = compiled_stack_losses() if spec.train.compile else stack_losses
    curvature = None  # K-FAC's steps record each Linear layer's statistics too
    if spec.optimizer.name == "kfac":
        curvature = CurvatureStep(spec.optimizer.curvature, seeds)
    grad_rows = []  # grad-cadence rows of steps between evals, stored with the next eval's
    for t in range(steps):
        mask = None
        if control.kind == "none":
            x, y = batches(t)
            if control.varies:  # a milestone schedule: its samples counted for the rows
                control.at(t)
        else:
            x, y, mask = batches.per_run(control.at(t))
            slices = run_slices(runs, x.shape[1], model.width)
        recorded = (t + 1) % every == 0 or t + 1 == steps
        grad_step = recorder.grad_due(t + 1)
        if not params:
            loss = run_losses(model_outputs(model, params, x, stack.precision), y, runs, task.loss)
        else:
            if curvature is None:
                loss, grads = loss_and_grads(losses_of, stack, x, y, slices, mask)
            else:
                loss, grads, layers = curvature(stack, x, y)
                optimizer.fold_curvature(layers)
            if control.due(t + 1, steps):
                if (factors := control.check(t + 1, stack, x, y, mask, grads)) is not None:
                    optimizer.set_run_lr(factors)
            keep_update = (recorded or grad_step) and recorder.wants_update
            if keep_update:
                recorder.before_step(t + 1, params, grads)
            optimizer.step(grads)
            if norms.active:
                norms(params)
            if keep_update:
                recorder.after_step(params)
        loss = loss.detach()
        train_loss[t - last_flush] = loss
        if grad_step and not recorded:
            grad_rows += recorder.record(t + 1, params, None)[0]
        if not recorded:
            continue
        window = train_loss[: t + 1 - last_flush]
        diverged_at = first_divergence(window, last_flush, diverged_at)
        rows, grad_rows = _train_rows(run_ids, last_flush, window.cpu()) + grad_rows, []
        if control.varies:
            rows += control.rows(run_ids, t + 1)
        on_steps(runs * (t + 1 - last_flush))  # run-steps, as the progress bar counts
        last_flush = t + 1
        if t + 1 == steps or bool((diverged_at >= 0).all()):
            on_steps(runs * (steps - last_flush))
            break
        eval_rows, arrays = observe(t + 1)
        store.log(_stored(rows + eval_rows), _stored(arrays))
    seconds = time.perf_counter() - started
    test_x, test_y = task_tensors(task, "test", device, stack.dtype)
    test = evaluate(
        model, stack.state, test_x, test_y, runs, loss=task.loss, precision=stack.precision
    )
    eval_rows, arrays = observe(last_flush, final=True)
    rows += eval_rows + _eval_rows(run_ids, last_flush, test, task, "test")
    diverged = [int(d) if d >= 0 else None for d in diverged_at.tolist()][:own]
    run_ids = run_ids[:own]
    done = [(i, d, seconds) for i, d in zip(run_ids, diverged, strict=True)]
    store.finish(done, _stored(rows), _stored(arrays))
    loss = test.loss.tolist()[:own]
    acc = [None] * own if test.accuracy is None else test.accuracy.tolist()[:own]
    return [Outcome(*fields) for fields in zip(run_ids, diverged, loss, acc, strict=True)]


def batch_of(control: BatchControl, sizes: Sequence[int], runs: int, step: int) -> list[int]:
    """Each run's batch B in the step that led to ``step`` (step 1's at step 0): the batch
    controller's own per run, else the schedule's (as the data serves it)."""
    if control.kind != "none":
        return control.used
    return [sizes[max(step, 1) - 1]] * runs


def per_sample_probe(stack: Stack, device: torch.device) -> Callable[[], dict[str, Spread]]:
    """The grad_stats probe's per-coordinate moments of per-example gradients (``Spread``),
    on the first training examples (in
    stream mode the first batches' points: a sample of the distribution every batch is
    drawn from)."""
    check_per_sample(stack.model, "probes.record: grad_stats")
    x, y = (t[None, :PROBE_EXAMPLES] for t in stack.task.tensors("train"))
    x, y = (t.to(device, stack.dtype if t.is_floating_point() else None) for t in (x, y))
    return functools.partial(probe_spreads, stack, x, y)


def numeric_path(spec: RunSpec, device: torch.device) -> str:
    """How a run is computed, beside what it is (its id): torch's version, the device, the
    dtype and with bf16 its autocast (``engine.precision``), compiled or eager, on CPU
    whether subnormals are flushed, and after " | " the
    update (fused kernel, pure rule, torch.optim class). Runs of one id computed along two
    paths agree only up to float rounding, which chaotic runs amplify; the analysis compares
    runs of one path's machine part (``optlab.analysis.paths``), the update following from
    each run's config there."""
    dtype = getattr(torch, spec.train.dtype)
    parts = [
        f"torch {torch.__version__}",
        str(device),
        spec.train.dtype,
        *(["bf16 autocast"] if spec.train.precision == "bf16" else []),
        "compiled" if spec.train.compile else "eager",
    ]
    if spec.train.flush_subnormals and device.type == "cpu":
        parts.append("subnormals flushed")
    update = update_path(spec.optimizer, spec.train.steps, dtype, device)
    return f"{', '.join(parts)} | {update}"


def first_divergence(losses: Tensor, first: int, diverged_at: Tensor) -> Tensor:
    """``diverged_at`` (R,), −1 for runs still finite, given the training losses (n, R) of
    steps first+1 … first+n: a run's first step whose loss is NaN or infinite, checked
    once per window at the eval cadence rather than every step."""
    bad = ~torch.isfinite(losses)
    step = bad.int().argmax(0) + first + 1  # argmax gives the first of equal maxima
    return torch.where((diverged_at < 0) & bad.any(0), step, diverged_at)


def _stored(rows: list) -> list:
    """Rows (or arrays) without those of shadow partners, which the store never holds."""
    return [r for r in rows if not r[0].endswith(SHADOW)]


def _train_rows(run_ids: Sequence[str], first: int, losses: Tensor) -> list:
    """Rows for the training loss of steps first+1 .. first+len(losses), one per run."""
    return [
        (run_id, "train", "loss", first + i + 1, value)
        for i, per_run in enumerate(losses.tolist())
        for run_id, value in zip(run_ids, per_run, strict=True)
    ]


def _eval_rows(run_ids: Sequence[str], step: int, ev: Evaluation, task: Task, split: str) -> list:
    """Loss, accuracy (classification) and the task's own metrics, one row each per run."""
    named = {"loss": ev.loss}
    if ev.accuracy is not None:
        named["accuracy"] = ev.accuracy
    named.update(extra_metrics(task, ev.loss))
    values = {name: v.tolist() for name, v in named.items()}
    return [
        (run_id, split, name, step, per_run[i])
        for i, run_id in enumerate(run_ids)
        for name, per_run in values.items()
    ]
