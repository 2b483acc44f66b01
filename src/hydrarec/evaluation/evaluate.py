"""Evaluate a model on held-out interactions: every task from user and item vectors.

What every task needs is computed here once (a ``HeldOut``); each task scores itself from it
(``Task.evaluate``). Pointwise tasks (rating, binary) score each held-out (user, item) pair;
reconstruction decodes the held-out items' (or users') representations; retrieval ranks each
held-out item against the FULL catalogue (no sampled negatives), excluding the items the user
interacted with before it (the training items, plus the validation items when scoring test) and
the user's other held-out items.
Users are scored in batches, so memory stays bounded by ``batch_size x n_items``.

On a cold-item split (``among_held_out``) retrieval follows the COLD protocol of DESIGN.md
instead, ranking the held-out items among themselves (``held_out_ranking``): the catalogue's warm
items would otherwise win every ranking, and select models on how they rank those, not the new
items.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from hydrarec.features.batch import EntityFeatures
from hydrarec.features.histories import UserHistories, ragged_arange
from hydrarec.model.ensemble import Model
from hydrarec.tasks.base import HeldOut
from hydrarec.tasks.metrics import ndcg_at_k, ranking_metrics, recall_at_k


def known_pairs(known: UserHistories, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in ``users``, item) for every known item of every user in ``users``."""
    counts = known.indptr[users + 1] - known.indptr[users]
    rows = np.repeat(np.arange(len(users)), counts)
    return rows, known.items[np.repeat(known.indptr[users], counts) + ragged_arange(counts)]


@torch.no_grad()
def encode_items(
    model: Model,
    table: EntityFeatures,
    device: torch.device,
    chunk: int = 8192,
    advance: Callable[[int], object] | None = None,
) -> Tensor:
    """Vectors of every item of the catalogue, (I, D), ``chunk`` items at a time; ``advance``
    is told each chunk's size once it is encoded (a progress bar's)."""
    model.eval()
    parts = []
    for start in range(0, len(table), chunk):
        idx = torch.arange(start, min(start + chunk, len(table)))
        parts.append(model.encode_items(table.gather(idx).to(device)).float())
        if advance is not None:
            advance(len(idx))
    return torch.cat(parts)


@torch.no_grad()
def encode_users(
    model: Model,
    table: EntityFeatures,
    users: np.ndarray,
    history: np.ndarray,
    mask: np.ndarray,
    item_vectors: Tensor,
    device: torch.device,
) -> Tensor:
    """Vectors of ``users`` (catalogue indices) from their features and history items, (B, D)."""
    model.eval()
    feats = table.gather(torch.as_tensor(users)).to(device)
    hist = item_vectors[torch.as_tensor(history, device=item_vectors.device)]  # (B, N, D)
    m = torch.as_tensor(mask, device=device)
    return model.encode_users(feats, hist.to(device), m).float()


def split_vectors(
    model: Model,
    users_table: EntityFeatures,
    items_table: EntityFeatures,
    users: np.ndarray,
    known: UserHistories,
    history_len: int,
    device: torch.device,
    batch_size: int = 256,
) -> tuple[Tensor, Tensor]:
    """Vectors of ``users`` (catalogue indices; their last ``history_len`` known items as
    history), (U, D), and of every item of the catalogue, (I, D); users ``batch_size`` at a time."""
    item_vecs = encode_items(model, items_table, device)
    user_vecs = split_user_vectors(
        model, users_table, users, known, history_len, item_vecs, device, batch_size
    )
    return user_vecs, item_vecs


def split_user_vectors(
    model: Model,
    users_table: EntityFeatures,
    users: np.ndarray,
    known: UserHistories,
    history_len: int,
    item_vecs: Tensor,
    device: torch.device,
    batch_size: int = 256,
) -> Tensor:
    """Vectors of ``users`` with their last ``history_len`` known items as history, (U, D).

    Users go through the encoder shortest history first, each batch cut to its longest history:
    padding never changes a user's vector (encoders/sequence.py), and on short-history data
    (Amazon Beauty: ~9 items in histories of 50) most of a full-width batch is padding."""
    users = np.asarray(users, dtype=np.int64)
    user_vecs = torch.empty(len(users), item_vecs.shape[1], device=item_vecs.device)
    inside = (users >= 0) & (users < known.n_users)
    lengths = np.where(inside, np.diff(known.indptr)[np.where(inside, users, 0)], 0)
    order = np.argsort(np.minimum(lengths, history_len), kind="stable")
    for s in range(0, len(users), batch_size):
        rows = order[s : s + batch_size]
        u = users[rows]
        hist, mask = known.last_n(u, history_len)
        width = max(1, int(mask.sum(axis=1).max(initial=0)))  # right-aligned: the last columns
        hist, mask = hist[:, hist.shape[1] - width :], mask[:, mask.shape[1] - width :]
        user_vecs[torch.as_tensor(rows, device=user_vecs.device)] = encode_users(
            model, users_table, u, hist, mask, item_vecs, device
        )
    return user_vecs


