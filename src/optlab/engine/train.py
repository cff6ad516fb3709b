"""The training loop over a group of R runs that share a shape (DESIGN principle 3).

Parameters are stacked on a leading run axis; the loss is the sum over runs of each
run's mean cross-entropy, so each run's slice of the gradient is exactly its own
gradient. Metrics stay on the device and reach the store once per ``eval_every``
steps: per-step training loss, eval loss and accuracy (also at step 0), and test
loss and accuracy at the end. A run whose training loss turns NaN or infinite is
recorded as diverged at that step; the other runs of its group go on.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from optlab.config import RunSpec
from optlab.engine.allocator import keep_freed_memory
from optlab.engine.data import Batches
from optlab.engine.optimizer import StackedOptimizer
from optlab.models import Model, Params, build_model
from optlab.probes import Evaluation
from optlab.probes.outputs import OUTPUTS, output_sums
from optlab.probes.recorder import Recorder
from optlab.stacking import stack_runs
from optlab.store import Store
from optlab.tasks.voronoi import Environment, make_environment

# runs × points × width per eval forward pass: 4 MB of float32 activations stay in cache,
# about 5× faster here than 8192 point·runs at width 2048 (measured, centers at R = 1 and 32)
EVAL_CHUNK_ELEMENTS = 2**20
# the fewest points an eval chunk keeps when a stack is wide: at 16 points per chunk (32 runs
# of width 2048) the fixed cost per forward call made centers' eval 10% slower (measured)
EVAL_MIN_POINTS = 256
# runs × batch × width per training forward/backward: a wide stack trains a slice of its
# runs at a time, each run's gradient bitwise unchanged, so that activations stay in cache
# (1 MB: centers at R = 32, B = 32 steps 1.5× faster than in one piece, measured here)
TRAIN_CHUNK_ELEMENTS = 2**18
# compiled graphs kept per process (torch's default, 8, would fall back to eager silently
# in a sweep of many models and stack sizes)
COMPILED_SHAPES = 64

LossFunction = Callable[[Model, Params, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Outcome:
    run_id: str
    diverged_step: int | None
    test_loss: float
    test_accuracy: float


def environment_for(spec: RunSpec) -> Environment:
    t = spec.task
    return make_environment(t.dim, t.classes, spec.n_train, t.n_eval, t.n_test, t.seed, t.rule)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run_losses(logits: Tensor, y: Tensor, runs: int) -> Tensor:
    """Mean cross-entropy of each run: logits (R or 1, B, C), y (R or 1, B) -> (R,)."""
    logits = logits.expand(runs, *logits.shape[1:])
    y = y.expand(runs, y.shape[-1])
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
    return ce.view(runs, -1).mean(1)


@torch.no_grad()
def evaluate(
    model: Model,
    params: Params,
    x: Tensor,
    y: Tensor,
    runs: int,
    keep_predictions: bool = False,
) -> Evaluation:
    """Loss, accuracy and output statistics of each run on (x, y), without autograd, in
    pieces of about ``EVAL_CHUNK_ELEMENTS`` activations: a slice of runs times a chunk of points."""
    slices, chunk = eval_pieces(runs, len(x), model.width)
    if not params:  # nothing per run (``exact``): one forward serves the stack
        slices = [slice(0, runs)]
    counts = torch.bincount(y, minlength=model.classes)
    majority, minority = int(counts.argmax()), int(counts.argmin())
    loss_sum = x.new_zeros(runs)
    correct = x.new_zeros(runs)
    sums = x.new_zeros(runs, len(OUTPUTS))
    predictions = [[] for _ in slices]
    for part, kept in zip(slices, predictions, strict=True):
        sub = {k: p[part] for k, p in params.items()}
        r = part.stop - part.start
        for lo in range(0, len(x), chunk):
            xb, yb = x[None, lo : lo + chunk], y[None, lo : lo + chunk]
            logits = model.forward(sub, xb).expand(r, -1, -1)
            loss_sum[part] += run_losses(logits, yb, r) * xb.shape[1]
            predicted = logits.argmax(-1)
            correct[part] += (predicted == yb).sum(1)
            sums[part] += output_sums(logits, majority, minority)
            if keep_predictions:
                kept.append(predicted)
    n = len(x)
    return Evaluation(
        loss=loss_sum / n,
        accuracy=correct / n,
        outputs=dict(zip(OUTPUTS, (sums / n).T, strict=True)),
        predictions=torch.cat([torch.cat(k, 1) for k in predictions]) if keep_predictions else None,
    )


def eval_pieces(runs: int, points: int, width: int) -> tuple[list[slice], int]:
    """Run slices and the point chunk of an eval, each piece about ``EVAL_CHUNK_ELEMENTS``
    activations: as many runs together as leave chunks of ``EVAL_MIN_POINTS`` points, so
    that a wide stack does not shrink the chunk to a few points."""
    per = max(1, EVAL_CHUNK_ELEMENTS // (min(points, EVAL_MIN_POINTS) * width))
    chunk = max(1, EVAL_CHUNK_ELEMENTS // (min(per, runs) * width))
    return [slice(lo, min(lo + per, runs)) for lo in range(0, runs, per)], chunk


def build_stack(
    specs: Sequence[RunSpec], device: torch.device
) -> tuple[Environment, Model, Params]:
    """The runs' task, their model, and their initial parameters stacked on the run axis
    (each drawn from its own training seed), on ``device`` and ready for autograd."""
    env = environment_for(specs[0])
    model = build_model(specs[0].model, env).to(device)
    inits = [model.init(torch.Generator().manual_seed(s.train.seed)) for s in specs]
    return env, model, {k: v.to(device).requires_grad_() for k, v in stack_runs(inits).items()}


def run_slices(runs: int, batch: int, width: int) -> list[slice]:
    """The stack's runs in slices of about ``TRAIN_CHUNK_ELEMENTS`` activations each."""
    per = max(1, TRAIN_CHUNK_ELEMENTS // (batch * width))
    return [slice(lo, min(lo + per, runs)) for lo in range(0, runs, per)]


def stack_losses(model: Model, params: Params, x: Tensor, y: Tensor) -> Tensor:
    """Each run's mean cross-entropy (R,) for a stack of parameters: the function a step
    differentiates, and what ``train.compile`` compiles."""
    runs = next(iter(params.values())).shape[0]
    return run_losses(model.forward(params, x), y, runs)


@functools.cache
def compiled_stack_losses() -> LossFunction:
    """``stack_losses`` through ``torch.compile`` (Inductor, static shapes), one per process:
    its guards take a new model of the same kind and shapes without compiling again."""
    torch._dynamo.config.cache_size_limit = COMPILED_SHAPES
    return torch.compile(stack_losses, dynamic=False)


def loss_and_grads(
    losses_of: LossFunction,
    model: Model,
    params: Params,
    x: Tensor,
    y: Tensor,
    slices: Sequence[slice],
) -> tuple[Tensor, list[Tensor]]:
    """Each run's loss (R,) and the gradients of their sum, one slice of runs at a time.

    The runs are independent, so a slice's gradient is exactly its runs' part of the whole
    stack's; with one slice this is a plain backward over the stack."""
    if len(slices) == 1:
        loss = losses_of(model, params, x, y)
        return loss, list(torch.autograd.grad(loss.sum(), list(params.values())))
    grads = [torch.empty_like(p) for p in params.values()]
    losses = []
    for part in slices:
        sub = {k: p.detach()[part].requires_grad_() for k, p in params.items()}
        xs, ys = (x, y) if x.shape[0] == 1 else (x[part], y[part])
        loss = losses_of(model, sub, xs, ys)
        for buf, g in zip(grads, torch.autograd.grad(loss.sum(), list(sub.values())), strict=True):
            buf[part] = g
        losses.append(loss.detach())
    return torch.cat(losses), grads


def train_group(
    specs: Sequence[RunSpec],
    store: Store,
    on_steps: Callable[[int], None] = lambda n: None,
) -> list[Outcome]:
    """Train runs that differ only in numbers (seed, lr, decay, betas, eps) as one stack."""
    keep_freed_memory()
    spec = specs[0]
    runs, run_ids = len(specs), [s.run_id for s in specs]
    device = resolve_device(spec.train.device)
    env, model, params = build_stack(specs, device)
    seeds, sizes = [s.train.seed for s in specs], spec.train.batch_sizes
    optimizer = StackedOptimizer(
        [s.optimizer for s in specs], params, spec.train.steps, seeds, sizes
    )
    batches = Batches(env, spec.train.data, sizes, seeds, device)
    eval_x, eval_y = env.tensors("eval", device)
    steps, every = spec.train.steps, spec.train.eval_every
    recorder = Recorder(
        spec.probes,
        run_ids,
        params,
        optimizer,
        every,
        scale_invariant=getattr(model, "scale_invariant", ()),
        task=task_arrays(env, eval_x, eval_y),
    )

    def observe(step: int, final: bool = False) -> tuple[list, list]:
        """Eval loss and accuracy plus every probe's rows at ``step``."""
        keep = recorder.wants_predictions and recorder.arrays_due(step, final)
        ev = evaluate(model, params, eval_x, eval_y, runs, keep_predictions=keep)
        rows, arrays = recorder.record(step, params, ev, final)
        return _eval_rows(run_ids, step, ev.loss, ev.accuracy, "eval") + rows, arrays

    store.start(run_ids, f"{device}, compiled" if spec.train.compile else str(device))
    started = time.perf_counter()
    train_loss = torch.zeros(every, runs, device=device)
    diverged_at = torch.full((runs,), -1, dtype=torch.long, device=device)
    rows, arrays = observe(0)
    store.log(rows, arrays)
    last_flush = 0
    slices = run_slices(runs, max(sizes), model.width)
    losses_of = compiled_stack_losses() if spec.train.compile else stack_losses
    for t in range(steps):
        x, y = batches(t)
        recorded = (t + 1) % every == 0 or t + 1 == steps
        if not params:
            loss = run_losses(model.forward(params, x), y, runs)
        else:
            loss, grads = loss_and_grads(losses_of, model, params, x, y, slices)
            if recorded and recorder.wants_update:
                recorder.before_step(params, grads)
            optimizer.step(grads)
            if recorded and recorder.wants_update:
                recorder.after_step(params)
        loss = loss.detach()
        train_loss[t - last_flush] = loss
        if not recorded:
            continue
        window = train_loss[: t + 1 - last_flush]
        diverged_at = first_divergence(window, last_flush, diverged_at)
        rows = _train_rows(run_ids, last_flush, window.cpu())
        on_steps(runs * (t + 1 - last_flush))  # run-steps, as the progress bar counts
        last_flush = t + 1
        if t + 1 == steps or bool((diverged_at >= 0).all()):
            on_steps(runs * (steps - last_flush))
            break
        eval_rows, arrays = observe(t + 1)
        store.log(rows + eval_rows, arrays)
    seconds = time.perf_counter() - started
    test_x, test_y = env.tensors("test", device)
    test = evaluate(model, params, test_x, test_y, runs)
    eval_rows, arrays = observe(last_flush, final=True)
    rows += eval_rows + _eval_rows(run_ids, last_flush, test.loss, test.accuracy, "test")
    diverged = [int(d) if d >= 0 else None for d in diverged_at.tolist()]
    store.finish([(i, d, seconds) for i, d in zip(run_ids, diverged, strict=True)], rows, arrays)
    loss, acc = (v.tolist() for v in (test.loss, test.accuracy))
    return [Outcome(*fields) for fields in zip(run_ids, diverged, loss, acc, strict=True)]


def first_divergence(losses: Tensor, first: int, diverged_at: Tensor) -> Tensor:
    """``diverged_at`` (R,), −1 for runs still finite, given the training losses (n, R) of
    steps first+1 … first+n: a run's first step whose loss is NaN or infinite, checked
    once per window at the eval cadence rather than every step."""
    bad = ~torch.isfinite(losses)
    step = bad.int().argmax(0) + first + 1  # argmax gives the first of equal maxima
    return torch.where((diverged_at < 0) & bad.any(0), step, diverged_at)


def task_arrays(env: Environment, eval_x: Tensor, eval_y: Tensor) -> dict[str, Tensor]:
    """What pictures of predictions need from the task: eval points, labels and centers;
    class labels as uint8 where they fit (up to 256 classes), else int32."""
    labels = torch.uint8 if env.classes <= 256 else torch.int32
    return {
        "eval_points": eval_x,
        "eval_labels": eval_y.to(labels),
        "centers": torch.from_numpy(env.centers),
        "center_labels": torch.from_numpy(env.center_labels).to(labels),
    }


def _train_rows(run_ids: Sequence[str], first: int, losses: Tensor) -> list:
    """Rows for the training loss of steps first+1 .. first+len(losses), one per run."""
    return [
        (run_id, "train", "loss", first + i + 1, value)
        for i, per_run in enumerate(losses.tolist())
        for run_id, value in zip(run_ids, per_run, strict=True)
    ]


def _eval_rows(
    run_ids: Sequence[str], step: int, loss: Tensor, accuracy: Tensor, split: str
) -> list:
    return [
        row
        for run_id, lo, acc in zip(run_ids, loss.tolist(), accuracy.tolist(), strict=True)
        for row in ((run_id, split, "loss", step, lo), (run_id, split, "accuracy", step, acc))
    ]
