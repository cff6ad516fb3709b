"""Plain ``nn.Module`` networks for image-like tasks: an MLP and a small CNN.

Each factory takes one example's ``input_shape`` and the number of ``classes`` and
returns an ``nn.Sequential`` of common layers, so that ``optlab.models.stacked`` can
train R copies as one computation.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "identity": nn.Identity,  # a deep linear network
}
NORMALIZATIONS: dict[str, type[nn.Module] | None] = {
    "none": None,
    "batchnorm": nn.BatchNorm1d,
    "layernorm": nn.LayerNorm,
}
NORMALIZERS = (nn.BatchNorm1d, nn.LayerNorm)  # layers that divide out their input's scale


def _choice(argument: str, value: str, allowed: dict) -> None:
    if value not in allowed:
        raise ValueError(f"{argument}: {value!r} is not allowed; valid: {', '.join(allowed)}")


def mlp(
    input_shape: tuple[int, ...],
    classes: int,
    depth: int = 2,
    width: int = 128,
    activation: str = "relu",
    normalization: str = "none",
    affine: bool = True,
    fixed_head: bool = False,
    eps: float = 1e-5,
    running_stats: bool = True,
    init_scale: float = 1.0,
    bias: bool = True,
) -> nn.Sequential:
    """``depth`` hidden layers Linear → normalization → activation, then a Linear head
    (after a Flatten when one example has more than one axis).

    A Linear that feeds a normalizer has no bias (BatchNorm would subtract it; the
    normalizer brings its own), so that its weight is scale-invariant (``scale_invariant``).
    ``affine = False`` drops the normalizers' gain and bias; ``fixed_head`` keeps the head
    at its init (``requires_grad = False``). With both and a normalizer, every trained
    weight is scale-invariant, as Li and Arora (2020) fix the last layer for their
    exponential learning-rate theorem. ``eps``, the normalizers' ε (PyTorch's default),
    bounds how exactly they are scale-invariant: |cos(w, ∇w)| is of the order of ε over the
    features' variance. ``running_stats = False``: BatchNorm normalizes by the batch's
    statistics at eval too, so that the network evaluates as a scale-invariant function of
    its weights (running averages of the unnormalized features remember the scale they
    were taken at). ``init_scale`` multiplies the initial weights of the Linears that feed
    a normalizer: the network computes the same function, from weights of another norm.
    ``bias = False`` drops every bias (with ``activation = "identity"``: the deep linear
    network of Zhang et al.'s Jacobian identity).
    """
    _choice("activation", activation, ACTIVATIONS)
    _choice("normalization", normalization, NORMALIZATIONS)
    if depth < 0:
        raise ValueError(f"depth: {depth} is negative; need 0 or more hidden layers")
    if width < 1:
        raise ValueError(f"width: {width} is not allowed; need 1 or more units")
    if init_scale != 1.0 and normalization == "none":
        raise ValueError(
            f"init_scale: {init_scale} scales weights that feed a normalizer; there is none"
        )
    if not running_stats and normalization != "batchnorm":
        raise ValueError(f"running_stats: False is BatchNorm's; normalization is {normalization!r}")
    norm = NORMALIZATIONS[normalization]
    layers: list[nn.Module] = [nn.Flatten()] if len(input_shape) > 1 else []
    fan_in = math.prod(input_shape)
    for _ in range(depth):
        layers.append(nn.Linear(fan_in, width, bias=bias and norm is None))
        if norm is not None:
            with torch.no_grad():
                layers[-1].weight.mul_(init_scale)
            layers.append(_normalizer(norm, width, affine, eps, running_stats))
        layers.append(ACTIVATIONS[activation]())
        fan_in = width
    head = nn.Linear(fan_in, classes, bias=bias)
    head.requires_grad_(not fixed_head)
    return nn.Sequential(*layers, head)


def _normalizer(
    norm: type[nn.Module], width: int, affine: bool, eps: float, running_stats: bool
) -> nn.Module:
    """A normalizer of ``width`` features, with or without its gain and bias (and, for
    BatchNorm, its running statistics)."""
    if norm is nn.LayerNorm:
        return nn.LayerNorm(width, eps=eps, elementwise_affine=affine)
    return norm(width, eps=eps, affine=affine, track_running_stats=running_stats)


def cnn(
    input_shape: tuple[int, ...], classes: int, channels: int = 16, width: int = 64
) -> nn.Sequential:
    """Two conv–ReLU–maxpool stages (c, then 2c channels, 3×3 kernels keeping the size, 2×2
    pools), then a hidden Linear of ``width`` and a head, for flattened square images:
    (n·n,) → (1, n, n), so 8×8 digits end as 2c maps of 2×2."""
    side = math.isqrt(math.prod(input_shape))
    if len(input_shape) != 1 or side * side != input_shape[0] or side % 4:
        raise ValueError(
            f"input_shape: {tuple(input_shape)} is not a flattened square image; "
            "need (n·n,) with n a multiple of 4"
        )
    c, pooled = channels, side // 4
    return nn.Sequential(
        nn.Unflatten(1, (1, side, side)),
        nn.Conv2d(1, c, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c, 2 * c, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * c * pooled * pooled, width),
        nn.ReLU(),
        nn.Linear(width, classes),
    )


def scale_invariant(module: nn.Module) -> tuple[str, ...]:
    """Names (as in ``named_parameters()``) of the bias-free Linear weights that feed a
    normalizer directly inside a Sequential: norm(c·W x) = norm(W x) for every c > 0, so
    the loss does not change when W is scaled (up to the normalizer's eps)."""
    names = []
    for prefix, seq in module.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for (name, layer), (_, after) in pairwise(seq.named_children()):
            if (
                isinstance(layer, nn.Linear)
                and layer.bias is None
                and isinstance(after, NORMALIZERS)
            ):
                names.append(f"{prefix}.{name}.weight" if prefix else f"{name}.weight")
    return tuple(names)
