"""The closed form of decoupled-decay training (the 2025 thesis notepad, "A closed form for weight decay
updates"), and the two quantities the notepad proposes to watch.

With w_{k+1} = (1 − λη_k) w_k − η_k s_k (AdamW: s_k = m̂_k/(√v̂_k + ε); SGD: s_k = g_k),

    w_{k+1} = P_k w_0 − Σ_{j=0}^{k} η_j (Π_{i=j+1}^{k} (1 − λη_i)) s_j,   P_k = Π_{i=0}^{k} (1 − λη_i).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def decay_products(lrs: Sequence[float], weight_decay: float) -> list[float]:
    """P_k = Π_{i=0}^{k} (1 − λη_i) for k = 0..K−1."""
    out, p = [], 1.0
    for lr in lrs:
        p *= 1.0 - weight_decay * lr
        out.append(p)
    return out


def decayed_weights(
    w0: Tensor, steps: Sequence[Tensor], lrs: Sequence[float], weight_decay: float
) -> Tensor:
    """w_{K} from w_0, the steps s_0..s_{K−1} and the rates η_0..η_{K−1} by the closed form
    (summed from the last step back, so each s_j meets Π_{i>j}(1 − λη_i) once)."""
    tail, total = 1.0, torch.zeros_like(w0)
    for s, lr in zip(reversed(steps), reversed(lrs), strict=True):
        total = total + lr * tail * s
        tail *= 1.0 - weight_decay * lr
    return tail * w0 - total


def distance_from_decayed_init(w: Tensor, w0: Tensor, p: float) -> Tensor:
    """‖w_k − P_k w_0‖ over all axes after the run axis: how far the steps carried w."""
    return (w - p * w0).reshape(w.shape[0], -1).norm(dim=1)


def angle(w: Tensor, w0: Tensor) -> Tensor:
    """The angle (radians) between w_k and w_0 of each run: arccos(⟨w, w_0⟩/(‖w‖‖w_0‖))."""
    a, b = w.reshape(w.shape[0], -1), w0.reshape(w0.shape[0], -1)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    return cos.clamp(-1.0, 1.0).arccos()
