"""``Recommender``: a trained run, loaded read-only, behind the CLI, the HTTP service and
offline use. One ``recommend``, the same shape for one user or many (after benfred/implicit):

    ids, scores = rec.recommend([42, 7], k=10)      # (2, 10) raw item ids, (2, 10) scores
    out = rec.recommend([UserQuery(history=[50, 172])], k=10, explain=True)  # a cold user
    rec.recommend(users, k=10, as_of="test").table(users)  # as evaluation ranks the test split
    preds = rec.predict(users=[42], items=[50])      # {"rating": array([...]), "like": ...}

Recommendation has two stages (Covington et al., "Deep Neural Networks for YouTube
Recommendations", RecSys 2016): retrieve the top ``recommend.candidates`` items by the dot product
of user and item vectors through the run's ``ItemIndex`` (exact or FAISS), then, when
``recommend.blend`` is set, re-rank them by stage one's probability times a product of the
ranking tasks' predictions, e.g. ``{like = 1, rating = 0.5}`` -> ``exp(u.i / T) * like^1 *
(rating/max)^0.5`` (scored as its log; ``T`` the retrieval temperature). Seen items (the
user's history) are excluded unless asked; ``allow`` restricts the candidates to a list (scored
exactly), ``deny`` removes items.

The contract: ``users`` is a list (one user is ``[42]``; a bare ``42`` is an ``ArgumentError``),
``k`` a positive integer (``2.5``, ``True`` or ``0``: an ``ArgumentError``), and the result is
always ``(len(users), k)``: a user with fewer than ``k`` eligible items (unseen, allowed, not
denied; ``k`` may exceed the catalogue) gets them first and empty slots after (see
``Recommendations``). Raw ids match the run's id type by ``recommend.queries.match_id_type``'s
rule. Users are known ids, or ``UserQuery``s: a history of raw item ids and / or raw user
features, for users the run does not know (``recommend/queries.py``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from hydrarec.config import TASK_KINDS
from hydrarec.errors import ArgumentError, ConfigError
from hydrarec.evaluation.evaluate import encode_items, split_user_vectors, top_k_items
from hydrarec.recommend.queries import QueryEncoder, UserQuery, Users, id_keys, match_id_type
from hydrarec.recommend.rerank import ItemSideCache, predict_candidates
from hydrarec.retrieval.base import Exclusion, ItemIndex
from hydrarec.retrieval.exact import ExactIndex
from hydrarec.retrieval.explain import supporting_items
from hydrarec.run.evaluate import KNOWN_BEFORE
from hydrarec.run.index import INDEX_DIR, index_from_vectors, saved_index, saved_kind
from hydrarec.run.rundir import LoadedRun, load_run


@dataclass
class Recommendations:
    """Top-k per user, (B, k) whatever the number of eligible items. Empty slots (fewer than k
    eligible items): index -1, raw id None, score -inf, predictions NaN, at the end of the row."""

    items: np.ndarray  # (B, k) int64 catalogue indices
    ids: np.ndarray  # (B, k) raw item ids (object array with None in empty slots, if any)
    scores: np.ndarray  # (B, k) float32: the blend's log score, or the dot product without one
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # task -> (B, k), NaN if empty
    support: np.ndarray | None = None  # (B, k, n) catalogue indices of supporting history items
    support_ids: np.ndarray | None = None  # (B, k, n) their raw ids (None where absent)
    support_scores: np.ndarray | None = None  # (B, k, n) cosine similarity, NaN where absent

    def __iter__(self) -> Iterator[np.ndarray]:
        """``ids, scores = rec.recommend(...)``, after implicit's ``recommend``."""
        return iter((self.ids, self.scores))

    def table(self, users: Sequence[Any]) -> pd.DataFrame:
        """``user_id, rank, item_id, score`` rows of the filled slots (what ``hydrarec recommend``
        writes); ``users``: whom the rows are for."""
        filled = self.items >= 0
        rows, ranks = np.nonzero(filled)
        ids = self.ids[filled]
        if ids.dtype == object:  # the run's id type again, the empty slots' None gone
            ids = pd.Series(ids).infer_objects().to_numpy()
        return pd.DataFrame(
            {
                "user_id": np.asarray(users, dtype=object)[rows],
                "rank": ranks + 1,
                "item_id": ids,
                "score": self.scores[filled],
            }
        )

    @staticmethod
    def concat(parts: Sequence[Recommendations]) -> Recommendations:
        """The rows of ``parts``, one after another."""

        def cat(values: list[Any]) -> Any:  # arrays, task -> array dicts, or Nones
            if isinstance(values[0], dict):
                return {t: np.concatenate([v[t] for v in values]) for t in values[0]}
            return None if values[0] is None else np.concatenate(values)

        return Recommendations(
            **{f.name: cat([getattr(p, f.name) for p in parts]) for f in fields(Recommendations)}
        )

    def row(self, r: int) -> Recommendations:
        """User ``r`` alone, as a one-row ``Recommendations``."""

        def take(v: Any) -> Any:  # an array, a task -> array dict, or None
            if isinstance(v, dict):
                return {t: p[r : r + 1] for t, p in v.items()}
            return None if v is None else v[r : r + 1]

        return Recommendations(**{f.name: take(getattr(self, f.name)) for f in fields(self)})


