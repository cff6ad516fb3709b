"""The store as TensorBoard event files, for users who live in TensorBoard.

One event directory per run, ``<out>/<experiment>/<case>/<run_id>``: every metric as a
scalar tagged ``<split>/<name>`` at its step, and every snapshot array as a histogram
tagged ``snapshot/<tensor>``. Needs the ``tensorboard`` package (``pip install
optlab[tensorboard]``), which ``torch.utils.tensorboard`` writes through.
"""

from __future__ import annotations

from pathlib import Path

from optlab.store import Store


def export_tensorboard(store_path: str | Path, out: str | Path) -> list[Path]:
    """Write event files for every run in the store; returns the run directories."""
    from torch.utils.tensorboard import SummaryWriter

    store = Store(store_path)
    written = []
    try:
        runs = store.runs()
        for experiment, case, run_id in runs[["experiment", "case", "id"]].itertuples(index=False):
            folder = Path(out) / _safe(experiment) / _safe(case) / run_id
            with SummaryWriter(log_dir=str(folder)) as writer:
                metrics = store.metrics([run_id])
                for split, name, step, value in metrics[
                    ["split", "name", "step", "value"]
                ].itertuples(index=False):
                    writer.add_scalar(f"{split}/{name}", value, int(step))
                snapshots = [n for n in store.array_names(run_id) if n.startswith("snapshot/")]
                for name in snapshots:
                    for step, array in store.array(run_id, name).items():
                        writer.add_histogram(name, array, int(step))
            written.append(folder)
    finally:
        store.close()
    return written


def _safe(name: str) -> str:
    """A path component: separators and leading dots replaced."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return cleaned.lstrip(".") or "_"
