"""The measurements behind ``optlab bench``, taken side by side in one process.

1. the float32 matmul peak (best of a few square and 1024×512×512 products);
2. the final model (hidden 512, batch 1024, eval of 10k points every 50 steps): steps/s,
   model FLOPs per step from its shapes, and the share of (1) it reaches;
3-4. ``centers`` and ``plus_minus`` at batch 32: run·steps/s for R = 1, 8, 32 stacked runs;
5. peak resident memory so far and the store's bytes per run;
6. beside each, the plain loop of ``optlab.bench.plain``.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import torch

from optlab.bench import plain
from optlab.config import RunSpec
from optlab.engine.train import environment_for, train_group
from optlab.store import Store


def matmul_peak_gflops(repeats: int = 5) -> float:
    best = 0.0
    for m, k, n in [(1024, 1024, 1024), (2048, 2048, 2048), (1024, 512, 512)]:
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * m * k * n / (time.perf_counter() - start) / 1e9)
    return best


def final_flops_per_step(dim: int, hidden: int, classes: int, batch: int) -> float:
    """3× the forward matmul FLOPs, less the first layer's input gradient (x needs none)."""
    shapes = [(dim, hidden), (hidden, hidden), (hidden, hidden), (hidden, classes)]
    forward = sum(2 * batch * i * o for i, o in shapes)
    return 3 * forward - 2 * batch * dim * hidden


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def optlab_rate(spec: RunSpec, runs: int, store: Store) -> tuple[float, float]:
    """Run·steps per second of one stacked group of ``runs`` seeds, and store bytes per run."""
    specs = [
        spec.model_copy(update={"train": spec.train.model_copy(update={"seed": s})})
        for s in range(runs)
    ]
    before = store.bytes_used()
    start = time.perf_counter()
    train_group(specs, store)
    seconds = time.perf_counter() - start
    return runs * spec.train.steps / seconds, (store.bytes_used() - before) / runs


def _spec(
    model: str, steps: int, batch: int, lr: float, n_eval: int, hidden: int | None
) -> RunSpec:
    return RunSpec.model_validate(
        {
            "model": {"name": model, "hidden_dim": hidden},
            "optimizer": {"lr": lr},
            "train": {"steps": steps, "batch_size": batch, "eval_every": 50, "device": "cpu"},
            "task": {"n_eval": n_eval, "n_test": 1000},
        }
    )


def plain_rate(spec: RunSpec) -> float:
    env = environment_for(spec)
    x, y = env.tensors("train")
    ex, ey = env.tensors("eval")
    torch.manual_seed(spec.train.seed)
    if spec.model.name == "final":
        model = plain.Final(env.dim, spec.model.hidden_dim, env.classes)
    else:
        learned = spec.model.hidden_dim if spec.model.name == "centers" else None
        model = plain.PlusMinus(torch.from_numpy(env.centers), env.classes, learned)
    t = spec.train
    return plain.plain_steps_per_s(model, x, y, ex, ey, t.steps, t.batch_size, spec.optimizer.lr)


def run_bench(quick: bool = False) -> dict:
    """Every figure of the table, as one dict (the ``--json`` output)."""
    scale = 0.2 if quick else 1.0
    out: dict = {"device": "cpu", "threads": torch.get_num_threads()}
    peak = matmul_peak_gflops()
    out["matmul_peak_gflops"] = peak
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        final = _spec("final", int(300 * scale) + 50, 1024, 3e-3, 10_000, 512)
        rate, stored = optlab_rate(final, 1, store)
        flops = final_flops_per_step(2, 512, 2, 1024)
        base = plain_rate(final)
        out["final"] = {
            "steps_per_s": rate,
            "gflop_per_step": flops / 1e9,
            "pct_of_peak": 100 * rate * flops / 1e9 / peak,
            "plain_loop_steps_per_s": base,
            "vs_plain_loop": rate / base,
            "store_bytes_per_run": stored,
            "peak_rss_mb": peak_rss_mb(),
        }
        for name, lr in (("centers", 1e-2), ("plus_minus", 5e-3)):
            spec = _spec(name, int(1000 * scale), 32, lr, 10_000, None)
            case: dict = {}
            for runs in (1, 8, 32):
                case[f"r{runs}_run_steps_per_s"], stored = optlab_rate(spec, runs, store)
            base = plain_rate(spec)
            case.update(
                plain_loop_steps_per_s=base,
                vs_plain_loop=case["r1_run_steps_per_s"] / base,
                speedup_r32=case["r32_run_steps_per_s"] / case["r1_run_steps_per_s"],
                stacked_vs_plain_loop=case["r32_run_steps_per_s"] / base,
                store_bytes_per_run=stored,
                peak_rss_mb=peak_rss_mb(),
            )
            out[name] = case
        store.close()
    return out
