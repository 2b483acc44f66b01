"""Each kind of bad input gives a DataError whose message names the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from hydrarec.config import DataConfig
from hydrarec.data.movielens import load_movielens_100k, load_movielens_latest_small
from hydrarec.data.registry import load_dataset
from hydrarec.data.tabular import load_tabular
from hydrarec.errors import DataError

GOOD = "1\t1\t5\t100\n1\t2\t3\t101\n2\t1\t4\t102\n2\t3\t1\t103\n3\t2\t2\t104\n3\t3\t5\t105\n"


def assert_names(err: DataError, file: str, line: int | None, field: str) -> None:
    """The error and its message carry the file, the line and the field."""
    assert err.file is not None and Path(err.file).name == file
    assert (err.line, err.field) == (line, field)
    where = f"{file}:{line}" if line is not None else file
    assert where in str(err) and repr(field) in str(err)


def _u_data(write_ml100k, line: int, text: str) -> Path:
    """A generated ML-100K folder whose u.data line ``line`` (1-based) is ``text``."""
    lines = GOOD.splitlines()
    lines[line - 1] = text
    return write_ml100k(u_data="\n".join(lines) + "\n")


def _csv(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return name


def test_malformed_line_too_few_fields(write_ml100k) -> None:
    with pytest.raises(DataError, match="malformed line: 3 fields") as e:
        load_movielens_100k(_u_data(write_ml100k, 3, "2\t1\t4"))
    assert_names(e.value, "u.data", 3, "timestamp")
    assert e.value.expected is not None and "4 fields" in e.value.expected


def test_malformed_line_too_many_fields(write_ml100k) -> None:
    with pytest.raises(DataError, match="malformed line: 5 fields") as e:
        load_movielens_100k(_u_data(write_ml100k, 5, "3\t2\t2\t104\t9"))
    assert e.value.line == 5 and e.value.file is not None and e.value.file.endswith("u.data")


def test_non_numeric_rating(write_ml100k) -> None:
    with pytest.raises(DataError, match="'five' is not a number") as e:
        load_movielens_100k(_u_data(write_ml100k, 2, "1\t2\tfive\t101"))
    assert_names(e.value, "u.data", 2, "rating")


def test_line_numbers_count_blank_lines_and_the_header(tmp_path: Path) -> None:
    _csv(tmp_path, "r.csv", "user_id,item_id,rating\r\n1,1,4\r\n\r\n2,1,x\r\n")
    cfg = {"interactions": "r.csv", "labels": {"rating": "regression"}}
    with pytest.raises(DataError) as e:
        load_tabular(cfg, tmp_path)
    assert_names(e.value, "r.csv", 4, "rating")


def test_bad_unix_timestamp(write_ml100k) -> None:
    with pytest.raises(DataError, match="'yesterday' is not an integer") as e:
        load_movielens_100k(_u_data(write_ml100k, 4, "2\t3\t1\tyesterday"))
    assert_names(e.value, "u.data", 4, "timestamp")


def test_bad_iso_timestamp(tmp_path: Path) -> None:
    _csv(tmp_path, "r.csv", "u,i,when\n1,1,2021-02-01T10:00:00\n1,2,2021-02-30T10:00:00\n")
    cfg = {"interactions": "r.csv", "user_id": "u", "item_id": "i", "timestamp": "when"}
    with pytest.raises(DataError, match="bad timestamp '2021-02-30T10:00:00'") as e:
        load_tabular(cfg, tmp_path)
    assert_names(e.value, "r.csv", 3, "when")


def test_missing_required_column(tmp_path: Path) -> None:
    _csv(tmp_path, "r.csv", "user_id,item_id,timestamp\n1,1,5\n")
    cfg = {"interactions": "r.csv", "labels": {"click": "binary"}}
    with pytest.raises(DataError, match="missing required column 'click'") as e:
        load_tabular(cfg, tmp_path)
    assert_names(e.value, "r.csv", 1, "click")


def test_unknown_column_kind(tmp_path: Path) -> None:
    _csv(tmp_path, "r.csv", "user_id,item_id,click\n1,1,1\n")
    cfg = {"interactions": "r.csv", "labels": {"click": "probability"}}
    with pytest.raises(DataError, match="unknown column kind 'probability'") as e:
        load_tabular(cfg, tmp_path)
    assert e.value.field == "click" and "'click'" in str(e.value)
    assert e.value.expected == "one of regression, binary"


def test_duplicate_rows_with_policy_error(write_ml100k) -> None:
    path = write_ml100k(u_data=GOOD + "1\t1\t2\t100\n")  # line 7 repeats line 1
    with pytest.raises(
        DataError, match=r"duplicate row \(1, 1, 100\) \(first at .*u.data:1\)"
    ) as e:
        load_movielens_100k(path, duplicates="error")
    assert_names(e.value, "u.data", 7, "user_id, item_id, timestamp")


@pytest.mark.parametrize(("policy", "rating"), [("keep_last", 2.0), ("mean", 3.5)])
def test_duplicate_rows_keep_last_or_mean(write_ml100k, policy: str, rating: float) -> None:
    ds = load_movielens_100k(write_ml100k(u_data=GOOD + "1\t1\t2\t100\n"), duplicates=policy)
    inter = ds.interactions
    assert len(inter) == 6  # (5 + 2) / 2 = 3.5 for "mean"
    assert inter[(inter.user_id == 1) & (inter.item_id == 1)]["rating"].tolist() == [rating]


@pytest.mark.parametrize("cell", ["", "nan"])
def test_nan_label(tmp_path: Path, cell: str) -> None:
    _csv(tmp_path, "r.csv", f"user_id,item_id,rating\n1,1,4\n1,2,{cell}\n")
    cfg = {"interactions": "r.csv", "labels": {"rating": "regression"}}
    with pytest.raises(DataError, match="not a number") as e:
        load_tabular(cfg, tmp_path)
    assert_names(e.value, "r.csv", 3, "rating")


def test_binary_label_outside_0_1(tmp_path: Path) -> None:
    _csv(tmp_path, "r.csv", "user_id,item_id,click\n1,1,1\n1,2,0\n2,1,2\n")
    cfg = {"interactions": "r.csv", "labels": {"click": "binary"}}
    with pytest.raises(DataError, match="binary label is 2") as e:
        load_tabular(cfg, tmp_path)
    assert_names(e.value, "r.csv", 4, "click")
    assert e.value.expected == "0 or 1"


def test_non_utf8_text_where_utf8_was_declared(tmp_path: Path) -> None:
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "ratings.csv").write_bytes(
        b"userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n"
    )
    (folder / "movies.csv").write_bytes(
        b"movieId,title,genres\r\n1,Toy Story (1995),Comedy\r\n2,Caf\xe9 (1996),Drama\r\n"
    )
    with pytest.raises(DataError, match="byte 0xe9 is not valid utf-8") as e:
        load_movielens_latest_small(folder)
    assert_names(e.value, "movies.csv", 3, "title")


def test_empty_after_filtering(write_ml100k) -> None:
    cfg = DataConfig(dataset="movielens-100k", path=str(write_ml100k()), min_user_interactions=5)
    with pytest.raises(
        DataError, match="no interactions left after dropping users with fewer than 5 interactions"
    ):
        load_dataset(cfg)


def test_header_only_file(tmp_path: Path) -> None:
    _csv(tmp_path, "r.csv", "user_id,item_id\n")
    with pytest.raises(DataError, match="no rows after the header") as e:
        load_tabular({"interactions": "r.csv", "timestamp": ""}, tmp_path)
    assert_names(e.value, "r.csv", 2, "user_id")  # issue 21: was "dataset 'tabular' has no ..."


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found") as e:
        load_tabular({"interactions": "nowhere.csv"}, tmp_path)
    assert e.value.file is not None and e.value.file.endswith("nowhere.csv")


def test_duplicate_id_in_items_table(tmp_path: Path) -> None:
    _csv(tmp_path, "r.csv", "user_id,item_id\n1,1\n")
    _csv(tmp_path, "items.csv", "item_id,name\n1,a\n2,b\n1,c\n")
    cfg = {"interactions": "r.csv", "items": "items.csv", "item_features": {"name": "text"}}
    with pytest.raises(DataError, match="duplicate id") as e:
        load_tabular(cfg, tmp_path)
    assert_names(e.value, "items.csv", 4, "item_id")


def test_parquet_errors_name_the_row(tmp_path: Path) -> None:
    pd.DataFrame({"user_id": [1, 2], "item_id": [1, 1], "click": [1.0, 0.5]}).to_parquet(
        tmp_path / "r.parquet"
    )
    cfg = {"interactions": "r.parquet", "labels": {"click": "binary"}}
    with pytest.raises(DataError, match=r"row 2: binary label is 0\.5") as e:
        load_tabular(cfg, tmp_path)
    assert e.value.field == "click" and e.value.line is None