class Recommender:
    """A loaded run: item vectors, the item index, the query encoder and the two stages.

    ``index`` names the item index to use ("exact", "faiss_hnsw", "faiss_ivf"; default: the run's
    ``recommend.index``). The run's saved ``RUN/index/`` is used when it is of that kind and was
    built from these weights; otherwise one is built in memory. Nothing is written to the run.
    """

    def __init__(
        self, run: LoadedRun, device: torch.device | None = None, index: str | None = None
    ) -> None:
        self.run = run
        self.device = device or torch.device("cpu")
        self.model = run.model.to(self.device).eval()
        self.config = run.config
        self.known = run.known(("train", "valid", "test"))
        self.item_vectors = encode_items(self.model, run.items, self.device)  # (I, D)
        self.index = self._load_index(index or self.config.recommend.index)
        self.queries = QueryEncoder(run, self.known, self.item_vectors, self.device)
        self._item_side: ItemSideCache | None = None  # stage two's stacked weights
        self._check_blend()

    @classmethod
    def load(
        cls, path: str | Path, device: str | torch.device | None = None, index: str | None = None
    ) -> Recommender:
        """Load a run; ``index`` overrides ``recommend.index`` ("exact", "faiss_hnsw", ...)."""
        dev = torch.device(device) if device is not None else torch.device("cpu")
        return cls(load_run(path, dev), dev, index)

    def _load_index(self, kind: str) -> ItemIndex:
        """The index the class doc describes, with the items added since it was built."""
        found = saved_index(self.run.run, kind)
        if found is None and saved_kind(self.run.run) == kind:
            where = self.run.run.path / INDEX_DIR
            warnings.warn(
                f"{where} was not built from these weights; building the index in memory",
                stacklevel=3,
            )
        if found is None or len(found[0]) > self.n_items:
            return index_from_vectors(kind, self.item_vectors.cpu())
        index, _ = found
        if len(index) < self.n_items:
            new = np.arange(len(index), self.n_items)
            index.add(self.item_vectors[torch.from_numpy(new)].cpu(), new)
        return index

    # -- ids ----------------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return len(self.run.item_ids)

    @property
    def tasks(self) -> dict[str, str]:
        return {n: t.kind for n, t in self.model.task_items()}

    def user_index(self, users: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Catalogue indices of raw user ids (``match_id_type``); unknown: ``UnknownIdError``."""
        return self.run.user_ids.index(id_keys(id_list(users, "users"), self.run.user_ids))

    def item_index(self, items: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Catalogue indices of raw item ids (``match_id_type``); unknown: ``UnknownIdError``."""
        return self.run.item_ids.index(id_keys(id_list(items, "items"), self.run.item_ids))

    def user_key(self, raw: Any) -> Any:
        """``raw`` as the run's user id type ("42" -> 42 for integer ids, 42 -> "42" for text)."""
        return match_id_type(raw, self.run.user_ids.raw_ids)

    def item_key(self, raw: Any) -> Any:
        """``raw`` as the run's item id type (see ``user_key``)."""
        return match_id_type(raw, self.run.item_ids.raw_ids)

    def raw_items(self, index: np.ndarray) -> np.ndarray:
        """Raw ids of catalogue indices of any shape; -1 -> None (in an object array)."""
        flat = np.asarray(index).ravel()
        empty = flat < 0
        raw = self.run.item_ids.raw(np.where(empty, 0, flat))
        if empty.any():
            raw = raw.astype(object)
            raw[empty] = None
        return raw.reshape(np.shape(index))

    def title(self, item_index: np.ndarray) -> list[str]:
        raw = self.run.items_raw
        col = "title" if "title" in raw.columns else raw.columns[0]
        return [str(x) for x in raw[col].to_numpy()[item_index]]

    # -- users --------------------------------------------------------------------------------
    def user_vectors(self, user_index: np.ndarray) -> Tensor:
        """Vectors of known users (catalogue indices) from their stored features and history."""
        return self.queries.known_users(np.asarray(user_index, dtype=np.int64)).vectors

    def warm(self) -> int:
        """Encode known users ahead of their first request (``QueryEncoder.warm``); how many."""
        return self.queries.warm()

    # -- the API ------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, users: Sequence[Any], items: Sequence[Any]) -> dict[str, np.ndarray]:
        """Every task's prediction for each (user, item) pair (raw ids, equal lengths)."""
        user_list, item_list = id_list(users, "users"), id_list(items, "items")
        if len(user_list) != len(item_list):
            raise ArgumentError(
                f"users and items differ in length: {len(user_list)} != {len(item_list)}"
            )
        u, i = self.user_index(user_list), self.item_index(item_list)
        uv, iv = self.user_vectors(u), self.item_vectors[torch.as_tensor(i)]
        preds = self.model.predict_pairs(uv, iv)
        return {k: v.float().cpu().numpy() for k, v in preds.items()}

    @torch.no_grad()
    def recommend(
        self,
        users: Sequence[Any] | Sequence[UserQuery],
        k: int = 10,
        *,
        exclude_seen: bool | None = None,
        allow: Sequence[Any] | None = None,
        deny: Sequence[Any] | None = None,
        as_of: str | None = None,
        explain: bool = False,
        predictions: bool = False,
        batch_size: int | None = None,
    ) -> Recommendations:
        """Top-``k`` per user (``batch_size`` at a time if given); it unpacks as ``ids, scores``.

        ``users``: raw ids of known users, or ``UserQuery``s (cold users, extra history).
        ``exclude_seen`` defaults to ``recommend.exclude_seen``. ``explain``: each item's
        supporting history items; ``predictions``: every task's prediction of each item.
        ``as_of = "valid"`` or ``"test"``: known users as ``hydrarec evaluate`` ranks that split,
        to score offline with one's own metrics (issue 22; ``_as_of``)."""
        k = positive_k(k)
        user_list = id_list(users, "users")
        if as_of is not None and (allow is not None or deny is not None or explain or predictions):
            raise ValueError("as_of ranks every item, as evaluation does: no allow / deny")
        step = batch_size or max(len(user_list), 1)
        parts = []
        for s in range(0, max(len(user_list), 1), step):
            chunk = user_list if len(user_list) <= step else user_list[s : s + step]
            if as_of is not None:
                parts.append(self._as_of(self.user_index(chunk), k, as_of, exclude_seen is False))
                continue
            if len(chunk) > 0 and isinstance(chunk[0], UserQuery):
                resolved = self.queries.resolve(cast("Sequence[UserQuery]", chunk))
            else:
                resolved = self.queries.known_users(self.user_index(chunk))
            parts.append(self._rank(resolved, k, exclude_seen, allow, deny, explain, predictions))
        return parts[0] if len(parts) == 1 else Recommendations.concat(parts)

    def _as_of(
        self, user_index: np.ndarray, k: int, split: str, keep_known: bool
    ) -> Recommendations:
        """Top-``k`` as evaluation ranks ``split``: the history is the interactions before it
        (``run.evaluate.KNOWN_BEFORE``), those items are excluded (unless ``keep_known``, as
        ``evaluate --with-known``), and every other item is ranked by the retrieval score,
        exactly (no index, no blend). See ``evaluation.top_k_items`` for how a held-out item's
        rank in evaluation reads off the list."""
        if split not in KNOWN_BEFORE:
            raise ValueError(f"as_of must be one of {sorted(KNOWN_BEFORE)}, not {split!r}")
        known = self.run.known(KNOWN_BEFORE[split])
        users = np.asarray(user_index, dtype=np.int64)
        cfg = self.config
        user_vecs = split_user_vectors(
            self.model, self.run.users, users, known, cfg.model.sequence.max_len,
            self.item_vectors, self.device, cfg.eval.batch_size,
        )  # fmt: skip
        idx, scores = top_k_items(
            user_vecs, self.item_vectors, users, known, k, cfg.eval.batch_size, not keep_known
        )
        return Recommendations(idx, self.raw_items(idx), scores)

    def split_users(self, split: str) -> np.ndarray:
        """Raw ids of the users with interactions in ``split`` (those evaluation scores)."""
        inter = self.run.interactions
        users = np.unique(inter.loc[inter["split"] == split, "user_idx"].to_numpy())
        return self.run.user_ids.raw(users)

    def _rank(
        self,
        users: Users,
        k: int,
        exclude_seen: bool | None,
        allow: Sequence[Any] | None,
        deny: Sequence[Any] | None,
        explain: bool,
        predictions: bool,
        explain_items: int = 3,
    ) -> Recommendations:
        """The two stages for resolved users."""
        exclude = self._exclusion(users, exclude_seen, deny)
        n = min(self.n_items, max(k, self.config.recommend.candidates)) if self.blend else k
        cand, scores = self._retrieve(users.vectors, n, exclude, allow)  # stage one: (B, n)
        preds: dict[str, Tensor] = {}
        if self.blend or predictions:
            cand, scores, preds = self._rerank(users.vectors, cand, scores, k)  # stage two
        cand, scores = cand[:, :k], scores[:, :k]
        if cand.shape[1] < k:  # stage two kept every candidate, fewer than k: empty slots
            cand, scores, preds = _widen(cand, scores, preds, k)
        out = Recommendations(cand.numpy(), self.raw_items(cand.numpy()), scores.numpy())
        if predictions:
            out.predictions = {t: p.numpy() for t, p in preds.items()}
        if explain:
            self._explain(out, users, explain_items)
        return out

    def _exclusion(
        self, users: Users, exclude_seen: bool | None, deny: Sequence[Any] | None
    ) -> Exclusion:
        exclude = self.config.recommend.exclude_seen if exclude_seen is None else exclude_seen
        b = len(users.vectors)
        seen = users.mask if exclude else np.zeros_like(users.mask)
        rows, ids = np.nonzero(seen)[0], users.history[seen]
        if deny is not None and len(deny):
            d = self.item_index([self.item_key(i) for i in deny])
            rows = np.concatenate([rows, np.repeat(np.arange(b), len(d))])
            ids = np.concatenate([ids, np.tile(d, b)])
        return Exclusion(rows.astype(np.int64), ids.astype(np.int64))

    def _retrieve(
        self, uv: Tensor, n: int, exclude: Exclusion, allow: Sequence[Any] | None
    ) -> tuple[Tensor, Tensor]:
        """Stage one: the top ``n`` by dot product, through the index or exactly over ``allow``."""
        index = self.index
        if allow is not None:
            a = np.unique(self.item_index([self.item_key(i) for i in allow]))
            index = ExactIndex().build(self.item_vectors[torch.from_numpy(a)].cpu(), a)
        ids, scores = index.search(uv.cpu(), n, exclude)
        return torch.from_numpy(ids), torch.from_numpy(scores)

    @property
    def blend(self) -> dict[str, float]:
        return self.config.recommend.blend

    def _check_blend(self) -> None:
        allowed = [n for n, k in self.tasks.items() if TASK_KINDS[k].labelled]
        for name in self.blend:
            if name not in allowed:
                raise ConfigError(
                    f"recommend.blend names {name!r}, which is not a rating or binary task "
                    f"(allowed: {allowed})"
                )

    def _rerank(
        self, uv: Tensor, cand: Tensor, dots: Tensor, k: int
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Stage two: the best ``k`` candidates by the blend, their blend scores, and every
        task's prediction, (B, k) each. Without a blend the order (by dot product) is kept.
        Empty slots stay last, at -inf.

        The blend (module doc) is scored as its log: ``u.i / T + sum_t w_t log p_t``.
        The ranking heads learn how the pairs that happen are rated (P(like | picked)), never
        which items a user picks: alone they ranked new items by a guess at their quality and
        lost the retrieval order (issue 20: Recall@10 0.074 against 0.175 on cold items)."""
        b, n = cand.shape
        if self._item_side is None or self._item_side.item_vectors is not self.item_vectors:
            self._item_side = ItemSideCache(self.item_vectors)
        safe = cand.clamp(min=0).to(self.item_vectors.device)
        preds = {
            t: p.float().reshape(b, n).cpu()
            for t, p in predict_candidates(self.model, uv, safe, self._item_side).items()
        }
        empty = cand < 0
        score = dots.clone()
        tasks = dict(self.model.task_items())
        if self.blend:
            picked = [name for name, kind in self.tasks.items() if kind == "retrieval"]
            if picked:  # log P(item | user), up to the user's constant
                score = tasks[picked[0]].blend_log(preds[picked[0]])
            for name, w in self.blend.items():
                score = score + w * tasks[name].blend_log(preds[name])
        score = score.masked_fill(empty, float("-inf"))
        order = torch.sort(score, dim=1, descending=True, stable=True).indices[:, :k]
        cand = torch.gather(cand, 1, order)
        gone = cand < 0  # empty slots among the k
        preds = {
            t: torch.gather(p, 1, order).masked_fill_(gone, float("nan")) for t, p in preds.items()
        }
        return cand, torch.gather(score, 1, order), preds

    def _explain(self, out: Recommendations, users: Users, n: int) -> None:
        idx, sims = supporting_items(
            self.item_vectors.cpu(),
            torch.from_numpy(out.items),
            torch.from_numpy(users.history),
            torch.from_numpy(users.mask),
            n,
        )
        out.support, out.support_scores = idx.numpy(), sims.numpy()
        out.support_ids = self.raw_items(out.support)

    @torch.no_grad()
    def similar_items(self, items: Sequence[Any], k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Nearest items by cosine similarity of item vectors (the item itself excluded), shapes
        (len(items), min(k, n_items - 1))."""
        k = positive_k(k)
        idx = self.item_index(items)
        v = torch.nn.functional.normalize(self.item_vectors, dim=1)
        sims = v[torch.as_tensor(idx)] @ v.T  # (B, I)
        sims[torch.arange(len(idx)), torch.as_tensor(idx)] = float("-inf")
        s, i = torch.topk(sims, max(1, min(k, self.n_items - 1)), dim=1)
        return self.raw_items(i.cpu().numpy()), s.cpu().numpy()


def positive_k(k: Any) -> int:
    """``k`` as an int; anything but a positive integer (numpy's included) is an ArgumentError:
    ``2.5`` would fail deep in a slice and ``True`` would quietly mean 1."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise ArgumentError(f"k must be a positive integer, got {k!r} ({type(k).__name__})")
    if k < 1:
        raise ArgumentError(f"k must be a positive integer, got {k}")
    return int(k)


def id_list(ids: Any, name: str) -> Sequence[Any] | np.ndarray:
    """``ids`` if it is a list of ids (a sequence or a 1-D array); one id alone is an
    ``ArgumentError`` saying how to pass it, as the API has one shape for one user or many."""
    if isinstance(ids, (pd.Series, pd.Index)):
        ids = ids.to_numpy()
    if isinstance(ids, np.ndarray) and ids.ndim == 1:
        return ids
    if isinstance(ids, Sequence) and not isinstance(ids, (str, bytes)):
        return ids
    shown = f"{type(ids).__name__} {ids!r}"[:80]
    raise ArgumentError(f"{name} must be a list of raw ids ([x] for one), got {shown}")


def _widen(
    cand: Tensor, scores: Tensor, preds: dict[str, Tensor], k: int
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """(B, n) results as (B, k), n < k, with empty slots: index -1, score -inf, predictions NaN."""
    b, pad = cand.shape[0], k - cand.shape[1]
    cand = torch.cat([cand, cand.new_full((b, pad), -1)], dim=1)
    scores = torch.cat([scores, scores.new_full((b, pad), float("-inf"))], dim=1)
    preds = {t: torch.cat([p, p.new_full((b, pad), float("nan"))], dim=1) for t, p in preds.items()}
    return cand, scores, preds


__all__ = ["Recommendations", "Recommender", "UserQuery", "Users"]
