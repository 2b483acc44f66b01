"""``Recommender``: a trained run, loaded read-only, behind the CLI, the HTTP service and
offline use. One small API, the same shape for one user or many (after benfred/implicit):

    ids, scores = rec.recommend([42, 7], k=10)      # (2, 10) raw item ids, (2, 10) scores
    preds = rec.predict(users=[42], items=[50])      # {"rating": array([...]), "like": ...}

Recommendation has two stages: retrieve the top ``recommend.candidates`` items by the dot product
of user and item vectors, then (when ``recommend.blend`` is set) re-rank them by a product of the
ranking tasks' predictions, e.g. ``{like = 1, rating = 0.5}`` -> ``like^1 * (rating/max)^0.5``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hydrarec.errors import ConfigError
from hydrarec.evaluation.evaluate import encode_items, encode_users, known_pairs
from hydrarec.rundir import LoadedRun, load_run


class Recommender:
    def __init__(self, run: LoadedRun, device: torch.device | None = None) -> None:
        self.run = run
        self.device = device or torch.device("cpu")
        self.model = run.model.to(self.device).eval()
        self.config = run.config
        self.known = run.known(("train", "valid", "test"))
        self.item_vectors = encode_items(self.model, run.items, self.device)  # (I, D)
        self._check_blend()

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None) -> Recommender:
        dev = torch.device(device) if device is not None else torch.device("cpu")
        return cls(load_run(path, dev), dev)

    # -- ids ----------------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return len(self.run.item_ids)

    @property
    def tasks(self) -> dict[str, str]:
        return {n: t.kind for n, t in self.model.tasks.items()}

    def user_index(self, users: Sequence[Any]) -> np.ndarray:
        return self.run.user_ids.index(np.asarray(users))

    def item_index(self, items: Sequence[Any]) -> np.ndarray:
        return self.run.item_ids.index(np.asarray(items))

    def title(self, item_index: np.ndarray) -> list[str]:
        raw = self.run.items_raw
        col = "title" if "title" in raw.columns else raw.columns[0]
        return [str(x) for x in raw[col].to_numpy()[item_index]]

    # -- vectors ------------------------------------------------------------------------------
    def user_vectors(self, user_index: np.ndarray) -> Tensor:
        hist, mask = self.known.last_n(user_index, self.config.model.sequence.max_len)
        return encode_users(
            self.model, self.run.users, user_index, hist, mask, self.item_vectors, self.device
        )

    # -- the API ------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, users: Sequence[Any], items: Sequence[Any]) -> dict[str, np.ndarray]:
        """Every task's prediction for each (user, item) pair (raw ids, equal lengths)."""
        if len(users) != len(items):
            raise ValueError(f"users and items differ in length: {len(users)} != {len(items)}")
        u = self.user_index(users)
        i = self.item_index(items)
        uv = self.user_vectors(u)
        preds = self.model.predict_pairs(uv, self.item_vectors[torch.as_tensor(i)])
        return {k: v.float().cpu().numpy() for k, v in preds.items()}

    @torch.no_grad()
    def recommend(
        self,
        users: Sequence[Any],
        k: int = 10,
        *,
        exclude_seen: bool | None = None,
        allow: Sequence[Any] | None = None,
        deny: Sequence[Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` raw item ids and scores per user, shapes (len(users), k)."""
        idx, scores = self.recommend_index(
            self.user_index(users), k, exclude_seen=exclude_seen, allow=allow, deny=deny
        )
        return self.run.item_ids.raw(idx.ravel()).reshape(idx.shape), scores

    @torch.no_grad()
    def recommend_index(
        self,
        user_index: np.ndarray,
        k: int,
        *,
        exclude_seen: bool | None = None,
        allow: Sequence[Any] | None = None,
        deny: Sequence[Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        exclude = self.config.recommend.exclude_seen if exclude_seen is None else exclude_seen
        uv = self.user_vectors(user_index)  # (B, D)
        scores = uv @ self.item_vectors.T  # (B, I)
        banned = torch.zeros_like(scores, dtype=torch.bool)
        if exclude:
            r, it = known_pairs(self.known, user_index)
            banned[torch.as_tensor(r), torch.as_tensor(it)] = True
        if allow is not None:
            keep = torch.zeros(self.n_items, dtype=torch.bool, device=scores.device)
            keep[torch.as_tensor(self.item_index(allow))] = True
            banned |= ~keep
        if deny is not None and len(deny):
            banned[:, torch.as_tensor(self.item_index(deny))] = True
        scores = scores.masked_fill(banned, float("-inf"))
        n = min(self.n_items, max(k, self.config.recommend.candidates if self.blend else k))
        top_s, top_i = torch.topk(scores, n, dim=1)  # stage one: (B, n)
        if self.blend:
            top_s = self._rerank(uv, top_i).masked_fill(torch.isinf(top_s), float("-inf"))
            top_s, order = torch.sort(top_s, dim=1, descending=True)
            top_i = torch.gather(top_i, 1, order)
        k = min(k, n)
        return top_i[:, :k].cpu().numpy(), top_s[:, :k].float().cpu().numpy()

    @property
    def blend(self) -> dict[str, float]:
        return self.config.recommend.blend

    def _check_blend(self) -> None:
        for name in self.blend:
            kind = self.tasks.get(name)
            if kind not in ("rating", "binary"):
                allowed = [n for n, k in self.tasks.items() if k in ("rating", "binary")]
                raise ConfigError(
                    f"recommend.blend names {name!r}, which is not a rating or binary task "
                    f"(allowed: {allowed})"
                )

    def _rerank(self, uv: Tensor, cand: Tensor) -> Tensor:
        """Stage two: product of task predictions raised to the blend exponents, (B, n)."""
        b, n = cand.shape
        user = uv[:, None, :].expand(b, n, uv.shape[1]).reshape(b * n, -1)
        item = self.item_vectors[cand.reshape(-1)]
        preds = self.model.predict_pairs(user, item)
        score = torch.ones(b * n, device=uv.device)
        for name, w in self.blend.items():
            p = preds[name].float()
            if self.tasks[name] == "rating":
                p = p / float(self.run.meta["label_stats"][name][1])  # rating / max of the scale
            score = score * p.clamp(min=1e-9) ** w
        return score.reshape(b, n)

    @torch.no_grad()
    def similar_items(self, items: Sequence[Any], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Nearest items by cosine similarity of item vectors (the item itself excluded)."""
        idx = self.item_index(items)
        v = torch.nn.functional.normalize(self.item_vectors, dim=1)
        sims = v[torch.as_tensor(idx)] @ v.T  # (B, I)
        sims[torch.arange(len(idx)), torch.as_tensor(idx)] = float("-inf")
        s, i = torch.topk(sims, min(k, self.n_items - 1), dim=1)
        ids = i.cpu().numpy()
        return self.run.item_ids.raw(ids.ravel()).reshape(ids.shape), s.cpu().numpy()
