"""History encoders: the user's most recent item vectors -> one vector.

Every encoder maps ``seq (B, N, D)`` and ``mask (B, N)`` (True where a real item is) to ``(B, D)``.
Histories are right-aligned: the most recent item is in the last position, padding on the left.
Padded positions never influence the output, and a user with no history gets zeros.

``all_states(seq, mask)`` gives every position's state (B, N, D), position i reading only the
items at j <= i, zeros where ``mask`` is False: SASRec's training, where one pass over a (left-
padded) window trains every position to predict the next item (``BatchBuilder(examples=
"windows")``). ``segments`` (B, N), for the attention encoders: several windows packed into one
row (``BatchBuilder(pack_windows=True)``); a position then reads only its own segment and counts
its place back from the segment's end, as if its window were alone.

- ``transformer``: SASRec, W.-C. Kang and J. McAuley, "Self-Attentive Sequential Recommendation",
  ICDM 2018 (https://arxiv.org/abs/1808.09781): learned positional embeddings, causal self-attention
  blocks (pre-norm, as in nanoGPT, rather than the paper's post-norm), the last position's state.
  ``positions = "relative"`` replaces the positional embeddings by a learned per-head attention
  bias on the distance from query to key (T5, Raffel et al., JMLR 2020; ALiBi, Press et al.,
  ICLR 2022): a state then depends only on how far back each item is, so position j of a training
  window computes exactly what the last position computes for the same items at serving time.
- ``gru`` / ``lstm``: GRU4Rec-style recurrent encoders (Hidasi et al., ICLR 2016), final state.
- ``hstu``: HSTU (Zhai et al., ICML 2024), pointwise aggregated attention with SiLU gating and a
  relative attention bias (``encoders/hstu.py``).
"""

from __future__ import annotations

from typing import Any, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from hydrarec.config import SequenceConfig, SequenceKind
from hydrarec.errors import ConfigError


class SequenceEncoder(nn.Module):
    """What every history encoder offers (see the module doc). An attention encoder defines
    ``states`` (every position's state, padding included); the rest follows from it here."""

    def states(
        self, seq: Tensor, mask: Tensor, tail: int | None = None, segments: Tensor | None = None
    ) -> Tensor:
        """(B, N, D) every position's state, or the last ``tail`` ones, padding not zeroed."""
        raise NotImplementedError

    def all_states(
        self, seq: Tensor, mask: Tensor, tail: int | None = None, segments: Tensor | None = None
    ) -> Tensor:
        """(B, N, D) every position's state; zeros where ``mask`` is False. ``tail = k``: only
        the last k positions, (B, k, D). ``segments``: packed windows (see the module doc)."""
        states = self.states(seq, mask, tail, segments)  # (B, N or k, D)
        return states * mask[:, mask.shape[1] - states.shape[1] :].unsqueeze(-1).to(seq.dtype)

    def forward(self, seq: Tensor, mask: Tensor) -> Tensor:
        last = self.states(seq, mask, tail=1)[:, -1]  # (B, D)
        return last * mask.any(dim=1, keepdim=True).to(last.dtype)  # empty history -> zeros


