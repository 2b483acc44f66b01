"""Vocabulary, NumericScaler and MultiHotEncoder on hand-worked examples."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from hydrarec.errors import DataError, HydrarecError
from hydrarec.features.encoders import (
    MultiHotEncoder,
    NotFittedError,
    NumericScaler,
    Vocabulary,
    encoder_from_dict,
)


def test_vocabulary_sorted_values_from_two_and_oov_missing_to_one() -> None:
    # sorted known values: a -> 2, b -> 3, c -> 4; unseen, None and NaN -> 1
    v = Vocabulary().fit(["b", "a", "b", "c"])
    assert v.transform(["c", "a", "zz", None, np.nan, "b"]).tolist() == [4, 2, 1, 1, 1, 3]
    assert v.size == 5  # 3 values + padding + OOV
    assert v.transform(["a"]).dtype == np.int64


def test_vocabulary_min_count_makes_rare_values_oov() -> None:
    # counts: b 2, c 2, a 1 -> with min_count 2: b -> 2, c -> 3, a -> OOV
    v = Vocabulary(min_count=2).fit(["b", "a", "b", "c", "c"])
    assert v.transform(["a", "b", "c"]).tolist() == [1, 2, 3]
    assert v.size == 4


def test_vocabulary_of_ints_matches_floats_from_a_nan_column() -> None:
    v = Vocabulary().fit(pd.Series([30, 10, 20, 10]))
    assert v.transform([10, 20, 30, 40]).tolist() == [2, 3, 4, 1]
    # a pandas int column with a missing value becomes float: 20.0 is still 20
    assert v.transform(pd.Series([20, None], dtype="float64")).tolist() == [3, 1]


def test_vocabulary_does_not_depend_on_row_order() -> None:
    values = ["x", "y", "z", "y", "q"]
    assert Vocabulary().fit(values).to_dict() == Vocabulary().fit(values[::-1]).to_dict()


def test_standardize_hand_worked() -> None:
    # [1, 2, 3, 4]: mean 2.5, population std sqrt(1.25)
    s = NumericScaler().fit([1.0, 2.0, 3.0, 4.0])
    std = math.sqrt(1.25)
    out = s.transform([2.5, 4.0, np.nan, None])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 1.5 / std, 0.0, 0.0], rtol=1e-6)


def test_standardize_constant_column_has_unit_std() -> None:
    s = NumericScaler().fit([5.0, 5.0, np.nan])
    assert s.transform([6.0]).tolist() == [1.0]


def test_numeric_scaler_rejects_text() -> None:
    with pytest.raises(DataError, match="non-number"):
        NumericScaler().fit(["1", "x"])


def test_bucketize_hand_worked() -> None:
    # 1..8, 4 buckets: linear quantiles at 0.25, 0.5, 0.75 sit at positions 1.75, 3.5, 5.25
    # -> edges 2.75, 4.5, 6.25; a value equal to an edge goes to the upper bucket
    s = NumericScaler(mode="bucketize", n_buckets=4).fit(np.arange(1, 9, dtype=float))
    assert s.edges_ == [2.75, 4.5, 6.25]
    out = s.transform([1.0, 2.75, 3.0, 4.5, 8.0, np.nan, 100.0])
    assert out.dtype == np.int64
    assert out.tolist() == [2, 3, 3, 4, 5, 1, 5]
    assert s.size == 6  # padding, missing, 4 buckets
    # the standardized value stays available in bucketize mode (mean 4.5)
    assert s.standardize([4.5]).tolist() == [0.0]


def test_bucketize_merges_repeated_quantiles() -> None:
    # quantiles of [0, 0, 0, 0, 1] at 0.25, 0.5, 0.75 are all 0 -> one edge, two buckets
    s = NumericScaler(mode="bucketize", n_buckets=4).fit([0, 0, 0, 0, 1])
    assert s.edges_ == [0.0]
    assert s.transform([-1.0, 0.0, 1.0]).tolist() == [2, 3, 3]
    assert s.size == 4


def test_multi_hot_hand_worked() -> None:
    # tokens: a -> 2, b -> 3; rows padded with 0 to the longest row (3); unseen z -> 1
    m = MultiHotEncoder().fit([["a", "b"], ["b"], None, []])
    out = m.transform([["b", "z", "a"], [], None, ("a",), np.nan])
    assert out.dtype == np.int64
    assert out.tolist() == [[3, 1, 2], [0, 0, 0], [0, 0, 0], [2, 0, 0], [0, 0, 0]]
    assert m.size == 4


def test_multi_hot_caps_width_and_keeps_first_tokens() -> None:
    m = MultiHotEncoder(max_tokens=2).fit([["a", "b", "c"]])
    assert m.transform([["c", "b", "a"], ["a"]]).tolist() == [[4, 3], [2, 0]]


def test_multi_hot_rows_of_equal_length_and_empty_input() -> None:
    m = MultiHotEncoder().fit([["a", "b"], ["c", "d"]])
    assert m.transform([["a", "b"], ["c", "d"]]).tolist() == [[2, 3], [4, 5]]
    assert m.transform([None, []]).tolist() == [[0], [0]]  # at least one column
    assert m.transform([]).shape == (0, 1)


def test_multi_hot_splits_strings_on_sep_and_min_count() -> None:
    m = MultiHotEncoder(min_count=2, sep="|").fit(["a|b", "b", "b|c|a"])
    # counts a 2, b 3, c 1 -> a 2, b 3, c OOV
    assert m.transform(["c|a|b", None]).tolist() == [[1, 2, 3], [0, 0, 0]]
    # without sep a string is one token
    assert MultiHotEncoder().fit(["a|b"]).transform(["a|b", "a"]).tolist() == [[2], [1]]


def _fitted() -> list[tuple[object, list[object]]]:
    return [
        (Vocabulary(min_count=2).fit(["b", "a", "b", "c", "c"]), ["a", "b", "c", "z", None]),
        (Vocabulary().fit(pd.Series([3, 1, np.nan, 2])), [1, 2.0, 3, 4, np.nan]),
        (NumericScaler().fit([1.0, 2.0, 7.5]), [0.0, 2.0, np.nan, 9.0]),
        (NumericScaler("bucketize", 3).fit(np.arange(20.0)), [-1.0, 5.0, 12.0, np.nan, 30.0]),
        (MultiHotEncoder(max_tokens=3).fit([["x", "y"], ["y"]]), [["y", "q", "x", "x"], None]),
    ]


@pytest.mark.parametrize(("encoder", "data"), _fitted())
def test_to_dict_from_dict_round_trip_gives_identical_transform(encoder, data) -> None:
    state = json.loads(json.dumps(encoder.to_dict(), allow_nan=False))  # plain JSON
    for restored in (type(encoder).from_dict(state), encoder_from_dict(state)):
        assert type(restored) is type(encoder)
        np.testing.assert_array_equal(restored.transform(data), encoder.transform(data))
        assert restored.to_dict() == encoder.to_dict()


@pytest.mark.parametrize(
    "encoder", [Vocabulary(), NumericScaler(), NumericScaler("bucketize"), MultiHotEncoder()]
)
def test_transform_before_fit_is_a_clear_error(encoder) -> None:
    with pytest.raises(NotFittedError, match=f"{type(encoder).__name__} is not fitted"):
        encoder.transform([1.0])
    with pytest.raises(NotFittedError):
        encoder.to_dict()
    assert issubclass(NotFittedError, HydrarecError)


def test_from_dict_rejects_another_encoders_state() -> None:
    state = Vocabulary().fit(["a"]).to_dict()
    with pytest.raises(DataError, match="NumericScaler"):
        NumericScaler.from_dict(state)
    with pytest.raises(DataError, match="unknown encoder type"):
        encoder_from_dict({"type": "Pickle"})
