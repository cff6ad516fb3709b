"""Probe overhead on the final model (hidden 512, batch 1024, eval_every 50, eval set 10k).

Two measurements, single-threaded:
- direct: the default probes' cost per recorded step (``Recorder.record`` plus the output
  statistics inside the eval pass) against the cost of what a recorded step stands for,
  ``eval_every`` training steps plus one eval pass; medians over repeats.
- end to end: whole runs with no probes and with the default set, interleaved (noisy on a
  shared machine; the best of each is compared).

    OMP_NUM_THREADS=1 python benchmarks/probe_overhead.py [--steps 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from optlab.config import ProbeSpec, expand, load_experiment
from optlab.engine.data import Batches
from optlab.engine.optimizer import StackedOptimizer
from optlab.engine.train import build_stack, evaluate, stack_losses, train_group
from optlab.probes.outputs import output_sums
from optlab.probes.recorder import Recorder
from optlab.store import Store

FINAL = {"train.batch_size": 1024, "train.eval_every": 50, "train.device": "cpu"}


def _spec(steps: int, record: list[str], seed: int = 42):
    spec = load_experiment({"name": "overhead", "base": {"model": {"name": "final"}}})
    overrides = {**FINAL, "train.steps": steps, "train.seed": seed, "probes.record": record}
    (run,) = expand(spec, overrides)
    return run


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def direct(repeats: int) -> dict:
    spec = _spec(FINAL["train.eval_every"], list(ProbeSpec().record)).spec
    t = spec.train
    stack = build_stack([spec], torch.device("cpu"))
    env, model, params = stack.task, stack.model, stack.params
    optimizer = StackedOptimizer([spec.optimizer], params)
    batches = Batches(env, t.data, t.batch_sizes, [t.seed], torch.device("cpu"))
    eval_x, eval_y = env.tensors("eval")
    recorder = Recorder(spec.probes, ["r"], params, optimizer, t.eval_every)

    def step() -> None:
        x, y = batches(0)
        loss = stack_losses(model, params, x, y)
        optimizer.step(torch.autograd.grad(loss.sum(), list(params.values())))

    step()
    ev = evaluate(model, params, eval_x, eval_y, 1)
    logits = model.forward(params, eval_x[None]).detach()
    train_step = _median_time(step, repeats * 5)
    eval_pass = _median_time(lambda: evaluate(model, params, eval_x, eval_y, 1), repeats)
    record = _median_time(lambda: recorder.record(50, params, ev), repeats * 5)
    outputs = _median_time(lambda: output_sums(logits, 0, 1), repeats * 5)
    probes = record + outputs
    interval = t.eval_every * train_step + eval_pass
    return {
        "train_step_s": train_step,
        "eval_pass_s": eval_pass,
        "probe_record_s": record,
        "output_stats_s": outputs,
        "overhead_pct": 100 * probes / interval,
    }


def end_to_end(steps: int, repeats: int) -> dict:
    def timed(record: list[str], seed: int, folder: Path) -> float:
        run = _spec(steps, record, seed)
        store = Store(folder / f"{seed}.db")
        store.plan([run])
        started = time.perf_counter()
        train_group([run.spec], store)
        store.close()
        return time.perf_counter() - started

    default = list(ProbeSpec().record)
    base, probed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            base.append(timed([], 100 + r, Path(tmp)))
            probed.append(timed(default, 200 + r, Path(tmp)))
    return {
        "steps": steps,
        "no_probes_s": base,
        "default_probes_s": probed,
        "overhead_pct_best": 100 * (min(probed) / min(base) - 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-end-to-end", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {"probes": list(ProbeSpec().record), "direct": direct(args.repeats)}
    if not args.skip_end_to_end:
        result["end_to_end"] = end_to_end(args.steps, args.repeats)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
