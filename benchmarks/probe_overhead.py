"""Probe overhead on the final model (hidden 512, batch 1024, eval_every 50): the time of
training with no probes against training with the default set, interleaved and repeated.

    OMP_NUM_THREADS=1 python benchmarks/probe_overhead.py [--steps 200] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from optlab.config import ProbeSpec, expand, load_experiment
from optlab.engine.train import train_group
from optlab.store import Store


def timed(record: list[str], steps: int, device: str, seed: int, folder: Path) -> float:
    spec = load_experiment({"name": "overhead", "base": {"model": {"name": "final"}}})
    overrides = {
        "train.steps": steps,
        "train.batch_size": 1024,
        "train.eval_every": 50,
        "train.device": device,
        "train.seed": seed,
        "probes.record": record,
    }
    (run,) = expand(spec, overrides)
    store = Store(folder / f"{seed}-{len(record)}.db")
    store.plan([run])
    started = time.perf_counter()
    train_group([run.spec], store)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    store.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    default = list(ProbeSpec().record)
    with tempfile.TemporaryDirectory() as tmp:
        timed([], 50, args.device, 0, Path(tmp))  # warm-up: environment cache, kernels
        base, probed = [], []
        for r in range(args.repeats):
            base.append(timed([], args.steps, args.device, 100 + r, Path(tmp)))
            probed.append(timed(default, args.steps, args.device, 200 + r, Path(tmp)))
    best_base, best_probed = min(base), min(probed)
    print(
        json.dumps(
            {
                "device": args.device,
                "steps": args.steps,
                "no_probes_s": base,
                "default_probes_s": probed,
                "overhead_pct_best": 100 * (best_probed / best_base - 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
