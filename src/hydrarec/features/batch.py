"""Typed batches (after torchrec's ``Batch``): plain tensors with one ``.to(device)``.

``EntityFeatures`` holds the encoded features of a set of users or items; the same class is both
the whole table (row ``i`` = catalogue index ``i``) and a gathered subset. ``Batch`` is what the
model's ``forward`` receives. The device move happens once, in the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor


@dataclass
class EntityFeatures:
    """Encoded features of N users or N items.

    ids: (N,) long, id-vocabulary index (0 = padding, 1 = out of vocabulary, i.e. unseen in train).
    categorical: name -> (N,) long vocabulary index (0 = padding, 1 = out of vocabulary).
    numeric: (N, F) float32, scaled; None when there are no numeric features.
    multi_hot: name -> (N, L) long token index, 0 = padding.
    text: (N, T) float32 pretrained text vectors; None without a text encoder.
    text_states: (N, S, H) float32 token states after the frozen layers of the language model,
        when its last layers are fine-tuned (instead of ``text``); padded to the longest text.
    text_mask: (N, S) bool, True at the real tokens of ``text_states``.
    """

    ids: Tensor
    categorical: dict[str, Tensor] = field(default_factory=dict)
    numeric: Tensor | None = None
    multi_hot: dict[str, Tensor] = field(default_factory=dict)
    text: Tensor | None = None
    text_states: Tensor | None = None
    text_mask: Tensor | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def gather(self, index: Tensor) -> EntityFeatures:
        """The rows at ``index`` (any shape (B,)); a new object, the table is not changed."""
        return EntityFeatures(
            ids=self.ids[index],
            categorical={k: v[index] for k, v in self.categorical.items()},
            numeric=None if self.numeric is None else self.numeric[index],
            multi_hot={k: v[index] for k, v in self.multi_hot.items()},
            text=None if self.text is None else self.text[index],
            text_states=None if self.text_states is None else self.text_states[index],
            text_mask=None if self.text_mask is None else self.text_mask[index],
        )

    def to(self, device: torch.device | str) -> EntityFeatures:
        return EntityFeatures(
            ids=self.ids.to(device),
            categorical={k: v.to(device) for k, v in self.categorical.items()},
            numeric=None if self.numeric is None else self.numeric.to(device),
            multi_hot={k: v.to(device) for k, v in self.multi_hot.items()},
            text=None if self.text is None else self.text.to(device),
            text_states=None if self.text_states is None else self.text_states.to(device),
            text_mask=None if self.text_mask is None else self.text_mask.to(device),
        )

    @staticmethod
    def concat(parts: list[EntityFeatures]) -> EntityFeatures:
        """Rows of ``parts`` one after the other (used when items are added to a run)."""
        first = parts[0]
        return EntityFeatures(
            ids=torch.cat([p.ids for p in parts]),
            categorical={
                k: torch.cat([p.categorical[k] for p in parts]) for k in first.categorical
            },
            numeric=None if first.numeric is None else torch.cat([p.numeric for p in parts]),  # type: ignore[misc]
            multi_hot={k: cat_padded([p.multi_hot[k] for p in parts]) for k in first.multi_hot},
            text=None if first.text is None else torch.cat([p.text for p in parts]),  # type: ignore[misc]
            text_states=None if first.text_states is None
            else cat_padded([p.text_states for p in parts]),  # type: ignore[misc]
            text_mask=None if first.text_mask is None
            else cat_padded([p.text_mask for p in parts]),  # type: ignore[misc]
        )  # fmt: skip


def cat_padded(ts: list[Tensor]) -> Tensor:
    """Concatenate along rows, padding dimension 1 with zeros (False) to the widest."""
    width = max(t.shape[1] for t in ts)
    return torch.cat([torch.cat([t, t.new_zeros((len(t), width - t.shape[1], *t.shape[2:]))], 1)
                      for t in ts])  # fmt: skip


@dataclass
class Batch:
    """One batch of B interactions.

    The items of the batch are de-duplicated: ``items`` holds U distinct items (the interactions'
    items, the users' history items and any sampled negatives, or the whole catalogue for a full
    softmax), and positions into it say which is which. Row order of ``items`` carries no meaning.
    """

    user_index: Tensor  # (B,) long, catalogue index of each user
    users: EntityFeatures  # (B,) user features
    item_index: Tensor  # (U,) long, catalogue index of each distinct item
    items: EntityFeatures  # (U,) item features
    item_logq: Tensor  # (U,) float, log probability that each item is a sampled candidate
    item_pos: Tensor  # (B,) long, row in ``items`` of each interaction's item
    history: (
        Tensor  # (B, N) long, rows in ``items`` of the user's N previous items (0 where padded)
    )
    history_mask: Tensor  # (B, N) bool, True where ``history`` holds a real item
    labels: dict[str, Tensor] = field(default_factory=dict)  # label column -> (B,) float32
    label_mask: dict[str, Tensor] = field(default_factory=dict)  # label column -> (B,) bool
    # Window examples (``BatchBuilder(examples="windows")``): ``history`` is then (W, N), W
    # training windows, and row b's user state is the one at flat position ``history_pos[b]``
    # (window ``// N``, position ``% N``). None: row b reads its own history row's last state.
    history_pos: Tensor | None = None  # (B,) long
    # Packed windows (``BatchBuilder(pack_windows=True)``): (W, N) long, the window each place of
    # ``history`` belongs to (-1: unused); a place reads only its own window's places.
    history_segments: Tensor | None = None

    def __len__(self) -> int:
        return int(self.user_index.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        moved: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, dict):
                moved[f.name] = {k: t.to(device) for k, t in v.items()}
            elif v is None:
                moved[f.name] = None
            else:
                moved[f.name] = v.to(device)
        return Batch(**moved)


@dataclass(frozen=True)
class EntitySpec:
    """Sizes the encoders need to build embeddings for one entity (users or items).

    Vocabulary sizes include the two reserved indices (0 = padding, 1 = out of vocabulary).
    """

    n_ids: int  # id vocabulary size
    categorical: dict[str, int] = field(default_factory=dict)  # name -> vocabulary size
    n_numeric: int = 0  # width of ``EntityFeatures.numeric``
    numeric_names: tuple[str, ...] = ()  # names of the numeric columns, in order
    multi_hot: dict[str, int] = field(default_factory=dict)  # name -> token vocabulary size
    text_dim: int = 0  # width of ``EntityFeatures.text`` (0: no text)

    def to_dict(self) -> dict[str, object]:
        return {
            "n_ids": self.n_ids,
            "categorical": dict(self.categorical),
            "n_numeric": self.n_numeric,
            "numeric_names": list(self.numeric_names),
            "multi_hot": dict(self.multi_hot),
            "text_dim": self.text_dim,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> EntitySpec:
        return cls(
            n_ids=int(d["n_ids"]),  # type: ignore[call-overload]
            categorical={str(k): int(v) for k, v in dict(d["categorical"]).items()},  # type: ignore[call-overload]
            n_numeric=int(d["n_numeric"]),  # type: ignore[call-overload]
            numeric_names=tuple(str(x) for x in d.get("numeric_names", ())),  # type: ignore[attr-defined]
            multi_hot={str(k): int(v) for k, v in dict(d["multi_hot"]).items()},  # type: ignore[call-overload]
            text_dim=int(d.get("text_dim", 0)),  # type: ignore[call-overload]
        )
