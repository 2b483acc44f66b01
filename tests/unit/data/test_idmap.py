"""``IdMap`` looks a few ids up one by one and many through pandas: both give the same indices."""

from __future__ import annotations

import numpy as np
import pytest

from hydrarec.data.dataset import FEW, IdMap
from hydrarec.errors import UnknownIdError


@pytest.mark.parametrize(
    ("ids", "unknown", "other_type"), [([10, 42, 7, 3], 999, "42"), (["b", "a", "c"], "zz", 42)]
)
def test_few_and_many_ids_map_alike(ids: list, unknown: object, other_type: object) -> None:
    m = IdMap(ids, "user")
    probe = [ids[2], ids[0], unknown]
    few = m.index(probe, missing="minus_one")
    many = m.index(probe * FEW, missing="minus_one")[: len(probe)]  # over FEW: the pandas path
    assert len(probe) <= FEW < len(probe) * FEW
    assert few.tolist() == many.tolist() == [2, 0, -1]
    assert few.dtype == many.dtype == np.int64
    assert m.index(np.asarray(ids[:2])).tolist() == [0, 1]  # arrays too
    # an id of a type the map does not hold is unknown, not an error of another kind
    assert m.index([ids[1], other_type], missing="minus_one").tolist() == [1, -1]


def test_an_unknown_id_among_few_is_named() -> None:
    m = IdMap([1, 2, 3], "item")
    with pytest.raises(UnknownIdError, match="55555") as err:
        m.index([2, 55555])
    assert err.value.ids == [55555]
    assert m.index([]).tolist() == []
