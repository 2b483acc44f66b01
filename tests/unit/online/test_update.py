"""The parts of ``hydrarec update`` (issue 25) on hand-made inputs: vocabularies that only grow at
the end, id tables grown with the OOV row, replay units, and the checks of new interactions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hydrarec.errors import DataError, RunError, Where
from hydrarec.features.batch import EntityFeatures
from hydrarec.features.batching import BatchBuilder
from hydrarec.features.encoders import Vocabulary
from hydrarec.features.histories import UserHistories
from hydrarec.online.new_interactions import check_interactions
from hydrarec.online.update import grow_state
from hydrarec.run.replay import new_units

INT_IDS = np.array([1, 2, 3])


def test_extend_keeps_every_known_index() -> None:
    v = Vocabulary().fit([30, 10, 20])  # 10 -> 2, 20 -> 3, 30 -> 4
    added = v.extend([25, 10, 5, 25, None])
    assert added.tolist() == [5, 25]  # sorted, each once, the known 10 and the None left out
    # known values keep 2, 3, 4 (a refit would have moved 20 and 30 behind 5); new ones follow
    assert v.transform([10, 20, 30, 5, 25, 99]).tolist() == [2, 3, 4, 5, 6, 1]
    assert v.size == 7


def test_grow_state_keeps_rows_and_copies_the_oov_row() -> None:
    old = {"ids": torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, 4.0]]), "head": torch.ones(3, 2)}
    new = {"ids": torch.zeros(5, 2), "head": torch.zeros(3, 2)}
    grown = grow_state(old, new, {3}, Path("RUN"))
    # rows 0..2 as trained; rows 3, 4 = row 1 (OOV); "head" (3, 2) is not an id table: copied
    assert grown["ids"].tolist() == [[0, 0], [1, 2], [3, 4], [1, 2], [1, 2]]
    assert torch.equal(grown["head"], old["head"])
    with pytest.raises(RunError, match="'head' \\(3, 2\\) does not grow into \\(3, 3\\)"):
        grow_state(old, {"ids": torch.zeros(5, 2), "head": torch.zeros(3, 3)}, {3}, Path("R"))


def _builder(examples: str) -> BatchBuilder:
    # user 0: rows 0, 1, 2, 3 (rows 2, 3 new); user 1: rows 4, 5 (old)
    users, items = np.array([0, 0, 0, 0, 1, 1]), np.arange(6)
    table = EntityFeatures(ids=torch.arange(6))
    return BatchBuilder(
        users,
        items,
        {},
        table,
        table,
        histories=UserHistories(users, items),
        history_len=4,
        examples=examples,
        window_stride=2,
    )  # type: ignore[arg-type]


def test_new_units_of_rows_and_of_windows() -> None:
    is_new = np.array([False, False, True, True, False, False])
    rows = _builder("rows")
    assert new_units(rows, rows.units(np.arange(6)), is_new).tolist() == is_new.tolist()
    windows = _builder("windows")
    ends = windows.units(np.arange(6))  # places 3, 1 (user 0), 5 (user 1): stride 2 from the end
    assert ends.tolist() == [3, 1, 5]
    # window ending at place 3 trains rows 2, 3 (new); place 1 rows 0, 1; place 5 rows 4, 5
    assert new_units(windows, ends, is_new).tolist() == [True, False, False]
    one_new = np.array([False, False, True, False, False, False])  # row 2: the window's first
    assert new_units(windows, ends, one_new).tolist() == [True, False, False]


def check(frame: pd.DataFrame, first_line: int | None = 2) -> pd.DataFrame:
    return check_interactions(frame, Where("new.csv", first_line), ["rating"], INT_IDS, INT_IDS)


def test_ids_are_typed_like_the_runs() -> None:
    out = check(pd.DataFrame({"user_id": ["1", "7"], "item_id": [2.0, 3.0], "rating": [4, None]}))
    assert out["user_id"].tolist() == [1, 7] and out["item_id"].tolist() == [2, 3]
    assert out["rating"].isna().tolist() == [False, True]  # a missing rating is a missing label


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"user_id": [1]}), "new.csv:1: field 'item_id': missing column 'item_id'"),
        (
            pd.DataFrame({"user_id": [1], "item_id": [2], "ratin": [4]}),
            "new.csv:1: field 'ratin': unknown column 'ratin'",
        ),
        (pd.DataFrame({"user_id": [], "item_id": []}), "no interactions"),
        (
            pd.DataFrame({"user_id": ["1", None], "item_id": ["2", "3"]}),
            "new.csv:3: field 'user_id': missing user id",
        ),
        (
            pd.DataFrame({"user_id": [1.0, np.nan], "item_id": [2, 3]}),
            "new.csv:3: field 'user_id': missing user id",
        ),
        (
            pd.DataFrame({"user_id": ["1", "042"], "item_id": ["2", "3"]}),
            "new.csv:3: field 'user_id': user id '042' is not an integer",
        ),
        (
            pd.DataFrame({"user_id": [1, 2], "item_id": [2, 3], "timestamp": [5, None]}),
            "new.csv:3: field 'timestamp': missing",
        ),
        (
            pd.DataFrame({"user_id": [1, 2], "item_id": [2, 3], "rating": ["4", "five"]}),
            "new.csv:3: field 'rating': 'five' is not a finite number",
        ),
    ],
)
def test_bad_rows_name_file_line_and_column(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("(", "\\(")):
        check(frame)


def test_rows_of_a_log_are_counted() -> None:
    with pytest.raises(DataError, match="field 'item_id': row 1: missing item id"):
        check(pd.DataFrame({"user_id": ["1", "2"], "item_id": ["2", None]}), first_line=None)