def evaluate_model(
    model: Model,
    users_table: EntityFeatures,
    items_table: EntityFeatures,
    rows_user: np.ndarray,
    rows_item: np.ndarray,
    labels: dict[str, np.ndarray],
    known: UserHistories,
    history_len: int,
    ks: list[int],
    device: torch.device,
    batch_size: int = 256,
    exclude_known: bool = True,
    among_held_out: bool = False,
) -> dict[str, float]:
    """Metrics of every task, keyed ``task/metric``, over the held-out rows.

    ``exclude_known = False``: the user's known items compete in the full ranking too (papers
    differ on this; the known items are still the history). ``among_held_out``: retrieval ranks
    the held-out items among themselves (``held_out_ranking``, the cold-item protocol)."""
    uniq, inverse = np.unique(rows_user, return_inverse=True)
    user_vecs, item_vecs = split_vectors(
        model, users_table, items_table, uniq, known, history_len, device, batch_size
    )

    def ranking() -> dict[str, float]:
        if among_held_out:
            return held_out_ranking(user_vecs, item_vecs, inverse, rows_item, ks, batch_size)
        ranks = full_ranking_ranks(
            user_vecs, item_vecs, uniq, inverse, rows_item, known, batch_size, exclude_known
        )
        return ranking_metrics(ranks, ks)

    members = []  # the tasks' view of each model: its vectors without a side block (model.heads)
    for member, u_part, i_part in model.member_channels(user_vecs, item_vecs):
        main_users, main_items, _ = member.split(u_part, i_part)
        members.append((dict(member.task_items()), main_users, main_items))
    predictions = _pairwise_predictions(model, user_vecs, item_vecs, inverse, rows_item, batch_size)
    held_out = HeldOut(
        users=rows_user,
        items=rows_item,
        distinct_users=uniq,
        labels=labels,
        predictions=predictions,
        ranking=ranking,
        members=members,
        user_table=users_table,
        item_table=items_table,
    )
    out: dict[str, float] = {}
    for name, task in model.task_items():
        res = task.evaluate(held_out)
        # an undefined metric (e.g. GAUC with one held-out item per user) is left out, not NaN
        out.update({f"{name}/{k}": float(v) for k, v in res.items() if not np.isnan(v)})
    return out


@torch.no_grad()
def _pairwise_predictions(
    model: Model,
    user_vecs: Tensor,
    item_vecs: Tensor,
    inverse: np.ndarray,
    rows_item: np.ndarray,
    batch_size: int,
) -> dict[str, np.ndarray]:
    chunks: dict[str, list[np.ndarray]] = {}
    step = batch_size * 16
    for s in range(0, len(rows_item), step):
        u = user_vecs[torch.as_tensor(inverse[s : s + step], device=user_vecs.device)]
        i = item_vecs[torch.as_tensor(np.array(rows_item[s : s + step]), device=item_vecs.device)]
        for k, v in model.predict_pairs(u, i).items():
            chunks.setdefault(k, []).append(v.float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in chunks.items()}


