"""HSTU: Hierarchical Sequential Transduction Units (Zhai et al., "Actions Speak Louder than
Words: Trillion-Parameter Sequential Transducers for Generative Recommendations", ICML 2024,
https://arxiv.org/abs/2402.17152), the encoder of the "generative recommender" family.

One layer, as in the paper's equations (1)-(3) and its reference code (pre-norm, residual):

    U, V, Q, K = split(SiLU(Linear(LayerNorm(X))))                 4 x (B, N, D)
    A = SiLU(Q K^T / sqrt(d) + rab) / N, causal, no softmax        (B, H, N, N)
    Y = Linear(Dropout(LayerNorm(A V) * U))                        (B, N, D)
    X = X + Y

``rab`` is a learned relative attention bias per head and distance back from the query (the
paper's positional term; these histories have no timestamps, so no time buckets). Pointwise
aggregation divided by the window length keeps the strength of a user's preference (how many of
its items agree) instead of normalising it away as a softmax does.

Same interface as the SASRec encoder (``SequenceEncoder``): histories right-aligned, padding never
read, ``all_states`` gives every position's state for window training, ``tail = k`` lets only the
last k positions query in the last layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hydrarec.config import SequenceConfig
from hydrarec.encoders.sequence import SequenceEncoder, causal_layout
from hydrarec.errors import ConfigError


class HSTULayer(nn.Module):
    def __init__(self, dim: int, heads: int, max_len: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"model.sequence.heads: {heads} does not divide model.dim {dim}")
        self.heads = heads
        self.max_len = max_len
        self.norm_in = nn.LayerNorm(dim)
        self.uvqk = nn.Linear(dim, 4 * dim)
        self.rab = nn.Parameter(torch.zeros(heads, max_len))  # bias per head and distance
        self.norm_attn = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, allowed: Tensor, tail: int | None = None) -> Tensor:
        """``allowed`` (B, 1, N, N) bool: query i may read key j; ``tail = k``: only the last k
        positions query (output (B, k, D))."""
        B, N, D = x.shape
        h = self.heads
        u, v, q, k = F.silu(self.uvqk(self.norm_in(x))).split(D, dim=-1)  # 4 x (B, N, D)
        back = torch.arange(N, device=x.device)
        back = (back.unsqueeze(1) - back).clamp(min=0, max=self.max_len - 1)  # (N, N) i - j
        rab = self.rab[:, back]  # (H, N, N)
        if tail is not None:
            q, u, allowed, rab = q[:, -tail:], u[:, -tail:], allowed[..., -tail:, :], rab[:, -tail:]
        n_q = q.shape[1]
        q = q.view(B, n_q, h, D // h).transpose(1, 2)  # (B, H, Nq, D/H)
        k = k.view(B, N, h, D // h).transpose(1, 2)  # (B, H, N, D/H)
        v = v.view(B, N, h, D // h).transpose(1, 2)  # (B, H, N, D/H)
        scores = q @ k.transpose(-1, -2) / math.sqrt(D // h) + rab.to(q.dtype)  # (B, H, Nq, N)
        attn = F.silu(scores) * allowed.to(q.dtype) / self.max_len  # (B, H, Nq, N)
        y = (attn @ v).transpose(1, 2).reshape(B, n_q, D)  # (B, Nq, D)
        y = self.out(self.drop(self.norm_attn(y) * u))  # (B, Nq, D)
        return (x if tail is None else x[:, -tail:]) + y


class HSTUSequenceEncoder(SequenceEncoder):
    """HSTU layers over the history; output = the last (most recent) position's state."""

    def __init__(self, dim: int, cfg: SequenceConfig) -> None:
        super().__init__()
        self.max_len = cfg.max_len
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            HSTULayer(dim, cfg.heads, cfg.max_len, cfg.dropout) for _ in range(cfg.layers)
        )
        self.norm = nn.LayerNorm(dim)

    def states(
        self, seq: Tensor, mask: Tensor, tail: int | None = None, segments: Tensor | None = None
    ) -> Tensor:
        """Every position's state (B, N, D), or the last ``tail`` ones; position i reads only
        real items at j <= i (and itself, so a padded query is never empty); with ``segments``
        (packed windows) only those of its own segment."""
        n = seq.shape[1]
        if n > self.max_len:
            raise ValueError(f"history of length {n} > model.sequence.max_len {self.max_len}")
        x = self.drop(seq * mask.unsqueeze(-1).to(seq.dtype))  # (B, N, D)
        allowed, _ = causal_layout(mask, segments)  # (B, 1, N, N); rab reads i - j only
        for i, layer in enumerate(self.layers):
            x = layer(x, allowed, tail if i == len(self.layers) - 1 else None)  # (B, N or k, D)
        return self.norm(x)