def causal_layout(mask: Tensor, segments: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Who reads whom, and where each position stands, for a causal attention encoder.

    Returns ``allowed`` (B, 1, N, N) bool, query i may read key j: j <= i, j a real item, and
    (with ``segments``) j in i's segment; and ``back`` (1 or B, N) long, places from each position
    to the last of its window (of its segment, or of the row). Every position also reads itself:
    a padded query then has a key, so its softmax has no all -inf row (NaN); its state is never
    used (``all_states`` zeroes it) and real queries still read no padded key.

    >>> allowed, back = causal_layout(torch.tensor([[1, 1, 1]]) > 0, torch.tensor([[4, 4, 9]]))
    >>> allowed[0, 0].int().tolist(), back.tolist()
    ([[1, 0, 0], [1, 1, 0], [0, 0, 1]], [[1, 0, 0]])
    """
    n = mask.shape[1]
    place = torch.arange(n, device=mask.device)
    causal = torch.ones(n, n, dtype=torch.bool, device=mask.device).tril()  # (N, N)
    allowed = causal & mask.unsqueeze(1)  # (B, N, N)
    if segments is None:
        back = (n - 1 - place).unsqueeze(0)  # (1, N)
    else:
        allowed = allowed & (segments.unsqueeze(2) == segments.unsqueeze(1))  # same segment
        last = torch.ones_like(segments, dtype=torch.bool)  # (B, N) last place of its segment
        last[:, :-1] = segments[:, 1:] != segments[:, :-1]
        end = torch.where(last, place, n).flip(1).cummin(1).values.flip(1)  # (B, N)
        back = end - place  # (B, N)
    allowed = allowed | torch.eye(n, dtype=torch.bool, device=mask.device)
    return allowed.unsqueeze(1), back


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"model.sequence.heads: {heads} does not divide model.dim {dim}")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, allowed: Tensor, tail: int | None = None) -> Tensor:
        """``allowed`` (B, 1 or H, N, N): bool, query i may read key j, or an additive float bias
        (-inf: may not); ``tail = k``: only the last k positions query (output (B, k, D))."""
        B, N, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)  # 3 x (B, N, D)
        if tail is not None:
            q, allowed = q[:, -tail:], allowed[..., -tail:, :]  # (B, k, D), (B, 1, k, N)
        q = q.view(B, q.shape[1], self.heads, D // self.heads).transpose(1, 2)  # (B, H, Nq, D/H)
        k = k.view(B, N, self.heads, D // self.heads).transpose(1, 2)  # (B, H, N, D/H)
        v = v.view(B, N, self.heads, D // self.heads).transpose(1, 2)  # (B, H, N, D/H)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, allowed, dropout_p=p)  # (B, H, N, D/H)
        y = y.transpose(1, 2).reshape(B, q.shape[2], D)  # (B, Nq, D)
        return self.resid_drop(self.proj(y))


class FeedForward(nn.Module):
    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, 4 * dim)
        self.proj = nn.Linear(4 * dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))  # (B, N, 4D) -> (B, N, D)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, dropout)

    def forward(self, x: Tensor, allowed: Tensor, tail: int | None = None) -> Tensor:
        y = self.attn(self.ln1(x), allowed, tail)  # (B, Nq, D)
        x = (x if tail is None else x[:, -tail:]) + y  # (B, Nq, D)
        return x + self.ff(self.ln2(x))


class TransformerSequenceEncoder(SequenceEncoder):
    """SASRec: causal Transformer over the history; output = the last (most recent) position."""

    def __init__(self, dim: int, cfg: SequenceConfig) -> None:
        super().__init__()
        self.max_len = cfg.max_len
        relative = cfg.positions == "relative"
        # absolute: an embedding per place in the window; relative: per head, an attention bias
        # per distance back from the query (zero at start: content alone decides)
        self.position = None if relative else nn.Embedding(cfg.max_len, dim)
        self.distance = nn.Parameter(torch.zeros(cfg.heads, cfg.max_len)) if relative else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(dim, cfg.heads, cfg.dropout) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(dim)

    def states(
        self, seq: Tensor, mask: Tensor, tail: int | None = None, segments: Tensor | None = None
    ) -> Tensor:
        """Every position's state ``(B, N, D)``; position i reads only real items at j <= i.

        ``tail = k``: the last block computes only the last k positions, (B, k, D): the same
        values as ``states(...)[:, -k:]`` at a fraction of the cost (the lower blocks still
        compute every position, whose states the last one reads). Serving asks for the last
        position; window training for the last ``train.window_stride``, its targets.
        ``segments``: packed windows (module doc).
        """
        n = seq.shape[1]
        if n > self.max_len:
            raise ValueError(f"history of length {n} > model.sequence.max_len {self.max_len}")
        x = seq * mask.unsqueeze(-1).to(seq.dtype)  # (B, N, D)
        allowed, back = causal_layout(mask, segments)  # (B, 1, N, N), (1 or B, N)
        if self.position is not None:
            # Positions count back from the end, so "most recent" has the same embedding however
            # much left padding a batch carries.
            x = x + self.position(self.max_len - 1 - back)  # (1 or B, N, D)
        x = self.drop(x)
        if self.distance is not None:
            place = torch.arange(n, device=seq.device)
            gap = (place.unsqueeze(1) - place).clamp(min=0)  # (N, N) query i -> key j: i - j
            bias = self.distance[:, gap].to(x.dtype)  # (H, N, N)
            allowed = bias.masked_fill(~allowed, float("-inf"))  # (B, H, N, N) additive mask
        for i, block in enumerate(self.blocks):
            x = block(x, allowed, tail if i == len(self.blocks) - 1 else None)  # (B, N or k, D)
        return self.norm(x)


class RecurrentSequenceEncoder(SequenceEncoder):
    """GRU or LSTM over the real items in time order; output = the top layer's final state."""

    def __init__(self, dim: int, cfg: SequenceConfig) -> None:
        super().__init__()
        if cfg.kind not in ("gru", "lstm"):
            raise ConfigError(f"model.sequence.kind: {cfg.kind!r} is not recurrent (gru, lstm)")
        rnn = nn.GRU if cfg.kind == "gru" else nn.LSTM
        between = cfg.dropout if cfg.layers > 1 else 0.0  # nn.GRU drops only between layers
        self.rnn = rnn(dim, dim, num_layers=cfg.layers, batch_first=True, dropout=between)

    def _run(self, seq: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, PackedSequence, Any]:
        # Move each row's real items to the front, in order (a stable sort of "is padding"), then
        # pack: the RNN never steps over padding, wherever it was.
        order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)  # (B, N)
        x = seq.gather(1, order.unsqueeze(-1).expand_as(seq))  # (B, N, D)
        lengths = mask.sum(dim=1)  # (B,)
        # pack_padded_sequence needs lengths >= 1 on the CPU; empty rows are zeroed by callers.
        packed = pack_padded_sequence(
            x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, state = self.rnn(packed)
        return order, lengths, out, state

    def forward(self, seq: Tensor, mask: Tensor) -> Tensor:
        _, lengths, _, state = self._run(seq, mask)
        h = state[0] if isinstance(state, tuple) else state  # LSTM: (h_n, c_n)
        last = h[-1]  # (B, D), top layer
        return last * (lengths > 0).unsqueeze(-1).to(last.dtype)  # empty history -> zeros

    def all_states(
        self, seq: Tensor, mask: Tensor, tail: int | None = None, segments: Tensor | None = None
    ) -> Tensor:
        """(B, N, D) the top layer's state after each real item, at its place; zeros at padding.
        ``tail = k``: the last k places, (B, k, D) (the recurrence still runs over all)."""
        if segments is not None:
            raise ConfigError("train.pack_windows: a recurrent encoder reads unpacked windows")
        order, _, packed, _ = self._run(seq, mask)
        n = seq.shape[1]
        out, _ = pad_packed_sequence(packed, batch_first=True, total_length=n)  # (B, N, D)
        out = out * mask.gather(1, order).unsqueeze(-1).to(out.dtype)  # empty rows' step -> 0
        out = torch.zeros_like(out).scatter(1, order.unsqueeze(-1).expand_as(out), out)
        return out if tail is None else out[:, n - tail :]


def sequence_encoders() -> dict[str, type[SequenceEncoder]]:
    """The registry: ``model.sequence.kind`` -> encoder class, for the kinds of
    ``config.SequenceKind``, each with its class."""
    from hydrarec.encoders.hstu import HSTUSequenceEncoder  # hstu.py imports this module

    recurrent = RecurrentSequenceEncoder  # gru and lstm
    classes = (TransformerSequenceEncoder, recurrent, recurrent, HSTUSequenceEncoder)
    return dict(zip(get_args(SequenceKind), classes, strict=True))


def build_sequence_encoder(cfg: SequenceConfig, dim: int) -> SequenceEncoder | None:
    """The encoder named by ``cfg.kind``; ``None`` for ``"none"`` (no history path)."""
    if cfg.kind == "none":
        return None
    encoders = sequence_encoders()
    if cfg.kind not in encoders:
        allowed = ", ".join(["none", *encoders])
        raise ConfigError(f"model.sequence.kind: unknown {cfg.kind!r} (allowed: {allowed})")
    return encoders[cfg.kind](dim, cfg)
