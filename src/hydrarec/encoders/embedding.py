"""Feature embeddings: every encoded column of a user or item -> one flat vector.

The id, each categorical column and each multi-hot column has its own table; index 0 is padding
(a zero vector that never trains) and index 1 is "out of vocabulary". The OOV row starts at zero,
so an unseen id or value begins as "no information"; the item tower's id-dropout trains the id
table's OOV row as the vector of an item known only by its other features (see ``towers.py``).
Numeric columns are projected by one linear layer. The pieces are concatenated, as in the
embedding layer of Covington et al., "Deep Neural Networks for YouTube Recommendations",
RecSys 2016, so the tower's MLP sees every feature at once.
"""

from __future__ import annotations

from typing import Literal, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hydrarec.errors import ConfigError
from hydrarec.features.batch import EntityFeatures, EntitySpec

PAD = 0  # vocabulary index of padding
OOV = 1  # vocabulary index of values unseen in train (cold ids)


def _table(size: int, dim: int) -> nn.Embedding:
    """An embedding table whose padding row is fixed at zero and whose OOV row starts at zero."""
    table = nn.Embedding(size, dim, padding_idx=PAD)
    if size > OOV:
        with torch.no_grad():
            table.weight[OOV].zero_()
    return table


class FeatureEmbedding(nn.Module):
    """id + categorical + numeric + multi-hot features of N entities -> (N, out_dim).

    ``out_dim = id_dim * use_ids + embedding_dim * n_pieces`` where ``n_pieces`` counts the
    categorical columns, the numeric block (if any) and the multi-hot columns.
    Multi-hot rows are pooled over their non-padding tokens (``"mean"`` or ``"sum"``); a row with no
    tokens pools to zeros.
    """

    def __init__(
        self,
        spec: EntitySpec,
        id_dim: int,
        embedding_dim: int,
        pooling: Literal["mean", "sum"] = "mean",
        use_ids: bool = True,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "sum"):
            raise ConfigError(f"model.multi_hot_pooling: {pooling!r} (allowed: mean, sum)")
        self.pooling = pooling
        self.ids = _table(spec.n_ids, id_dim) if use_ids else None
        # Lists in the spec's column order, not ModuleDicts: a column may be called "items" or
        # contain a dot, which ModuleDict keys cannot.
        self.categorical_names = tuple(spec.categorical)
        self.categorical = nn.ModuleList(
            _table(n, embedding_dim) for n in spec.categorical.values()
        )
        self.numeric = nn.Linear(spec.n_numeric, embedding_dim) if spec.n_numeric else None
        self.multi_hot_names = tuple(spec.multi_hot)
        self.multi_hot = nn.ModuleList(_table(n, embedding_dim) for n in spec.multi_hot.values())
        n_pieces = len(self.categorical) + (self.numeric is not None) + len(self.multi_hot)
        self.out_dim = id_dim * use_ids + embedding_dim * n_pieces
        if self.out_dim == 0:
            raise ValueError("FeatureEmbedding: nothing to embed (no ids and no features)")

    def forward(self, feats: EntityFeatures) -> Tensor:
        parts: list[Tensor] = []
        if self.ids is not None:
            parts.append(self.ids(feats.ids))  # (B, id_dim)
        for name, table in zip(self.categorical_names, self.categorical, strict=True):
            parts.append(table(feats.categorical[name]))  # (B, E)
        if self.numeric is not None:
            if feats.numeric is None:
                raise ValueError("FeatureEmbedding: the spec has numeric features, the batch none")
            parts.append(self.numeric(feats.numeric))  # (B, E)
        for name, table in zip(self.multi_hot_names, self.multi_hot, strict=True):
            parts.append(self._pool(cast(nn.Embedding, table), feats.multi_hot[name]))  # (B, E)
        return torch.cat(parts, dim=-1)  # (B, out_dim)

    def _pool(self, table: nn.Embedding, tokens: Tensor) -> Tensor:
        """(B, L) tokens -> (B, E): one bag per row, padding left out (of the mean's count too);
        an all-padding row pools to zeros (one fused kernel: cheaper than gather, mask, sum)."""
        return F.embedding_bag(
            tokens, table.weight, mode=self.pooling, padding_idx=PAD, sparse=table.sparse
        )
