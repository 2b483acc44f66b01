"""Fine-tuning the last k transformer layers of the sentence encoder (issue 4).

Fine-tuning only the top layers of BERT keeps most of the gain of full fine-tuning at a fraction
of the cost (Sun et al., "How to Fine-Tune BERT for Text Classification?", CCL 2019). The model
is cut in two at layer L - k (L layers in all, ``k = model.text.finetune_layers``):

    frozen prefix, once per item (cached like the text vectors, with k in the key):
        text -> tokens -> embeddings + layers 1 .. L-k     states (N, S, H), mask (N, S)
    trainable suffix, in the item tower, on the items of each batch:
        states -> layers L-k+1 .. L (a copy) -> pooling    (B, S, H) -> (B, T)

The pooling is the sentence-transformers pipeline's own (mean over the attention mask, or the
[CLS] token; then L2 normalisation when the model has a ``Normalize`` module), so with the copied
weights untouched the suffix gives the frozen sentence vector (tested to 1e-5). Padding is cut to
the longest item of each group of similar length: with masked attention the states of real tokens
do not depend on it. Supported: BERT-family encoders, whose layers take (states, attention mask).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hydrarec.errors import ConfigError
from hydrarec.features.batch import cat_padded

FIELD = "model.text.finetune_layers"
MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra")  # layers(states, additive mask)
POOLINGS = ("mean", "cls")
GROUP = 256  # items per pass of the tuned layers (sorted by length, so padding stays short)


def check_finetune_layers(k: int, path: Path) -> int:
    """The number of transformer layers of the model at ``path``; ``ConfigError`` unless
    0 <= k <= that number and the model's layers can be run one by one."""
    try:
        config = json.loads((path / "config.json").read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{FIELD} = {k}: cannot read {path / 'config.json'} ({e})") from None
    n = int(config.get("num_hidden_layers", 0))
    kind = config.get("model_type")
    if k > 0 and kind not in MODEL_TYPES:
        raise ConfigError(f"{FIELD} = {k}: fine-tuning supports {', '.join(MODEL_TYPES)} "
                          f"models, not {kind!r}; allowed: 0 (frozen)")  # fmt: skip
    if not 0 <= k <= n:
        raise ConfigError(f"{FIELD} = {k}: the model has {n} transformer layers; allowed: "
                          f"0 (frozen) to {n}")  # fmt: skip
    return n


# -- the frozen prefix --------------------------------------------------------------------------
def _transformer(model: Any) -> Any:
    """The Hugging Face model inside a SentenceTransformer."""
    first = model[0]
    return first.auto_model if hasattr(first, "auto_model") else first.model


@torch.no_grad()
def prefix_states(model: Any, texts: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Token states after the first L - k layers: (N, S, H) float32 and the mask (N, S) bool,
    S the longest of ``texts`` in tokens (the model's tokenizer, truncation and all)."""
    tokenize = model.preprocess if hasattr(model, "preprocess") else model.tokenize
    features = tokenize(texts)
    device = next(model.parameters()).device
    names = ("input_ids", "attention_mask", "token_type_ids")
    inputs = {name: features[name].to(device) for name in names if name in features}
    lm = _transformer(model)
    out = lm(**inputs, output_hidden_states=True, return_dict=True)
    n = lm.config.num_hidden_layers
    states = out.hidden_states[n - k]  # hidden_states[0]: the embeddings, [i]: after layer i
    mask = inputs["attention_mask"].bool()
    return states.float().cpu().numpy(), mask.cpu().numpy()


def pad_states(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Batches of ``prefix_states``, each padded to its own longest text, as one table padded
    to the longest of all (the states of real tokens do not depend on the padding)."""
    if not parts:
        return np.zeros((0, 1, 0), dtype=np.float32), np.zeros((0, 1), dtype=bool)
    states = cat_padded([torch.from_numpy(s) for s, _ in parts])  # (N, S, H)
    mask = cat_padded([torch.from_numpy(m) for _, m in parts])  # (N, S)
    return states.numpy(), mask.numpy()


# -- the trainable suffix -----------------------------------------------------------------------
class TunedTextLayers(nn.Module):
    """The last k layers of a sentence encoder and its pooling: (B, S, H) states -> (B, T)."""

    def __init__(self, layers: nn.ModuleList, pooling: str, normalize: bool) -> None:
        super().__init__()
        self.layers = layers
        self.pooling = pooling
        self.normalize = normalize

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        """Items sorted by length and run in groups of ``GROUP``, each cut to its own longest
        text: padding is idle work (ML-100K: 16 tokens on average, 34 at most, so about half
        the work of one padded pass). Items do not interact: the grouping changes nothing."""
        lengths = mask.sum(1)  # (B,)
        order = torch.argsort(lengths)  # shortest first
        longest = lengths[order].tolist()
        parts = []
        for start in range(0, len(order), GROUP):
            idx = order[start : start + GROUP]
            width = max(1, int(longest[start + len(idx) - 1]))
            parts.append(self._pooled(states[idx, :width], mask[idx, :width]))  # (G, T)
        if not parts:
            return states.new_zeros((0, states.shape[2]))
        return torch.cat(parts)[torch.argsort(order)]  # (B, T), in the input order

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


def tuned_layers_from(model: Any, k: int) -> TunedTextLayers:
    """A trainable copy of the last ``k`` layers of the SentenceTransformer ``model`` (on CPU;
    the model itself is not changed) with the model's pooling and normalisation."""
    lm = _transformer(model)
    layers = nn.ModuleList(copy.deepcopy(list(lm.encoder.layer[len(lm.encoder.layer) - k :])))
    layers.to("cpu").train()
    for p in layers.parameters():
        p.requires_grad_(True)
    modules = list(model)[1:]
    names = [type(m).__name__ for m in modules]
    if not names or names[0] != "Pooling" or names[1:] not in ([], ["Normalize"]):
        raise ConfigError(f"{FIELD} = {k}: fine-tuning needs a Transformer -> Pooling "
                          f"(-> Normalize) model, not Transformer -> {names}")  # fmt: skip
    pool = modules[0]
    mode = getattr(pool, "pooling_mode", None) or pool.get_pooling_mode_str()
    if mode not in POOLINGS:
        raise ConfigError(f"{FIELD} = {k}: the model pools with {mode!r}; fine-tuning supports "
                          f"{', '.join(POOLINGS)} pooling")  # fmt: skip
    return TunedTextLayers(layers, str(mode), normalize=names[1:] == ["Normalize"])
