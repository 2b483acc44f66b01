"""Preprocessors that turn raw feature columns into indices and scaled numbers.

Each follows the estimator contract (scikit-learn ``base.py``): parameters in ``__init__``, learned
state set by ``fit`` in attributes ending in ``_``, ``transform`` before ``fit`` raises
``NotFittedError``. State round-trips through ``to_dict`` / ``from_dict`` as plain JSON (no pickle:
loading a run executes no code from it).

Reserved indices, shared by every vocabulary-like encoder (see ``EntitySpec``):
``0`` = padding, ``1`` = out of vocabulary (a value unseen in ``fit``, rarer than ``min_count``,
or missing: ``None`` / ``NaN``). Known values get ``2, 3, ...``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from hydrarec.errors import DataError, HydrarecError

PAD = 0  # index of padding
OOV = 1  # index of out-of-vocabulary and missing values
FIRST = 2  # index of the first known value


class NotFittedError(HydrarecError, RuntimeError):
    """``transform`` (or another method that needs learned state) was called before ``fit``."""


def _require_fitted(obj: object, attr: str) -> None:
    if not hasattr(obj, attr):
        name = type(obj).__name__
        raise NotFittedError(f"this {name} is not fitted yet: call {name}.fit(...) first")


def _jsonable(v: Any) -> Any:
    """A plain Python scalar for JSON (numpy scalars become int / float / str / bool)."""
    return v.item() if isinstance(v, np.generic) else v


def _check_type(d: dict[str, Any], expected: str) -> None:
    if d.get("type") != expected:
        raise DataError(
            f"cannot load a {expected} from a {d.get('type')!r} state",
            field="type",
            expected=repr(expected),
        )


class Vocabulary:
    """Maps values to indices: 0 = padding, 1 = out of vocabulary / missing, known values 2, 3, ...

    Values seen fewer than ``min_count`` times in ``fit`` are out of vocabulary. Known values are
    numbered in sorted order (insertion order if the values cannot be compared), so the mapping
    does not depend on row order.

    >>> v = Vocabulary().fit(["b", "a", "b", None])
    >>> v.transform(["a", "b", "z", None]).tolist(), v.size
    ([2, 3, 1, 1], 4)
    """

    def __init__(self, min_count: int = 1) -> None:
        self.min_count = min_count

    def fit(self, values: Iterable[Any] | np.ndarray | pd.Series) -> Vocabulary:
        counts = pd.Series(_as_array(values)).value_counts(dropna=True, sort=False)
        kept = counts.index[counts.to_numpy() >= self.min_count]
        with contextlib.suppress(TypeError):  # values that do not compare keep first-seen order
            kept = kept.sort_values()
        self.values_ = pd.Index(kept.tolist())
        return self

    def transform(self, values: Iterable[Any] | np.ndarray | pd.Series) -> np.ndarray:
        """(N,) int64 indices of ``values``."""
        _require_fitted(self, "values_")
        idx = self.values_.get_indexer(pd.Index(_as_array(values)))
        return np.where(idx >= 0, idx + FIRST, OOV).astype(np.int64)

    def extend(self, values: Iterable[Any] | np.ndarray | pd.Series) -> np.ndarray:
        """Append the values not known yet (sorted when they compare); known values keep their
        index, so tables indexed by this vocabulary grow at the end (``hydrarec update``).
        Returns the new values. ``min_count`` is not applied: every value given is added.

        >>> v = Vocabulary().fit(["b", "d"])
        >>> v.extend(["c", "b", "a", None]).tolist(), v.transform(["b", "d", "a", "c"]).tolist()
        (['a', 'c'], [2, 3, 4, 5])
        """
        _require_fitted(self, "values_")
        present = pd.Index(pd.unique(pd.Series(_as_array(values)).dropna()))
        fresh = present[self.values_.get_indexer(present) < 0]
        with contextlib.suppress(TypeError):  # values that do not compare keep first-seen order
            fresh = fresh.sort_values()
        self.values_ = pd.Index([*self.values_.tolist(), *fresh.tolist()])
        return fresh.to_numpy()

    @property
    def size(self) -> int:
        """Vocabulary size, counting the two reserved indices."""
        _require_fitted(self, "values_")
        return len(self.values_) + FIRST

    def to_dict(self) -> dict[str, Any]:
        _require_fitted(self, "values_")
        values = [_jsonable(v) for v in self.values_.tolist()]
        return {"type": "Vocabulary", "min_count": self.min_count, "values": values}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocabulary:
        _check_type(d, "Vocabulary")
        v = cls(min_count=int(d["min_count"]))
        v.values_ = pd.Index(list(d["values"]))
        return v


def _as_array(values: Iterable[Any] | np.ndarray | pd.Series) -> np.ndarray:
    if isinstance(values, pd.Series):
        return values.to_numpy()
    if isinstance(values, np.ndarray):
        return values
    # via a Series: a list of equal-length lists stays 1-D (one list per cell)
    return pd.Series(list(values), dtype=object).to_numpy()


def _as_float(values: Iterable[Any] | np.ndarray | pd.Series) -> np.ndarray:
    """(N,) float64, ``None`` / ``pd.NA`` as NaN; a non-number is a ``DataError``."""
    try:
        if isinstance(values, pd.Series):
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
        arr = values if isinstance(values, np.ndarray) else np.asarray(list(values), dtype=object)
        return np.asarray(pd.Series(arr).to_numpy(dtype=np.float64, na_value=np.nan))
    except (TypeError, ValueError) as e:
        raise DataError(f"a numeric feature holds a non-number ({e})", expected="numbers") from e


class NumericScaler:
    """Scales a numeric column; learns mean / std, and quantile edges when ``mode='bucketize'``.

    ``standardize(x)`` is ``(x - mean) / std`` as float32 with missing values at 0 (the mean);
    a constant column has ``std = 1``. ``transform(x)`` is that in ``mode='standardize'`` and, in
    ``mode='bucketize'``, the (N,) int64 quantile bucket of each value: ``2, 3, ...`` for the
    buckets in increasing order, ``1`` for a missing value (0 stays padding), so buckets embed like
    a categorical feature with ``size`` entries. Repeated quantiles merge, so there may be fewer
    than ``n_buckets`` buckets.

    >>> s = NumericScaler(mode="bucketize", n_buckets=2).fit([1.0, 2.0, 3.0, 4.0])
    >>> s.transform([1.0, 2.5, 4.0, None]).tolist(), s.size
    ([2, 3, 3, 1], 4)
    >>> s.standardize([2.5, None]).tolist()
    [0.0, 0.0]
    """

    MODES: ClassVar[tuple[str, ...]] = ("standardize", "bucketize")

    def __init__(
        self, mode: Literal["standardize", "bucketize"] = "standardize", n_buckets: int = 10
    ) -> None:
        self.mode = mode
        self.n_buckets = n_buckets

    def fit(self, values: Iterable[Any] | np.ndarray | pd.Series) -> NumericScaler:
        if self.mode not in self.MODES:
            raise DataError(f"unknown mode {self.mode!r}", field="mode", expected=str(self.MODES))
        x = _as_float(values)
        x = x[np.isfinite(x)]
        self.mean_ = float(x.mean()) if len(x) else 0.0
        std = float(x.std()) if len(x) else 0.0
        self.std_ = std if std > 0 else 1.0
        if self.mode == "bucketize":
            q = np.linspace(0.0, 1.0, self.n_buckets + 1)[1:-1]
            edges = np.unique(np.quantile(x, q)) if len(x) else np.empty(0)
            self.edges_ = [float(e) for e in edges]
        return self

    def standardize(self, values: Iterable[Any] | np.ndarray | pd.Series) -> np.ndarray:
        """(N,) float32 standardized values, missing -> 0."""
        _require_fitted(self, "mean_")
        z = (_as_float(values) - self.mean_) / self.std_
        return np.where(np.isfinite(z), z, 0.0).astype(np.float32)

    def transform(self, values: Iterable[Any] | np.ndarray | pd.Series) -> np.ndarray:
        """Standardized float32 (``mode='standardize'``) or int64 bucket indices (bucketize)."""
        if self.mode == "standardize":
            return self.standardize(values)
        _require_fitted(self, "edges_")
        x = _as_float(values)
        buckets = np.searchsorted(np.asarray(self.edges_), x, side="right") + FIRST
        return np.where(np.isnan(x), OOV, buckets).astype(np.int64)

    @property
    def size(self) -> int:
        """``mode='bucketize'``: number of bucket indices, counting 0 (padding) and 1 (missing)."""
        _require_fitted(self, "edges_")
        return len(self.edges_) + 1 + FIRST

    def to_dict(self) -> dict[str, Any]:
        _require_fitted(self, "mean_")
        d: dict[str, Any] = {
            "type": "NumericScaler",
            "mode": self.mode,
            "n_buckets": self.n_buckets,
        }
        d.update(mean=self.mean_, std=self.std_)
        if self.mode == "bucketize":
            d["edges"] = list(self.edges_)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NumericScaler:
        _check_type(d, "NumericScaler")
        s = cls(mode=d["mode"], n_buckets=int(d["n_buckets"]))
        s.mean_, s.std_ = float(d["mean"]), float(d["std"])
        if "edges" in d:
            s.edges_ = [float(e) for e in d["edges"]]
        return s


class MultiHotEncoder:
    """Encodes a column of token lists (e.g. genres) as (N, L) int64 token indices, 0-padded.

    A cell is a list / tuple / array of tokens, or ``None`` / ``NaN`` / an empty list (no tokens).
    A string cell is split on ``sep`` when given, else it is one token. Unseen tokens and tokens
    rarer than ``min_count`` map to 1. ``L`` is the longest row of the data being transformed,
    capped at ``max_tokens`` (longer rows keep their first ``max_tokens`` tokens), and at least 1.

    >>> m = MultiHotEncoder().fit([["a", "b"], ["b"], None])
    >>> m.transform([["b", "z", "a"], [], None]).tolist(), m.size
    ([[3, 1, 2], [0, 0, 0], [0, 0, 0]], 4)
    """

    def __init__(self, min_count: int = 1, max_tokens: int = 32, sep: str | None = None) -> None:
        self.min_count = min_count
        self.max_tokens = max_tokens
        self.sep = sep

    def fit(self, values: Iterable[Any] | np.ndarray | pd.Series) -> MultiHotEncoder:
        _, tokens = self._flatten(values)
        self.vocabulary_ = Vocabulary(self.min_count).fit(tokens)
        return self

    def transform(self, values: Iterable[Any] | np.ndarray | pd.Series) -> np.ndarray:
        """(N, L) int64 token indices, left-aligned, 0-padded."""
        _require_fitted(self, "vocabulary_")
        cells = _as_array(values)
        n = len(cells)
        rows, tokens = self._flatten(cells)
        counts = np.bincount(rows, minlength=n)
        width = max(1, min(self.max_tokens, int(counts.max()) if n else 0))
        starts = np.cumsum(counts) - counts
        pos = np.arange(len(rows)) - starts[rows]  # token's place in its row
        keep = pos < width
        out = np.zeros((n, width), dtype=np.int64)
        out[rows[keep], pos[keep]] = self.vocabulary_.transform(tokens[keep])
        return out

    def _flatten(self, values: Iterable[Any] | np.ndarray | pd.Series) -> tuple[np.ndarray, Any]:
        """(row of each token, tokens) with missing cells and empty lists dropped."""
        s = pd.Series(_as_array(values), dtype=object)
        if self.sep is not None:
            sep = self.sep
            s = s.map(lambda v: v.split(sep) if isinstance(v, str) else v)
        flat = s.explode()
        tokens = flat.to_numpy(dtype=object)
        present = pd.notna(tokens)
        return flat.index.to_numpy(dtype=np.int64)[present], tokens[present]

    @property
    def size(self) -> int:
        """Token vocabulary size, counting the two reserved indices."""
        _require_fitted(self, "vocabulary_")
        return self.vocabulary_.size

    def to_dict(self) -> dict[str, Any]:
        _require_fitted(self, "vocabulary_")
        return {
            "type": "MultiHotEncoder",
            "min_count": self.min_count,
            "max_tokens": self.max_tokens,
            "sep": self.sep,
            "vocabulary": self.vocabulary_.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MultiHotEncoder:
        _check_type(d, "MultiHotEncoder")
        m = cls(min_count=int(d["min_count"]), max_tokens=int(d["max_tokens"]), sep=d.get("sep"))
        m.vocabulary_ = Vocabulary.from_dict(d["vocabulary"])
        return m


Encoder = Vocabulary | NumericScaler | MultiHotEncoder

ENCODERS: dict[str, type[Vocabulary] | type[NumericScaler] | type[MultiHotEncoder]] = {
    "Vocabulary": Vocabulary,
    "NumericScaler": NumericScaler,
    "MultiHotEncoder": MultiHotEncoder,
}


def encoder_from_dict(d: dict[str, Any]) -> Encoder:
    """Rebuild any encoder from its ``to_dict()`` state (dispatch on ``d['type']``)."""
    kind = d.get("type")
    if kind not in ENCODERS:
        raise DataError(
            f"unknown encoder type {kind!r}", field="type", expected=str(list(ENCODERS))
        )
    return ENCODERS[str(kind)].from_dict(d)
