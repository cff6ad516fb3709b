"""The measurements behind ``optlab bench``, taken side by side in one process.

1. the float32 matmul peak (best of a few square and 1024×512×512 products);
2. the final model (hidden 512, batch 1024, eval of 10k points every 50 steps): steps/s,
   model FLOPs per step from its shapes, and the share of (1) it reaches;
3-4. ``centers`` and ``plus_minus`` at batch 32: run·steps/s of training for R = 1, 8, 32
   stacked runs (evaluated at the ends only, as the plain loop is not at all), and apart the
   cost of one 10k-point eval per run at R = 1 and R = 32, the price of the ladder's cadence;
5. each case's peak resident memory (optlab's runs, the plain loop apart) and the store's
   bytes per run;
6. beside each, the plain loop of ``optlab.bench.plain``;
7. the nn.Module workloads ``digits`` and ``charlm`` (``optlab.bench.modules``): one run and
   a stack of 8 against the module's plain loop; charlm's share of the matmul peak;
8. for the final model and ``centers``, one real run long enough for its weights to train a
   while, evals at the cadence included: the steady state's steps/s against the start's
   (``optlab.bench.steady``);
9. the final model and charlm in bf16 against fp32, side by side (``optlab.bench.precision``),
   beside the CPU's bfloat16 support;
10. ``grad_stats.overhead``: a run's time with the grad_stats probe at the eval cadence, and
   every step, over the same run without it, for centers, the final model and charlm
   (``optlab.bench.grad_stats``);
11. with ``sweep``, the ladder at the paper profile with 5 seeds on every core, as a user runs
   it: wall and CPU seconds and the cores' busy share (``optlab.bench.sweep``);
12. with ``executors``, the ladder at its quick profile with 2 seeds (1 if ``quick``) trained
   by the local pool and by Ray, side by side: Ray's throughput ÷ the pool's
   (``ray.vs_local_pool``, ``optlab.bench.executors``).
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from optlab.bench import executors, grad_stats, modules, plain, steady, sweep
from optlab.bench.kfac import kfac_case
from optlab.bench.precision import bf16_case, cpu_bf16
from optlab.config import RunSpec
from optlab.engine.allocator import keep_freed_memory
from optlab.engine.precision import cpu_name
from optlab.engine.train import build_stack, evaluate, task_for, train_group
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


def device_name() -> str:
    """The CPU's model name and core count, as the table names the device."""
    return f"cpu ({cpu_name()}, {os.cpu_count()} cores)"


def reset_peak_rss() -> None:
    """Start a new peak-memory window (Linux: writing 5 to clear_refs resets VmHWM), so that
    each case reports its own peak; elsewhere the peak stays the process's so far."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory since ``reset_peak_rss`` (VmHWM), or of the process (getrusage)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def optlab_rate(spec: RunSpec, runs: int, store: Store) -> tuple[float, float]:
    """Run·steps per second of one stacked group of ``runs`` seeds, and store bytes per run."""
    specs = [spec.with_train(seed=s) for s in range(runs)]
    before = store.bytes_used()
    start = time.perf_counter()
    train_group(specs, store, redo=True)  # the same runs again, for the best of repeats
    seconds = time.perf_counter() - start
    return runs * spec.train.steps / seconds, (store.bytes_used() - before) / runs


def _spec(
    model: str,
    steps: int,
    batch: int,
    lr: float,
    n_eval: int,
    hidden: int | None,
    eval_every: int = 50,
) -> RunSpec:
    return RunSpec.model_validate(
        {
            "model": {"name": model, "hidden_dim": hidden},
            "optimizer": {"lr": lr},
            "train": {
                "steps": steps,
                "batch_size": batch,
                "eval_every": eval_every,
                "device": "cpu",
            },
            "task": {"n_eval": n_eval, "n_test": min(n_eval, 1000)},
        }
    )


def plain_rate(spec: RunSpec, eval_every: int | None) -> float:
    env = task_for(spec)
    x, y = env.tensors("train")
    ex, ey = env.tensors("eval")
    torch.manual_seed(spec.train.seed)
    if spec.model.name == "final":
        model = plain.Final(env.dim, spec.model.hidden_dim, env.classes)
    else:
        learned = spec.model.hidden_dim if spec.model.name == "centers" else None
        model = plain.PlusMinus(torch.from_numpy(env.centers), env.classes, learned)
    t = spec.train
    return plain.plain_steps_per_s(
        model, x, y, ex, ey, t.steps, t.batch_size, spec.optimizer.lr, eval_every
    )


def eval_ms_per_run(spec: RunSpec, runs: int, repeats: int = 3) -> float:
    """Milliseconds per run of one evaluation on the eval set of ``spec`` (best of ``repeats``)
    for a stack of ``runs``: what each eval of a run's cadence costs."""
    specs = [spec.with_train(seed=s) for s in range(runs)]
    stack = build_stack(specs, torch.device("cpu"))
    x, y = stack.task.tensors("eval")
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        evaluate(stack.model, stack.state, x, y, runs)
        best = min(best, time.perf_counter() - start)
    return 1e3 * best / runs


