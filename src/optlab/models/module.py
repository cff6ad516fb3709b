"""Any ``torch.nn.Module`` as a stacked model (DESIGN principle 3), by ``torch.func``.

A spec names a factory: a built-in one (``MODULES``) or ``package.module:function`` in
the user's own code, with its arguments in ``model.kwargs``. A factory may also take
``input_shape`` (one example's shape) and ``classes`` (the task's outputs per target):
optlab passes them when its signature names them.

Each run is built from its own training seed (the factory runs under a fresh global
generator seeded with it, so the module's own init draws what it would in a plain
script), and R runs are stacked on a leading axis as in the ``torch.func`` ensembling
recipe: ``stack_module_state``, then ``vmap`` of ``functional_call``. ``nn.Sequential``
models of common layers take a hand-stacked path instead (``optlab.models.stacked``),
the same numbers without vmap's cost per op. Buffers (BatchNorm's running statistics)
are per run, and so are parameters the factory froze (``requires_grad = False``, the
PyTorch idiom for a layer held fixed): they reach the forward beside the buffers and are
never trained. The module runs in training mode while autograd records (a training step)
and in eval mode otherwise (``evaluate`` runs without autograd).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from optlab.models.base import Params
from optlab.models.nets import scale_invariant
from optlab.models.stacked import stacked_sequential

# built-in nn.Module factories, by name (imported when first used)
MODULES: dict[str, str] = {
    "mlp": "optlab.models.nets:mlp",
    "cnn": "optlab.models.nets:cnn",
    "char_transformer": "optlab.models.transformer:char_transformer",
}
TASK_ARGUMENTS = ("input_shape", "classes")
# what optlab passes when a factory names them


class FactoryError(ValueError):
    """A factory that cannot be found, called or built: one line for the user."""


def is_factory_path(name: str) -> bool:
    module, sep, function = name.partition(":")
    return bool(sep and module and function)


@functools.cache
def resolve_factory(name: str) -> Callable[..., nn.Module]:
    """The factory a built-in name or ``package.module:function`` names."""
    path = MODULES.get(name, name)
    module, _, function = path.partition(":")
    try:
        factory = getattr(importlib.import_module(module), function)
    except ImportError as err:
        raise FactoryError(f"model.name: cannot import {module!r} ({err})") from None
    except AttributeError:
        raise FactoryError(f"model.name: {module!r} has no {function!r}") from None
    if not callable(factory):
        raise FactoryError(f"model.name: {path!r} is not callable")
    return factory


def check_factory_arguments(name: str, kwargs: dict) -> None:
    """``model.kwargs`` must bind to the factory's signature (optlab passes the task's sizes)."""
    factory = resolve_factory(name)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # a builtin without a signature: its call will tell
    if given := sorted(set(kwargs) & set(TASK_ARGUMENTS)):
        raise FactoryError(f"model.kwargs.{given[0]}: set by optlab from the task")
    try:
        signature.bind_partial(**kwargs)
    except TypeError as err:
        allowed = [p for p in signature.parameters if p not in TASK_ARGUMENTS]
        raise FactoryError(f"model.kwargs: {err}; {name} takes {', '.join(allowed)}") from None


def build_module(name: str, kwargs: dict, input_shape: tuple[int, ...], classes: int) -> nn.Module:
    """Call the factory with ``kwargs`` and the task's sizes it names."""
    factory = resolve_factory(name)
    try:
        wanted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        wanted = {}
    given = {"input_shape": tuple(input_shape), "classes": classes}
    try:
        module = factory(**kwargs, **{k: v for k, v in given.items() if k in wanted})
    except Exception as err:  # a user's factory may raise anything: one line, not a traceback
        raise FactoryError(f"model: {name} failed to build: {type(err).__name__}: {err}") from None
    if not isinstance(module, nn.Module):
        raise FactoryError(f"model: {name} returned {type(module).__name__}, not an nn.Module")
    return module


def activation_width(module: nn.Module, example: Tensor) -> int:
    """The most activation entries one example makes in any submodule's output (a sequence
    counts every position): what sizes the engine's chunks of runs and points. Measured on
    two copies of the example, which a BatchNorm that normalizes by batch statistics at
    eval needs."""
    sizes = [1]

    def count(mod: nn.Module, inputs: tuple, output) -> None:
        if isinstance(output, Tensor):
            sizes.append(output.numel() // 2)

    hooks = [m.register_forward_hook(count) for m in module.modules()]
    try:
        with torch.no_grad():
            module.eval()(torch.cat([example, example]))
    finally:
        for hook in hooks:
            hook.remove()
    return max(sizes)


class ModuleModel:
    """R stacked runs of one ``nn.Module``: the ``optlab.models.base.Model`` protocol."""

    def __init__(self, name: str, kwargs: dict, example: Tensor, classes: int) -> None:
        """``example``: one input (1, ...) of the task, to size the model's activations."""
        self.name, self.kwargs = name, dict(kwargs)
        self.input_shape, self.classes = tuple(example.shape[1:]), classes
        self.base = self._build(0)
        self.buffer_names = tuple(n for n, _ in self.base.named_buffers())
        self.fast = stacked_sequential(self.base)
        self.width = activation_width(self.base, example)
        # a BatchNorm without running statistics normalizes each eval batch by its own: the
        # eval then takes the whole set as one batch, so that chunking does not change it
        self.whole_set_eval = any(
            isinstance(m, nn.BatchNorm1d) and not m.track_running_stats for m in self.base.modules()
        )
        trained = {k for k, p in self.base.named_parameters() if p.requires_grad}
        # weights the loss does not see the scale of (a bias-free Linear into a normalizer)
        self.scale_invariant = tuple(k for k in scale_invariant(self.base) if k in trained)

    @functools.lru_cache(maxsize=1)  # noqa: B019 - init and init_buffers of one run build once
    def _build(self, seed: int) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_module(self.name, self.kwargs, self.input_shape, self.classes)

    def init(self, generator: torch.Generator) -> Params:
        """One run's trained parameters, as the factory draws them under the run's training
        seed."""
        module = self._build(generator.initial_seed())
        return {k: p.detach() for k, p in module.named_parameters() if p.requires_grad}

    def init_buffers(self, generator: torch.Generator) -> Params:
        """One run's buffers (BatchNorm running statistics) and frozen parameters, built
        like ``init``."""
        module = self._build(generator.initial_seed())
        frozen = {
            k: p.detach().clone() for k, p in module.named_parameters() if not p.requires_grad
        }
        return {**frozen, **{k: b.detach().clone() for k, b in module.named_buffers()}}

    def forward(self, params: Params, x: Tensor) -> Tensor:
        """Outputs (R, B, ...) for stacked parameters and buffers (one dict, each (R, ...))
        and inputs x (R or 1, B, ...): training mode while autograd records, else eval."""
        training = torch.is_grad_enabled()
        runs = next(iter(params.values())).shape[0]
        if self.fast is not None:
            return self.fast(params, x, training)
        self.base.train(training)
        if runs == 1:  # one run: the module itself, without vmap's cost per op
            one = {k: v[0] for k, v in params.items()}
            return functional_call(self.base, one, (x[0],))[None]
        shared = x.shape[0] == 1
        call = vmap(
            lambda state, xs: functional_call(self.base, state, (xs,)),
            in_dims=(0, None if shared else 0),
            randomness="different",
        )
        return call(params, x[0] if shared else x)

    def to(self, device: torch.device) -> ModuleModel:
        self.base.to(device)
        return self
