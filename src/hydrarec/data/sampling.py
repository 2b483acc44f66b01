"""Negative samplers that also return each draw's probability, for the logQ correction of sampled
softmax (Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item
Recommendations", RecSys 2019): the logit of a sampled item is reduced by ``log q(item)``.

Draws use Walker's alias method (Vose's construction): O(n_items) to build, O(1) per draw, fully
vectorised; ``alias_table`` / ``alias_draw`` are public because the synthetic generator uses them.

>>> s = PopularitySampler(np.array([1.0, 0.0, 3.0]), alpha=1.0)
>>> s.probs.tolist()
[0.25, 0.0, 0.75]
>>> items, log_p = s.sample(4, np.random.default_rng(0))
>>> bool(np.all(items != 1)), bool(np.allclose(log_p, np.log(s.probs[items])))
(True, True)
"""

from __future__ import annotations

import numpy as np

from hydrarec.errors import DataError


def alias_table(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker alias table of a distribution: ``(accept (n,) float64, alias (n,) int64)``.

    A draw picks a slot ``j`` uniformly and returns ``j`` with probability ``accept[j]``, else
    ``alias[j]``. Zero-probability items get ``accept = 0`` and are never returned.

    >>> accept, alias = alias_table(np.array([0.5, 0.25, 0.25]))
    >>> accept.tolist(), alias.tolist()
    ([1.0, 0.75, 0.75], [0, 0, 0])
    """
    p = np.asarray(probs, dtype=np.float64)
    n = len(p)
    scaled = (p * (n / p.sum())).tolist()  # mean 1; Python floats: the loop below is scalar
    accept = [1.0] * n
    alias = list(range(n))
    small = [i for i, q in enumerate(scaled) if q < 1.0]
    large = [i for i, q in enumerate(scaled) if q >= 1.0]
    while small and large:  # Vose: each step fills one small slot with mass of one large item
        s, g = small.pop(), large.pop()
        accept[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    # What is left has mass 1 up to rounding (a zero-probability item cannot be left over: the
    # leftovers' masses sum to their count), so each keeps its own slot.
    for s in small:
        accept[s] = 1.0
    return np.asarray(accept, dtype=np.float64), np.asarray(alias, dtype=np.int64)


def alias_draw(
    accept: np.ndarray, alias: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` draws (int64) from an alias table built by ``alias_table``."""
    slot = rng.integers(0, len(accept), size=n)
    keep = rng.random(n) < accept[slot]
    return np.where(keep, slot, alias[slot])


class NegativeSampler:
    """A fixed distribution over the catalogue ``0..n_items-1``, drawn with replacement."""

    def __init__(self, probs: np.ndarray) -> None:
        p = np.asarray(probs, dtype=np.float64)
        self._probs = p / p.sum()
        self._probs.setflags(write=False)
        with np.errstate(divide="ignore"):
            self._log_probs = np.log(self._probs).astype(np.float32)
        self._accept, self._alias = alias_table(self._probs)

    @property
    def n_items(self) -> int:
        return len(self._probs)

    @property
    def probs(self) -> np.ndarray:
        """Probability of each item per draw, float64 (n_items,), read-only, sums to 1."""
        return self._probs

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` items (int64 (n,)) and the log probability of each (float32 (n,))."""
        items = alias_draw(self._accept, self._alias, n, rng)
        return items, self._log_probs[items]

    def log_prob(self, items: np.ndarray) -> np.ndarray:
        """Log probability (float32) that one draw is each of ``items``; -inf for never-drawn."""
        idx = np.asarray(items, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_items):
            raise DataError(
                f"item index out of range in log_prob (catalogue has {self.n_items} items)",
                expected=f"indices in 0..{self.n_items - 1}",
            )
        return self._log_probs[idx]


class UniformSampler(NegativeSampler):
    """Every catalogue item with probability ``1 / n_items`` (cold items included).

    >>> s = UniformSampler(4)
    >>> np.exp(s.log_prob(np.array([0, 3]))).tolist()
    [0.25, 0.25]
    """

    def __init__(self, n_items: int) -> None:
        if n_items < 1:
            raise DataError(f"UniformSampler needs n_items >= 1, got {n_items}", field="n_items")
        super().__init__(np.full(n_items, 1.0 / n_items))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        items = rng.integers(0, self.n_items, size=n)
        return items, self._log_probs[items]


class PopularitySampler(NegativeSampler):
    """``p_i ∝ count_i ** alpha`` (word2vec's unigram^0.75 by default).

    Items with count 0 get probability 0 (never drawn, ``log_prob = -inf``), also when
    ``alpha = 0``, which is then uniform over the items seen in training. This is deliberate:
    counts come from the training split, and an item absent from it (e.g. a held-out cold item)
    must not be pushed down as a negative. In-batch positives always have count >= 1, so logQ
    never reads the -inf.
    """

    def __init__(self, counts: np.ndarray, alpha: float = 0.75) -> None:
        c = np.asarray(counts, dtype=np.float64)
        if c.ndim != 1 or not np.all(np.isfinite(c)) or (c < 0).any():
            raise DataError("counts must be a 1-d array of finite values >= 0", field="counts")
        if alpha < 0:
            raise DataError(f"alpha must be >= 0, got {alpha}", field="alpha")
        if not (c > 0).any():
            raise DataError(
                "every item count is 0: nothing to sample",
                field="counts",
                expected="at least one positive count",
            )
        weights = np.zeros_like(c)
        seen = c > 0
        weights[seen] = c[seen] ** alpha
        super().__init__(weights)
        self.alpha = alpha
