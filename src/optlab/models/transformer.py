"""A nanoGPT-style decoder-only character transformer, as an ordinary ``nn.Module``.

idx (B, T) → token + learned position embeddings → n_layer pre-LayerNorm blocks
(x + attn(ln(x)), then x + mlp(ln(x))) → final LayerNorm → untied ``lm_head`` (no bias)
→ logits (B, T, classes). Init as nanoGPT: weights N(0, 0.02²), the residual projections
N(0, (0.02/√(2·n_layer))²), biases 0, LayerNorms 1 and 0.

Runs stack under ``torch.func`` (``stack_module_state``, then ``vmap`` over
``functional_call``). Attention is written with matmuls, a causal-mask buffer and a
softmax: ``F.scaled_dot_product_attention`` has no vmap batching rule for its CPU kernel
(torch 2.13 warns and loops over the runs), while these ops all batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

INIT_STD = 0.02


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions ≤ t only."""

    def __init__(self, n_embd: int, n_head: int, block_size: int, dropout: float) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"model.n_head: {n_head} does not divide n_embd = {n_embd}")
        self.n_head = n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd)  # q, k and v in one matmul
        self.proj = nn.Linear(n_embd, n_embd)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)
        future = torch.ones(block_size, block_size, dtype=torch.bool).triu(1)
        self.register_buffer("future", future, persistent=False)  # True above the diagonal

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        h = self.n_head
        qkv = self.qkv(x).reshape(B, T, 3, h, C // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, h, T, d)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C // h))
        att = att.masked_fill(self.future[:T, :T], float("-inf")).softmax(dim=-1)
        y = self.attn_dropout(att) @ v  # (B, h, T, d)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    """Linear(C → 4C), GELU, Linear(4C → C)."""

    def __init__(self, n_embd: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(n_embd, 4 * n_embd)
        self.proj = nn.Linear(4 * n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, n_embd: int, n_head: int, block_size: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class CharTransformer(nn.Module):
    """The decoder: embeddings, blocks, final LayerNorm and the untied head."""

    def __init__(
        self,
        block_size: int,
        classes: int,
        n_layer: int = 2,
        n_head: int = 4,
        n_embd: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.block_size = block_size
        self.tok_emb = nn.Embedding(classes, n_embd)
        self.pos_emb = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(n_embd, n_head, block_size, dropout) for _ in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, classes, bias=False)
        self.apply(_init_weights)
        residual_std = INIT_STD / math.sqrt(2 * n_layer)  # the residual stream's 2·n_layer adds
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, std=residual_std)
            nn.init.normal_(block.mlp.proj.weight, std=residual_std)

    def forward(self, idx: Tensor) -> Tensor:
        T = idx.shape[-1]
        if T > self.block_size:
            raise ValueError(f"input: {T} positions, more than block_size = {self.block_size}")
        x = self.drop(self.tok_emb(idx) + self.pos_emb.weight[:T])
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def _init_weights(module: nn.Module) -> None:
    """nanoGPT's init for Linear and Embedding (LayerNorm keeps PyTorch's 1 and 0)."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=INIT_STD)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def char_transformer(
    input_shape: tuple[int, ...],
    classes: int,
    n_layer: int = 2,
    n_head: int = 4,
    n_embd: int = 128,
    dropout: float = 0.0,
) -> nn.Module:
    """A character transformer for windows of ``input_shape = (block_size,)`` over ``classes``
    characters; draws its init from torch's global generator."""
    (block_size,) = input_shape
    return CharTransformer(block_size, classes, n_layer, n_head, n_embd, dropout)


def flops_per_step(batch: int, block_size: int, n_layer: int, n_embd: int, classes: int) -> float:
    """FLOPs of one forward + backward, counted from shapes as nanoGPT's ``estimate_mfu``:
    B·T · (6·N + 12·n_layer·T·n_embd), with N = 12·n_layer·n_embd² + n_embd·classes the
    weights in matmuls (qkv 3C², proj C², MLP 8C² per layer, and the head; embeddings are
    lookups) and 12·n_layer·T·n_embd per token for q·kᵀ and att·v (2 matmuls × 2 FLOPs ×
    3 for forward + backward, the causal half not discounted)."""
    n_matmul = 12 * n_layer * n_embd**2 + n_embd * classes
    return float(batch * block_size * (6 * n_matmul + 12 * n_layer * block_size * n_embd))