@dataclass(frozen=True)
class Plan:
    """Steps per case; ``quick`` keeps the same cases and eval cadence: fewer steps, no R = 8,
    one alternation.
    The one-run path and the plain loop alternate ``repeats`` times and each keeps its best
    so that a neighbour's burst on a shared machine does not decide their ratio; each stack
    size keeps its best of as many."""

    final_steps: int
    ladder_steps: dict[str, int]  # trained with evals at the ends only, on ``ladder_eval`` points
    module_steps: dict[str, int]  # digits and charlm, evaluated at the ends only
    stacks: tuple[int, ...]  # must hold 1 and 32, the ratios' two ends
    n_eval: int = 10_000
    ladder_eval: int = 256
    repeats: int = 2
    compiled: bool = True  # also R = 1 and 32 with ``train.compile``, compiled before timing
    # digits' runs take a second each and its figures drift 20% between them here: best of 4
    module_repeats: dict[str, int] = field(default_factory=lambda: {"digits": 4, "charlm": 2})
    # one run each of the final model and centers, eval every 50 steps: its first and last
    # ``steady_window`` steps timed (the final model slows from step ~1,000 without flushing)
    steady_steps: dict[str, int] = field(default_factory=lambda: {"final": 1500, "centers": 4000})
    steady_window: int = 300
    steady_eval_every: int = 50
    # the final model (hidden 512, batch 1024) and charlm in bf16 and fp32, evals at the ends
    # only: a few steps, as emulated bf16 (no AMX) takes seconds per final step here
    bf16_steps: dict[str, int] = field(default_factory=lambda: {"final": 6, "charlm": 6})
    # grad_stats.overhead: per case, the run's steps at the default cadence (a few eval
    # periods), and the shorter run's with the probe every step
    grad_steps: dict[str, tuple[int, int]] = field(
        default_factory=lambda: {"centers": (500, 100), "final": (150, 10), "charlm": (500, 10)}
    )
    # best of more alternations where runs are short: centers' 2-second runs vary 1.5–2.7 s here
    grad_repeats: dict[str, int] = field(
        default_factory=lambda: {"centers": 8, "final": 3, "charlm": 2}
    )


FULL = Plan(300, {"centers": 500, "plus_minus": 2000}, {"digits": 600, "charlm": 24}, (1, 8, 32))
QUICK = Plan(
    100,
    {"centers": 200, "plus_minus": 400},
    {"digits": 200, "charlm": 6},
    (1, 32),
    repeats=1,
    compiled=False,
    module_repeats={"digits": 2, "charlm": 1},
    steady_steps={"final": 400, "centers": 800},
    steady_window=150,
    bf16_steps={"final": 3, "charlm": 3},
    grad_steps={"centers": (200, 50), "final": (100, 5), "charlm": (250, 5)},
    grad_repeats={"centers": 2, "final": 1, "charlm": 1},
)
LADDER_LR = {"centers": 1e-2, "plus_minus": 5e-3}
LADDER_CASES = tuple(LADDER_LR)


class _Optlab:
    """optlab's rates for one spec, with the peak RSS of its runs (the plain loop's apart)."""

    def __init__(self, spec: RunSpec, store: Store) -> None:
        self.spec, self.store = spec, store
        self.peak_rss_mb = 0.0
        self.stored = 0.0

    def rate(self, runs: int) -> float:
        reset_peak_rss()
        rate, stored = optlab_rate(self.spec, runs, self.store)
        # a repeat rewrites the same runs into pages the store already holds: keep the
        # figure of runs written anew
        self.stored = max(self.stored, stored)
        self.peak_rss_mb = max(self.peak_rss_mb, peak_rss_mb())
        return rate


