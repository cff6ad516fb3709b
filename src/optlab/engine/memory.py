"""What a plan needs in memory: how many runs of a group fit a budget (``--max-memory``), and
sizes no budget can hold, refused before anything is written.

One run in a stack costs its parameters several times over (θ, its gradient, Adam's two
moments, the update's temporaries) plus the activations autograd keeps through a step,
about a dozen (B, width) tensors for the ladder's rungs and the final model. What a
stack shares (the task's data, the eval chunk of ``train.EVAL_CHUNK_ELEMENTS``) is not
counted per run. A training process holds its task's data (for voronoi every point
drawn: the stream's Σ B_t training points, or the dataset's, and the eval and test sets)
and at least one run beside it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import torch

from optlab.config import RunSpec
from optlab.engine.train import task_for
from optlab.models import MODEL_DEFAULTS, build_model
from optlab.tasks import build_task
from optlab.tasks.voronoi import K_HIGH, LABEL_CHUNK

STATE_COPIES = 6  # θ, ∇θ, m, v, and two temporaries of the update
ACTIVATION_COPIES = 12  # (B, width) tensors kept per run between forward and backward
FLOAT_BYTES = 4  # float32
# a voronoi point while the task is drawn and kept: its D coordinates in float64 (drawn)
# and float32 (kept), and its label as int64 three times over (index, label, copy), with
# room for numpy's temporaries; a float64 run copies the coordinates once more. Measured
# peaks: the euclidean rule's within 1% at D = 2 and 4M points, 8% below at D = 8; the
# paper rule's 40% below (it keeps fewer temporaries)
POINT_BYTES_PER_DIM, POINT_BYTES = 12, 48
LABEL_SCORES = 2  # (rows, k) float64 score arrays alive at once while a chunk is labelled


def run_bytes(spec: RunSpec) -> int:
    """Estimated bytes one run adds to a stack: 4·(6·parameters + 12·B·width), B the
    largest batch of its schedule (a controller's ``batch_max``, else the voronoi training
    set's size) and width the model's widest activation per point."""
    model = build_model(spec.model, _shape_of_task(spec))
    with torch.device("meta"):  # a hand-written model's parameters counted, not allocated
        params = model.init(torch.Generator().manual_seed(0))
    n_params = sum(p.numel() for p in params.values())
    t = spec.train
    batch = max(t.batch_sizes) if t.batch_milestones else t.batch_size
    if t.batch_controller != "none":
        batch = t.batch_max or getattr(spec.task, "n_train", batch)
    return FLOAT_BYTES * (STATE_COPIES * n_params + ACTIVATION_COPIES * batch * model.width)


def _shape_of_task(spec: RunSpec):
    """The run's task, or for voronoi the same environment with one point per split: its
    centers (what a model's shape reads) are drawn before the points, so they are the same."""
    if spec.task.name != "voronoi":
        return task_for(spec)
    return build_task(spec.task.model_copy(update={"n_eval": 1, "n_test": 1}), 1)


def runs_that_fit(spec: RunSpec, max_memory: int) -> int:
    """The most runs like ``spec`` whose stack fits ``max_memory`` bytes (at least one)."""
    return max(1, max_memory // run_bytes(spec))


def data_bytes(spec: RunSpec) -> tuple[int, str]:
    """Estimated bytes a process holds for the run's task at its peak, and a line saying what
    sizes them (the fields, their values) and the estimate: 0 and "" for a task of fixed,
    small size (digits, charlm)."""
    task, t = spec.task, spec.train
    item = 8 if t.dtype == "float64" else 4
    if task.name == "mg_toy":
        n = task.samples
        # x = [I_n | 1] per split (train, eval, test) in the run's dtype, eye's float32 transient
        need = (3 * item + 8) * n * (n + 1)
        return need, (
            f"task.samples: {n:,} makes inputs of {n:,} × {n + 1:,} in each of the 3 splits, "
            f"~{size_text(need)}"
        )
    if task.name != "voronoi":
        return 0, ""
    if t.data == "dataset":
        n_train = task.n_train
    else:  # Σ B_t, without listing B_t where the batch stays B
        n_train = t.steps * t.batch_size if not t.batch_milestones else spec.n_train
    n = n_train + task.n_eval + task.n_test
    per_point = (POINT_BYTES_PER_DIM + (item if item > 4 else 0)) * task.dim + POINT_BYTES
    need = per_point * n + LABEL_SCORES * min(n, LABEL_CHUNK) * K_HIGH * 8
    if t.data == "stream":
        drawn = (
            f"train.steps × train.batch_size: {t.steps:,} × {t.batch_size:,}"
            if not t.batch_milestones
            else f"train.steps, train.batch_size and its milestones: {n_train:,}"
        )
    else:
        drawn = f"task.n_train: {n_train:,}"
    sizes = {drawn: n_train, f"task.n_eval: {task.n_eval:,}": task.n_eval}
    sizes[f"task.n_test: {task.n_test:,}"] = task.n_test
    largest = max(sizes, key=sizes.get)
    return need, (
        f"{largest} points need ~{size_text(need)} in {t.data} mode ({n:,} points drawn with "
        "the training, eval and test sets)"
    )


def check_fits(specs: Sequence[RunSpec], budget: int, budget_text: str) -> None:
    """Raise ``ValueError`` (one line: the fields, the estimate, the budget) if one process
    could not hold a task's data, or that data and one run beside it, within ``budget``
    bytes. Nothing is drawn or allocated to find out: only a voronoi task's centers, and
    nn.Module factories (built by ``train.check_buildable`` anyway)."""
    tasks: dict[str, tuple[int, str]] = {}
    for spec in specs:
        key = _key(spec, "task")
        if key not in tasks:
            tasks[key] = need, what = data_bytes(spec)
            if need > budget:
                raise ValueError(f"{what}; {budget_text}")
    seen = set()
    for spec in specs:
        data, _ = tasks[_key(spec, "task")]
        key = _key(spec, "task", "model")
        if key in seen:
            continue
        seen.add(key)
        one = run_bytes(spec)
        if data + one > budget:
            raise ValueError(
                f"{_model_text(spec)} at train.batch_size {spec.train.batch_size:,}: one run "
                f"needs ~{size_text(one)} (its parameters {STATE_COPIES} times over for "
                f"gradient and optimizer state, {ACTIVATION_COPIES} activations of batch × "
                f"width) beside ~{size_text(data)} of data; {budget_text}"
            )


def _key(spec: RunSpec, *tables: str) -> str:
    """What of ``spec`` sizes its task's data (with ``tables`` = task) or a run (task,
    model): those tables, and the training fields that size the data and the batch."""
    tree = spec.model_dump(mode="json")
    return json.dumps([tree[t] for t in tables] + [tree["train"][f] for f in SIZING_TRAIN])


SIZING_TRAIN = (
    "steps",
    "batch_size",
    "batch_milestones",
    "batch_factor",
    "batch_controller",
    "batch_max",
    "data",
    "dtype",
)


def _model_text(spec: RunSpec) -> str:
    m = spec.model
    if m.kwargs:
        return f"model.kwargs: {m.kwargs} of {m.name}"
    if MODEL_DEFAULTS.get(m.name) is not None:
        return f"model.hidden_dim: {m.hidden_dim:,} ({m.name})"
    return f"model.name: {m.name}"


def available_memory() -> int | None:
    """Bytes this machine can give a new process now: MemAvailable of /proc/meminfo (Linux),
    else the free physical pages; None where neither is known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def size_text(n: int) -> str:
    """Bytes as people read them: 80 GB, 512 MB, 3 KB (powers of 1024, as ``parse_bytes``)."""
    units = (("PB", 2**50), ("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("KB", 2**10))
    for unit, scale in units:
        if n >= scale:
            value = n / scale
            return f"{value:,.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"
    return f"{n} B"


def parse_bytes(text: str) -> int:
    """'512M', '2G', '1.5GB' or a plain number of bytes -> bytes (powers of 1024)."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1] if value and value[-1] in units else ""
    number = float(value[: len(value) - len(unit)])
    if not number > 0:
        raise ValueError(text)
    return int(number * units[unit])