@torch.no_grad()
def held_out_ranking(
    user_vecs: Tensor,
    item_vecs: Tensor,
    inverse: np.ndarray,
    rows_item: np.ndarray,
    ks: list[int],
    batch_size: int,
) -> dict[str, float]:
    """The COLD protocol: every user's top ``max(ks)`` among the held-out items (those the rows
    name) by the retrieval score; ``recall@k`` and ``ndcg@k`` of the user's own held-out items
    (``metrics.recall_at_k``, ``ndcg_at_k``), ``hr@k`` (one of them in the top k) and ``mrr@k``
    (1 / rank of the first), averaged over the users with held-out rows.

    ``inverse`` (R,): each row's user, a row of ``user_vecs`` (U, D); ``rows_item`` (R,): items.
    """
    candidates = np.unique(rows_item)  # (C,)
    relevant: list[set[int]] = [set() for _ in range(len(user_vecs))]
    for u, i in zip(inverse.tolist(), np.asarray(rows_item).tolist(), strict=True):
        relevant[u].add(i)
    width = min(max(ks), len(candidates))
    cand_vecs = item_vecs[torch.as_tensor(candidates, device=item_vecs.device)]  # (C, D)
    top = np.empty((len(user_vecs), width), dtype=np.int64)
    for s in range(0, len(user_vecs), batch_size):
        scores = user_vecs[s : s + batch_size] @ cand_vecs.T  # (B, C)
        top[s : s + batch_size] = candidates[torch.topk(scores, width, dim=1).indices.cpu()]
    hit = np.array([[i in rel for i in row] for row, rel in zip(top, relevant, strict=True)])
    out: dict[str, float] = {}
    for k in ks:
        first = np.where(hit[:, :k].any(1), hit[:, :k].argmax(1), -1)  # (U,) -1: none
        out[f"recall@{k}"] = recall_at_k(top, relevant, k)
        out[f"ndcg@{k}"] = ndcg_at_k(top, relevant, k)
        out[f"hr@{k}"] = float((first >= 0).mean())
        out[f"mrr@{k}"] = float(
            np.where(first >= 0, 1.0 / (np.maximum(first, 0) + 1.0), 0.0).mean()
        )
    return out


@torch.no_grad()
def full_ranking_ranks(
    user_vecs: Tensor,
    item_vecs: Tensor,
    users: np.ndarray,
    inverse: np.ndarray,
    targets: np.ndarray,
    known: UserHistories,
    batch_size: int,
    exclude_known: bool = True,
) -> np.ndarray:
    """Zero-based rank of each held-out item among all items, ties counted half.

    Excluded: the user's known items (unless ``exclude_known`` is False) and the user's other
    held-out items. A constant model therefore ranks a target in the middle, never first.
    """
    order = np.argsort(inverse, kind="stable")
    heldout = UserHistories(inverse, targets, n_users=len(users))
    ranks = np.empty(len(targets), dtype=np.float64)
    n_items = item_vecs.shape[0]
    rows_per = max(1, min(batch_size, (1 << 24) // max(n_items, 1)))
    for s in range(0, len(order), rows_per):
        sel = order[s : s + rows_per]  # held-out rows of this chunk
        u_local = inverse[sel]
        scores = user_vecs[torch.as_tensor(u_local)] @ item_vecs.T  # (R, I)
        excl = torch.zeros_like(scores, dtype=torch.bool)
        if exclude_known:
            r, it = known_pairs(known, users[u_local])
            excl[torch.as_tensor(r), torch.as_tensor(it)] = True
        # the same user's other held-out items are not competitors
        r, it = known_pairs(heldout, u_local)
        excl[torch.as_tensor(r), torch.as_tensor(it)] = True
        tgt = torch.as_tensor(targets[sel])
        idx = torch.arange(len(sel))
        excl[idx, tgt] = False
        t_score = scores[idx, tgt][:, None]
        scores = scores.masked_fill(excl, float("-inf"))
        higher = (scores > t_score).sum(1).double()
        ties = (scores == t_score).sum(1).double() - 1.0
        ranks[sel] = (higher + 0.5 * ties).cpu().numpy()
    return ranks


@torch.no_grad()
def top_k_items(
    user_vecs: Tensor,
    item_vecs: Tensor,
    users: np.ndarray,
    known: UserHistories,
    k: int,
    batch_size: int,
    exclude_known: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's ``k`` best items by the retrieval score, ranked as ``full_ranking_ranks``
    ranks them: every item of the catalogue but the user's known items (unless
    ``exclude_known`` is False). (U, k) catalogue indices and scores; a slot no item can fill
    holds index -1 and score ``-inf``. A held-out item's 0-based rank in ``full_ranking_ranks``
    is its position here less the user's other held-out items listed above it (ties aside)."""
    width = min(k, item_vecs.shape[0])
    items = np.full((len(users), k), -1, dtype=np.int64)
    scores = np.full((len(users), k), -np.inf, dtype=np.float32)
    for s in range(0, len(users), batch_size):
        rows = np.arange(s, min(s + batch_size, len(users)))
        chunk = user_vecs[torch.as_tensor(rows)] @ item_vecs.T  # (R, I)
        if exclude_known:
            r, it = known_pairs(known, users[rows])
            chunk[torch.as_tensor(r), torch.as_tensor(it)] = float("-inf")
        best, at = torch.topk(chunk, width, dim=1)  # (R, width), sorted
        at = torch.where(torch.isinf(best), -1, at)
        items[rows, :width] = at.cpu().numpy()
        scores[rows, :width] = best.float().cpu().numpy()
    return items, scores
