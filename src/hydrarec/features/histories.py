"""Each user's items in time order (CSR), with vectorised history windows.

A history is (B, N) and **right-aligned**, the most recent item last; rows with fewer than N
earlier items are padded on the left (mask False).

Training windows (SASRec, Kang and McAuley, ICDM 2018): ``windows`` cuts each user's sequence into
(W, N) windows whose position j holds the item before the one position j predicts, so one causal
pass over a window gives up to N (state, next item) pairs instead of one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from hydrarec.errors import DataError


class UserHistories:
    """Each user's interactions sorted by (timestamp, row position), as CSR arrays.

    ``items[indptr[u]:indptr[u + 1]]`` are user ``u``'s items, oldest first. Built from the
    interactions at ``rows`` (e.g. the train rows, or train + valid when scoring test); ties in
    time keep file order; without timestamps file order is the time order.

    >>> h = UserHistories(np.array([0, 0, 0]), np.array([5, 6, 7]), np.array([3, 1, 2]))
    >>> h.items.tolist()
    [6, 7, 5]
    >>> items, mask = h.history_before(np.array([0, 1]), 2)  # row 0 is the last, row 1 the first
    >>> items.tolist(), mask.tolist()
    ([[6, 7], [0, 0]], [[True, True], [False, False]])
    >>> h.last_n(np.array([0]), 4)[0].tolist()
    [[0, 6, 7, 5]]
    """

    def __init__(
        self,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        timestamp: np.ndarray | None = None,
        rows: np.ndarray | None = None,
        n_users: int | None = None,
    ) -> None:
        users = np.asarray(user_idx, dtype=np.int64)
        rows = np.arange(len(users)) if rows is None else np.asarray(rows, dtype=np.int64)
        u = users[rows]
        keys = (rows, u) if timestamp is None else (rows, np.asarray(timestamp)[rows], u)
        order = rows[np.lexsort(keys)]  # rows sorted by (user, time, row)
        self.n_users = int(u.max(initial=-1)) + 1 if n_users is None else int(n_users)
        if len(u) and (u.min() < 0 or u.max() >= self.n_users):
            raise DataError(f"user indices must lie in [0, {self.n_users})", field="user_idx")
        self.items = np.asarray(item_idx, dtype=np.int64)[order]  # (M,) CSR data
        self.rows = order  # (M,) the interaction row of each place in ``items``
        counts = np.bincount(users[order], minlength=self.n_users)
        self.indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # (n_users + 1,)
        self._users = users  # user of every row (a reference, not a copy)
        self._pos = np.full(len(users), -1, dtype=int_for(len(order)))  # row -> place in items
        self._pos[order] = np.arange(len(order))
        self._windows: dict[int, np.ndarray] = {}

    def history_before(
        self, rows: np.ndarray, n: int, pad: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(B, n) items the user had before each row (right-aligned) and the (B, n) mask.

        Every row must be one the histories were built from; padded places hold ``pad``.
        """
        rows = np.asarray(rows, dtype=np.int64)
        pos = np.take(self._pos, rows)
        if (pos < 0).any():
            bad = rows[pos < 0][:5].tolist()
            raise DataError(
                f"rows {bad} are not in these histories", expected="rows it was built from"
            )
        return self._take(pos + n * np.take(self._users, rows), n, pad)

    def last_n(self, users: np.ndarray, n: int, pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(B, n) last n items of each user (right-aligned) and the mask; unknown users: empty."""
        users = np.asarray(users, dtype=np.int64)
        known = (users >= 0) & (users < self.n_users)
        u = np.where(known, users, 0)
        return self._take(np.where(known, self.indptr[u + 1] + n * u, 0), n, pad)

    def window_ends(self, stride: int) -> np.ndarray:
        """(W,) places in ``items`` where training windows end: each user's last item, then every
        ``stride`` items back, so windows of ``stride`` targets cover every item exactly once.

        >>> h = UserHistories(np.zeros(5, dtype=int), np.arange(5))
        >>> h.window_ends(2).tolist()
        [4, 2, 0]
        """
        if stride < 1:
            raise DataError(f"window stride {stride}", expected=">= 1")
        n_win = -(-np.diff(self.indptr) // stride)  # (n_users,) windows per user
        user = np.repeat(np.arange(self.n_users), n_win)  # (W,)
        k = ragged_arange(n_win)  # (W,) k-th window from the user's end
        return self.indptr[user + 1] - 1 - k * stride

    def windows(
        self, ends: np.ndarray, n: int, stride: int, pad: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Training windows of length ``n`` ending at the places ``ends`` (see ``window_ends``).

        Position j of the window ending at place e predicts the item at place ``e - n + 1 + j``
        from the items before it; its input is the item at place ``e - n + j`` (``pad`` and mask
        False before the user's first item: windows are left-padded, and the position that
        predicts a user's first item has an empty history). The last ``stride`` positions are
        targets; earlier ones, and places before the user's first item, are context only.

        Returns inputs (W, n), their mask (W, n), the interaction rows of the R targets (R,) and
        the flat index ``w * n + j`` of each target's position (R,), window by window.

        >>> h = UserHistories(np.zeros(3, dtype=int), np.array([7, 8, 9]))
        >>> x, m, rows, pos = h.windows(np.array([2]), 4, 4)
        >>> x.tolist(), m.tolist(), rows.tolist(), pos.tolist()
        ([[0, 0, 7, 8]], [[False, False, True, True]], [0, 1, 2], [1, 2, 3])
        """
        ends = np.asarray(ends, dtype=np.int64)
        if not 1 <= stride <= n:
            raise DataError(f"window stride {stride} with windows of {n}", expected="1..n")
        start = self.indptr[np.take(self._users, np.take(self.rows, ends))]  # (W,) user's first
        target = ends[:, None] + np.arange(1 - n, 1)  # (W, n) place each position predicts
        first = np.maximum(start, ends - stride + 1)  # (W,) first place that is a target
        is_target = target >= first[:, None]  # (W, n)
        source = target - 1  # (W, n) place of each position's input
        mask = source >= start[:, None]  # (W, n)
        inputs = np.where(mask, np.take(self.items, np.maximum(source, 0)), pad)
        rows = np.take(self.rows, target[is_target])  # (R,)
        return inputs, mask, rows, np.flatnonzero(is_target)

    def window_lengths(self, ends: np.ndarray, n: int) -> np.ndarray:
        """(W,) the number of places of each window of length ``n`` ending at ``ends`` that
        hold an item or the user's first target: ``min(n, place - user's first place + 1)``.

        >>> h = UserHistories(np.array([0, 0, 0, 1]), np.array([7, 8, 9, 5]))
        >>> h.window_lengths(np.array([2, 1, 3]), 2).tolist()
        [2, 2, 1]
        """
        ends = np.asarray(ends, dtype=np.int64)
        start = self.indptr[np.take(self._users, np.take(self.rows, ends))]  # (W,)
        return np.minimum(n, ends - start + 1)

    def _take(self, starts: np.ndarray, n: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
        """Windows at ``starts`` of the padded layout; -1 (the layout's padding) -> ``pad``."""
        if n == 0:
            return np.full((len(starts), 0), pad, np.int64), np.zeros((len(starts), 0), bool)
        out = self._layout(n)[starts].astype(np.int64)  # (B, n), one contiguous slice per row
        mask = out >= 0
        return (out if pad == -1 else np.where(mask, out, pad)), mask

    def _layout(self, n: int) -> np.ndarray:
        """All length-n windows over the items with n padding slots (-1) before each user's items.

        User u's k-th item sits at ``indptr[u] + k + n * (u + 1)``, so the n items before it (or
        padding) are the window starting at ``indptr[u] + k + n * u``; window 0 is all padding.
        Stored in the smallest int type that holds the item indices (int16 up to 32767 items):
        ``len(items) + n * (n_users + 1)`` values, built once per n. A history is then one
        contiguous copy per row (random reads of memory dominate batch assembly) with no mask.
        """
        if n not in self._windows:
            dest = np.repeat(np.arange(1, self.n_users + 1) * n, np.diff(self.indptr))
            dest += np.arange(len(self.items))  # in place: one temporary of len(items)
            size = len(self.items) + n * (self.n_users + 1)
            padded = np.full(size, -1, dtype=int_for(int(self.items.max(initial=0))))
            padded[dest] = self.items
            self._windows = {n: sliding_window_view(padded, n)}  # keep one layout at a time
        return self._windows[n]

    def __len__(self) -> int:
        return len(self.items)


def ragged_arange(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for each count c, concatenated: ``[2, 3] -> [0, 1, 0, 1, 2]``."""
    return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)


def int_for(max_value: int) -> type[np.signedinteger[Any]]:
    """The smallest signed int type that holds ``-1 .. max_value``."""
    for t in (np.int16, np.int32):
        if max_value <= np.iinfo(t).max:
            return t
    return np.int64
