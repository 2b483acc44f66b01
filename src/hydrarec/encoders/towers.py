"""The two towers: items and users -> (B, D) vectors in one space (score = dot(user, item)).

Item tower (two-tower retrieval as in Yi et al., "Sampling-Bias-Corrected Neural Modeling for
Large Corpus Item Recommendations", RecSys 2019; cold start from content as in DropoutNet,
Volkovs et al., NeurIPS 2017):

    features = FeatureEmbedding(id, side features)           (B, F)
    feature_path = MLP(features)                              (B, D)
    text = TunedTextLayers(token states)                      (B, T)   if finetune_layers > 0
    text_path = Linear(text)                                  (B, D)   only with item text
    g = sigmoid(Linear([features, text_path]))                (B, D)
    item = g * feature_path + (1 - g) * text_path

Id-dropout: in training, each item's id is replaced with probability ``cfg.text.id_dropout`` by
the out-of-vocabulary index 1 - exactly what an item unseen in train carries at serving time. So
"dropped" and "cold" are one path: the OOV row (zero at init) is trained as "an item known only by
its features and text", and the gate learns to lean on the text when the id says nothing.

Fine-tuning (``model.text.finetune_layers = k``, ``text_tuning.py``): the tower is handed a
trainable copy of the language model's last k layers and its pooling (``text_layers``, built by
the run assembly from the feature stage's ``TopLayers``), runs them on the cached token states of
the batch's items, and offers them to the trainer at ``model.text.finetune_lr``
(``param_groups``). Evaluation, the index, cold and added items all go through the same layers.
Like every tower it reads no files: text arrives as tensors (``features/text.py``).

User tower (YouTube DNN, Covington et al. RecSys 2016, with a SASRec history encoder):

    features = FeatureEmbedding(id, side features)           (B, F)
    history = SequenceEncoder(item vectors, mask)             (B, D)   unless sequence.kind="none"
    user = MLP([features, history])                           (B, D)

The history item vectors come from the item tower, so both towers share item knowledge. A cold
user (id index 1) with a history is described by that history: the id part is the OOV vector,
the sequence part is informative. A cold user without history gets a vector from side features.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from hydrarec.config import ModelConfig
from hydrarec.encoders.blocks import gather_rows, mlp
from hydrarec.encoders.embedding import OOV, PAD, FeatureEmbedding
from hydrarec.encoders.sequence import build_sequence_encoder
from hydrarec.encoders.text_tuning import TunedTextLayers
from hydrarec.errors import ConfigError
from hydrarec.features.batch import EntityFeatures, EntitySpec


class ItemTower(nn.Module):
    """Item features (+ text) -> (B, D).

    ``text_layers``: the fine-tuned top layers, required when the items have text and
    ``cfg.text.finetune_layers > 0``."""

    def __init__(
        self, spec: EntitySpec, cfg: ModelConfig, text_layers: TunedTextLayers | None = None
    ) -> None:
        super().__init__()
        self.out_dim = cfg.dim
        self.id_dropout = cfg.text.id_dropout
        self.features = FeatureEmbedding(spec, cfg.dim, cfg.embedding_dim, cfg.multi_hot_pooling)
        F = self.features.out_dim
        self.mlp = mlp(F, [*cfg.tower_hidden, cfg.dim], cfg.dropout, activate_last=False)
        tuned = spec.text_dim > 0 and cfg.text.finetune_layers > 0
        if tuned != (text_layers is not None):
            raise ValueError(
                f"ItemTower: model.text.finetune_layers = {cfg.text.finetune_layers} with "
                f"text_dim {spec.text_dim} needs text_layers exactly when both are > 0"
            )
        self.text_layers = text_layers
        self.finetune_lr = cfg.text.finetune_lr
        self.text = nn.Linear(spec.text_dim, cfg.dim) if spec.text_dim else None
        self.gate = nn.Linear(F + cfg.dim, cfg.dim) if spec.text_dim else None

    def forward(self, feats: EntityFeatures) -> Tensor:
        if self.training and self.id_dropout > 0:
            drop = torch.rand(feats.ids.shape, device=feats.ids.device) < self.id_dropout  # (B,)
            drop &= feats.ids != PAD
            feats = replace(feats, ids=feats.ids.masked_fill(drop, OOV))
        e = self.features(feats)  # (B, F)
        x = self.mlp(e)  # (B, D)
        if self.text is None or self.gate is None:
            return x
        t = self.text(self._text(feats))  # (B, T) -> (B, D)
        g = torch.sigmoid(self.gate(torch.cat([e, t], dim=-1)))  # (B, F + D) -> (B, D)
        return g * x + (1 - g) * t  # (B, D)

    def _text(self, feats: EntityFeatures) -> Tensor:
        """(B, T): the pretrained text vector, or the fine-tuned last layers' on the states."""
        if self.text_layers is None:
            if feats.text is None:
                raise ValueError("ItemTower: built with text (spec.text_dim > 0), batch has none")
            return feats.text
        if feats.text_states is None or feats.text_mask is None:
            raise ValueError("ItemTower: fine-tunes text layers (model.text.finetune_layers > "
                             "0), the batch has no text_states / text_mask")  # fmt: skip
        return self.text_layers(feats.text_states, feats.text_mask)  # (B, S, H) -> (B, T)

    def param_groups(self) -> list[dict[str, Any]]:
        """Parameters with their own optimizer settings: the language model's layers."""
        if self.text_layers is None:
            return []
        params = list(self.text_layers.parameters())
        return [{"name": "text_layers", "params": params, "lr": self.finetune_lr}]