def one_run_against_plain(
    optlab: _Optlab, repeats: int, eval_every: int | None
) -> tuple[float, float]:
    """Best of ``repeats`` alternations: optlab's one-run rate, the plain loop's steps/s."""
    pairs = [(optlab.rate(1), plain_rate(optlab.spec, eval_every)) for _ in range(repeats)]
    return max(p[0] for p in pairs), max(p[1] for p in pairs)


def final_case(peak: float, store: Store, plan: Plan) -> dict:
    """The final model at hidden 512, batch 1024: one run, against the plain loop."""
    spec = _spec("final", plan.final_steps, 1024, 3e-3, plan.n_eval, 512)
    task_for(spec)  # drawn once per process, outside either timing
    optlab = _Optlab(spec, store)
    rate, base = one_run_against_plain(optlab, plan.repeats, spec.train.eval_every)
    t, m = spec.task, spec.model
    flops = final_flops_per_step(t.dim, m.hidden_dim, t.classes, spec.train.batch_size)
    return {
        "steps_per_s": rate,
        "gflop_per_step": flops / 1e9,
        "pct_of_peak": 100 * rate * flops / 1e9 / peak,
        "plain_loop_steps_per_s": base,
        "vs_plain_loop": rate / base,
        "store_bytes_per_run": optlab.stored,
        "peak_rss_mb": optlab.peak_rss_mb,
    }


def ladder_case(name: str, store: Store, plan: Plan) -> dict:
    """``name`` at batch 32: run·steps/s of training for each stack size R, against the plain
    loop; and the cost per run of one eval of ``plan.n_eval`` points at R = 1 and R = 32."""
    steps = plan.ladder_steps[name]
    spec = _spec(name, steps, 32, LADDER_LR[name], plan.ladder_eval, None, eval_every=steps)
    task_for(spec)
    optlab = _Optlab(spec, store)
    r1, base = one_run_against_plain(optlab, plan.repeats, eval_every=None)
    case = {
        f"r{runs}_run_steps_per_s": max(optlab.rate(runs) for _ in range(plan.repeats))
        for runs in plan.stacks
        if runs > 1
    }
    r32 = case["r32_run_steps_per_s"]
    if plan.compiled:
        case["compiled"] = compiled_case(spec, store, base, plan.repeats)
    evals = {
        runs: eval_ms_per_run(_spec(name, 1, 32, LADDER_LR[name], plan.n_eval, None), runs)
        for runs in (1, 32)
    }
    return {
        "r1_run_steps_per_s": r1,
        **case,
        "plain_loop_steps_per_s": base,
        "vs_plain_loop": r1 / base,
        **{f"eval_ms_per_run_r{runs}": ms for runs, ms in evals.items()},
        # an eval at the paper's cadence against the training steps it reports on (one run)
        "eval_vs_training": evals[1] / (plan.steady_eval_every * 1000 / r1),
        "speedup_r32": r32 / r1,
        "stacked_vs_plain_loop": r32 / base,
        "store_bytes_per_run": optlab.stored,
        "peak_rss_mb": optlab.peak_rss_mb,
    }


def compiled_case(spec: RunSpec, store: Store, plain_loop: float, repeats: int) -> dict:
    """R = 1 and R = 32 with ``train.compile``: compiled once (timed apart) by two-step runs
    of the same shapes, then measured as the eager path is."""
    spec = spec.with_train(compile=True)
    short = spec.with_train(steps=2)
    started = time.perf_counter()
    for runs in (1, 32):
        optlab_rate(short, runs, store)
    compile_s = time.perf_counter() - started
    optlab = _Optlab(spec, store)
    r1, r32 = (max(optlab.rate(runs) for _ in range(repeats)) for runs in (1, 32))
    return {
        "r1_run_steps_per_s": r1,
        "r32_run_steps_per_s": r32,
        "vs_plain_loop": r1 / plain_loop,
        "speedup_r32": r32 / r1,
        "stacked_vs_plain_loop": r32 / plain_loop,
        "compile_s": compile_s,
    }


def steady_case(name: str, store: Store, plan: Plan) -> dict:
    """One run of the final model (hidden 512, batch 1024) or a ladder rung (batch 32), eval
    of ``plan.n_eval`` points at the cadence (every 50 steps): its last window's steps/s against its first's."""
    steps, every = plan.steady_steps[name], plan.steady_eval_every
    if name == "final":
        spec = _spec("final", steps, 1024, 3e-3, plan.n_eval, 512, every)
    else:
        spec = _spec(name, steps, 32, LADDER_LR[name], plan.n_eval, None, every)
    w = steady.steady_vs_start(spec, store, plan.steady_window)
    return {
        "start_steps_per_s": w.start_steps_per_s,
        "steady_steps_per_s": w.steady_steps_per_s,
        "steady_vs_start": w.steady_vs_start,
        "steady_after_steps": steps - w.window,
    }


