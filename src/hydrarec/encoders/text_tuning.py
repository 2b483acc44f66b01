"""The fine-tuned last k transformer layers of the sentence encoder and its pooling (issue 4).

The feature stage (``features/text_model.py``, whose doc draws the cut) runs the frozen first
L - k layers once per item; this module runs the trainable copy of the last k layers
(``TopLayers``) and the pooling on each batch's token states (B, S, H) and mask (B, S).

The pooling is the sentence-transformers pipeline's own (mean over the attention mask, or the
[CLS] token; then L2 normalisation when the model has a ``Normalize`` module), so with the copied
weights untouched the layers give the frozen sentence vector (tested to 1e-5).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

GROUP = 256  # items per pass of the tuned layers (sorted by length, so padding stays short)


class TunedTextLayers(nn.Module):
    """The last k layers of a sentence encoder and its pooling: (B, S, H) states -> (B, T)."""

    def __init__(self, layers: nn.ModuleList, pooling: str, normalize: bool) -> None:
        super().__init__()
        self.layers = layers
        self.pooling = pooling
        self.normalize = normalize

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        """Items sorted by length and run in groups of ``GROUP``, each cut to its own longest
        text: padding is idle work, and item texts vary much in length. Items do not interact and,
        with masked attention, real tokens' states do not depend on the padding: the grouping
        changes nothing."""
        lengths = mask.sum(1)  # (B,)
        order = torch.argsort(lengths)  # shortest first
        sorted_lengths = lengths[order].tolist()
        pooled_groups = []
        for start in range(0, len(order), GROUP):
            idx = order[start : start + GROUP]
            group_len = max(1, int(sorted_lengths[start + len(idx) - 1]))  # its longest text
            pooled_groups.append(self._pooled(states[idx, :group_len], mask[idx, :group_len]))
        if not pooled_groups:
            return states.new_zeros((0, states.shape[2]))
        return torch.cat(pooled_groups)[torch.argsort(order)]  # (B, T), in the input order

    def _pooled(self, h: Tensor, mask: Tensor) -> Tensor:
        # additive attention mask, as BERT's eager attention adds it to the scores (SDPA too)
        bias = (~mask)[:, None, None, :].to(h.dtype) * torch.finfo(h.dtype).min  # (G, 1, 1, S)
        for layer in self.layers:
            out = layer(h, attention_mask=bias)
            h = out[0] if isinstance(out, tuple) else out  # transformers 4 returns a tuple
        if self.pooling == "cls":
            v = h[:, 0]  # (G, H)
        else:  # mean over real tokens, as sentence-transformers' Pooling
            m = mask.unsqueeze(-1).to(h.dtype)  # (G, S, 1)
            v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (G, S, H) -> (G, H)
        return nn.functional.normalize(v, p=2.0, dim=1) if self.normalize else v  # (G, T)