class UserTower(nn.Module):
    """User features + history of item vectors -> (B, D)."""

    def __init__(self, spec: EntitySpec, cfg: ModelConfig) -> None:
        super().__init__()
        self.out_dim = cfg.dim
        self.max_len = cfg.sequence.max_len
        self.sequence = build_sequence_encoder(cfg.sequence, cfg.dim)
        has_features = bool(spec.categorical or spec.n_numeric or spec.multi_hot)
        self.features = None
        if cfg.user_ids or has_features:
            self.features = FeatureEmbedding(
                spec, cfg.dim, cfg.embedding_dim, cfg.multi_hot_pooling, use_ids=cfg.user_ids
            )
        elif self.sequence is None:
            raise ConfigError(
                "model.user_ids = false leaves the user tower nothing to read: the users have no "
                "side features and model.sequence.kind = 'none'"
            )
        in_dim = self.features.out_dim if self.features is not None else 0
        in_dim += cfg.dim if self.sequence is not None else 0
        self.mlp = mlp(in_dim, [*cfg.tower_hidden, cfg.dim], cfg.dropout, activate_last=False)

    def forward(
        self,
        feats: EntityFeatures,
        history: Tensor | None = None,
        history_mask: Tensor | None = None,
        history_pos: Tensor | None = None,
        history_segments: Tensor | None = None,
    ) -> Tensor:
        """``history`` (B, N, D) item vectors, right-aligned; ``history_mask`` (B, N) bool.

        Both are ignored (and may be None) when ``sequence.kind`` is ``"none"``. Histories longer
        than ``sequence.max_len`` are cut to their most recent ``max_len`` items.

        ``history_pos`` (R,) long: window examples (``Batch.history_pos``). ``history`` is then
        (W, N, D) windows, ``feats`` has R rows, and row r reads the state at flat position
        ``history_pos[r]`` of one causal pass over every window; ``history_segments`` (W, N):
        the windows are packed (``Batch.history_segments``).
        """
        # (B, F); without ids and features an empty (B, 0): the history alone describes the user
        x = (
            self.features(feats)
            if self.features is not None
            else feats.ids.new_zeros(len(feats.ids), 0, dtype=torch.float32)
        )
        if self.sequence is None:
            return self.mlp(x)  # (B, D)
        if history is None or history_mask is None:
            raise ValueError("UserTower: this tower has a sequence encoder; pass the history")
        if history_pos is not None:
            # only the positions from the first target on run the last block (the last
            # train.window_stride of each window): flat index w * N + j -> w * k + j - (N - k)
            n = history.shape[1]
            if history_pos.device.type == "cpu" and len(history_pos):
                tail = n - int((history_pos % n).min())
            else:  # on an accelerator, reading the minimum would wait for the device each step
                tail = n
            states = self.sequence.all_states(
                history, history_mask, tail, history_segments
            )  # (W, k, D)
            rows = history_pos // n * tail + history_pos % n - (n - tail)  # (R,)
            h = gather_rows(states.flatten(0, 1), rows)  # (R, D)
            return self.mlp(torch.cat([x, h], dim=-1))  # (R, F + D) -> (R, D)
        history = history[:, -self.max_len :]  # (B, N', D), most recent items
        history_mask = history_mask[:, -self.max_len :]  # (B, N')
        h = self.sequence(history, history_mask)  # (B, D)
        return self.mlp(torch.cat([x, h], dim=-1))  # (B, F + D) -> (B, D)
