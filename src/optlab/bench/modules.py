"""``optlab bench`` rows for nn.Module workloads: ``digits`` (an MLP at batch 128) and
``charlm`` (the catalog's transformer), each against the loop a user would write: the
module, ``torch.optim.AdamW(fused=True)``, a fresh permutation of the training set per
epoch, nothing else. optlab trains one run and a stack of 8 with evals at the ends only,
as the plain loop evaluates nothing, and its rate is that of a run's steps: the time of a
run of n steps less that of a run of one step (building the runs' modules, the evals at
the ends, the store), as the plain loop's clock starts after its module is built."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from optlab.config import RunSpec, expand, load_experiment
from optlab.engine.train import task_for
from optlab.models.module import build_module
from optlab.models.transformer import flops_per_step
from optlab.store import Store

STACK = 8


# charlm's eval and test sets shrunk to 4 windows, so that its evals at the ends weigh
# little against a short run's training, as the ladder's bench evaluates 256 points
SMALL_EVAL = {"charlm": {"task.eval_chars": 260, "task.test_chars": 260}}


def catalog_spec(experiment: str, steps: int) -> RunSpec:
    """The first case of a catalog experiment (its paper profile) for ``steps`` steps,
    evaluated at the ends only, on CPU."""
    spec = load_experiment(experiment)
    tree = {"train.steps": steps, "train.eval_every": steps, "train.device": "cpu"}
    return expand(spec, {**tree, **SMALL_EVAL.get(experiment, {})}, seeds=[0])[0].spec


def plain_module_rate(spec: RunSpec) -> float:
    """Steps per second of the plain loop for ``spec``'s task, module and AdamW numbers."""
    task = task_for(spec)
    x, y = task.tensors("train")
    torch.manual_seed(spec.train.seed)
    net = build_module(spec.model.name, spec.model.kwargs, task.input_shape, task.classes)
    o = spec.optimizer
    opt = torch.optim.AdamW(
        net.parameters(), lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay, fused=True
    )
    batch, n = spec.train.batch_size, len(x)
    order, pos = torch.randperm(n), 0
    start = time.perf_counter()
    for _ in range(spec.train.steps):
        if pos + batch > n:
            order, pos = torch.randperm(n), 0
        idx = order[pos : pos + batch]
        pos += batch
        out = net(x[idx])
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y[idx].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return spec.train.steps / (time.perf_counter() - start)


def steps_rate(spec: RunSpec, runs: int, store: Store, optlab_rate) -> float:
    """Run·steps per second of a stack's training steps: a run of ``spec.train.steps``
    steps timed against a run of one step, so that what every run pays once drops out."""
    steps = spec.train.steps
    whole = runs * steps / optlab_rate(spec, runs, store)[0]
    once = runs / optlab_rate(spec.with_train(steps=1, eval_every=1), runs, store)[0]
    return runs * (steps - 1) / (whole - once)


def module_case(spec: RunSpec, store: Store, optlab_rate, repeats: int) -> dict:
    """One run against the plain loop (best of ``repeats`` alternations each), then a stack
    of ``STACK`` runs (best of ``repeats``)."""
    task_for(spec)  # data built once, outside every timing
    pairs = [
        (steps_rate(spec, 1, store, optlab_rate), plain_module_rate(spec)) for _ in range(repeats)
    ]
    one, plain = max(p[0] for p in pairs), max(p[1] for p in pairs)
    # the stack against the plain loop over as many steps as the stack's runs take together:
    # a best of short windows would favour the shorter measurement on a machine that drifts
    longer = spec.with_train(steps=STACK * spec.train.steps)
    pairs = [
        (steps_rate(spec, STACK, store, optlab_rate), plain_module_rate(longer))
        for _ in range(repeats)
    ]
    stacked, plain_long = max(p[0] for p in pairs), max(p[1] for p in pairs)
    case = {
        "r1_run_steps_per_s": one,
        f"r{STACK}_run_steps_per_s": stacked,
        "plain_loop_steps_per_s": plain,
        "vs_plain_loop": one / plain,
        "plain_loop_long_steps_per_s": plain_long,
        "stacked_vs_plain_loop": stacked / plain_long,
    }
    return case


def charlm_flops(spec: RunSpec) -> float:
    """Model FLOPs of one charlm step, from the transformer's shapes."""
    k, task = spec.model.kwargs, task_for(spec)
    return flops_per_step(
        spec.train.batch_size, spec.task.block_size, k["n_layer"], k["n_embd"], task.classes
    )