def bf16_cases(store: Store, plan: Plan) -> dict:
    """``final_bf16`` and ``charlm_bf16``: bf16 against fp32 (``optlab.bench.precision``)."""
    steps = plan.bf16_steps
    final = _spec("final", steps["final"], 1024, 3e-3, plan.ladder_eval, 512, steps["final"])
    charlm = modules.catalog_spec("charlm", steps["charlm"])
    return {
        f"{name}_bf16": bf16_case(spec, store, optlab_rate, plan.repeats)
        for name, spec in (("final", final), ("charlm", charlm))
    }


def grad_stats_case(name: str, store: Store, plan: Plan) -> dict:
    """grad_stats' overhead on ``name`` (centers, final or charlm) at its cadence and every step."""
    steps, every_step = plan.grad_steps[name]
    if name == "final":
        spec = _spec("final", steps, 1024, 3e-3, plan.n_eval, 512)
    elif name == "charlm":
        spec = grad_stats.charlm_spec(steps, eval_every=250)
    else:
        spec = _spec(name, steps, 32, LADDER_LR[name], plan.n_eval, None)
    return grad_stats.overhead(spec, every_step, store, plan.grad_repeats[name])


def run_bench(
    quick: bool = False,
    plan: Plan | None = None,
    with_sweep: bool = False,
    with_executors: bool = False,
) -> dict:
    """Every figure of the table, as one dict (the ``--json`` output); ``with_sweep`` adds
    the ladder sweep (``ladder_sweep``: the paper profile, or the quick one if ``quick``),
    ``with_executors`` Ray against the local pool (``ray``)."""
    plan = plan or (QUICK if quick else FULL)
    keep_freed_memory()  # process-wide: the plain loops run under the same allocator
    started = time.perf_counter()
    out: dict = {
        "device": device_name(),
        "threads": torch.get_num_threads(),
        "quick": quick,
        "eval_points": plan.n_eval,
        "eval_every": plan.steady_eval_every,
        **cpu_bf16(),
    }
    out["matmul_peak_gflops"] = peak = matmul_peak_gflops()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.db")
        optlab_rate(_spec("plus_minus", 2, 32, 1e-3, 100, None), 1, store)  # one-time set-up
        final = final_case(peak, store, plan)
        ladder = {name: ladder_case(name, store, plan) for name in plan.ladder_steps}
        digits = modules.module_case(
            modules.catalog_spec("digits", plan.module_steps["digits"]),
            store,
            optlab_rate,
            plan.module_repeats["digits"],
        )
        charlm_spec = modules.catalog_spec("charlm", plan.module_steps["charlm"])
        flops = modules.charlm_flops(charlm_spec)
        charlm = modules.module_case(charlm_spec, store, optlab_rate, plan.module_repeats["charlm"])
        kfac = kfac_case(
            store, plan.module_steps["digits"], plan.module_repeats["digits"], optlab_rate
        )
        for name in plan.steady_steps:
            (final if name == "final" else ladder[name]).update(steady_case(name, store, plan))
        bf16 = bf16_cases(store, plan)
        probe = {name: grad_stats_case(name, store, plan) for name in plan.grad_steps}
        store.close()
    # the peak is the best of its measurements before and after the cases, so that a busy
    # moment on a shared machine does not lower it (and raise the share of it we reach)
    out["matmul_peak_gflops"] = best = max(peak, matmul_peak_gflops())
    final["pct_of_peak"] *= peak / best
    charlm["gflop_per_step"] = flops / 1e9
    charlm["pct_of_peak"] = 100 * charlm["r1_run_steps_per_s"] * flops / 1e9 / best
    charlm["plain_loop_pct_of_peak"] = 100 * charlm["plain_loop_steps_per_s"] * flops / 1e9 / best
    out.update(final=final, **ladder, digits=digits, charlm=charlm, kfac=kfac, **bf16)
    out["grad_stats"] = {"overhead": probe}
    if with_sweep:
        out["ladder_sweep"] = sweep.ladder_sweep("quick" if quick else "paper")
    if with_executors:
        seeds = 1 if quick else 2
        ray = executors.ray_vs_local_pool(executors.ladder_plan(seeds))
        out["ray"] = {"profile": "quick", "seeds": seeds, **ray}
    out["seconds"] = time.perf_counter() - started
    return out
