"""Issue 21, defects 5 and 7: data files that ended in tracebacks or named the wrong place.

Each case gives a DataError naming the file, the line (or the row group) and the column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hydrarec.data.movielens import load_movielens_1m, load_movielens_100k
from hydrarec.data.sequences import load_sequences
from hydrarec.data.tabular import load_tabular
from hydrarec.errors import DataError

RATED = {"interactions": "r.csv", "labels": {"rating": "regression"}}


def _error(tmp_path: Path, text: str | bytes, cfg: dict | None = None, name: str = "r.csv"):
    data = text.encode() if isinstance(text, str) else text
    (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError) as e:
        load_tabular(cfg or RATED, tmp_path)
    return e.value


def _at(err: DataError, file: str, line: int | None, field: str | None) -> None:
    assert err.file is not None and Path(err.file).name == file, str(err)
    assert (err.line, err.field) == (line, field), str(err)


def test_empty_file(tmp_path: Path) -> None:
    err = _error(tmp_path, "")  # was pandas' EmptyDataError
    _at(err, "r.csv", 1, None)
    assert "the file is empty" in str(err)


def test_unclosed_quote_names_where_it_opens(tmp_path: Path) -> None:
    err = _error(tmp_path, 'user_id,item_id,rating\n1,1,4\n2,"3,4\n3,3,5\n')  # was a ParserError
    _at(err, "r.csv", 3, "item_id")
    assert "never closed" in str(err)


def test_word_at_line_101_of_an_integer_timestamp_column(tmp_path: Path) -> None:
    """Was reported at line 2, as "bad timestamp '964982704'": every value was tried as a date."""
    rows = "".join(f"{i},{i},3,{964982703 + i}\n" for i in range(1, 100))
    err = _error(tmp_path, "user_id,item_id,rating,timestamp\n" + rows + "5,5,3,yesterday\n")
    _at(err, "r.csv", 101, "timestamp")
    assert "'yesterday'" in str(err) and "964982704" in str(err)  # the first row's form


def test_iso_timestamps_outside_nanosecond_range(tmp_path: Path) -> None:
    """Year 1001 made pandas' nanosecond arithmetic overflow (OutOfBoundsDatetime)."""
    (tmp_path / "r.csv").write_text("user_id,item_id,timestamp\n1,1,1001-01-01\n1,2,2021-01-01\n")
    ds = load_tabular({"interactions": "r.csv"}, tmp_path)
    assert ds.interactions["timestamp"].tolist() == [-30578688000, 1609459200]


def test_a_20_mb_id(tmp_path: Path) -> None:
    """A 20 MB id once led to a 96.6 GiB allocation; ids are at most 256 characters."""
    err = _error(tmp_path, "user_id,item_id,rating\n1,1,4\n" + "7" * 20_000_000 + ",2,3\n")
    _at(err, "r.csv", 3, "user_id")
    assert "20,000,000 characters" in str(err) and len(str(err)) < 400


@pytest.mark.parametrize("cell", ["inf", "-Infinity", "1e300", "3.5e38"])
def test_ratings_that_are_not_finite_float32(tmp_path: Path, cell: str) -> None:
    """Defect 5: they loaded, then gave Infinity in metrics.json or a FloatingPointError."""
    err = _error(tmp_path, f"user_id,item_id,rating\n1,1,4\n1,2,{cell}\n")
    _at(err, "r.csv", 3, "rating")
    assert "not a finite number" in str(err)


def test_numeric_feature_that_is_infinite(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("user_id,item_id\n1,1\n")
    cfg = {"interactions": "r.csv", "items": "i.csv", "item_features": {"price": "numeric"}}
    err = _error(tmp_path, "item_id,price\n1,2.5\n2,inf\n", cfg, "i.csv")
    _at(err, "i.csv", 3, "price")


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [("1\t2\tinf\t100", "rating", "'inf' is not a finite number"),
     ("1\t2\t1e300\t100", "rating", "'1e300' is out of range"),
     ("9" * 30 + "\t2\t3\t100", "user_id", "out of range"),
     ("1\t2\t3\t" + "9" * 25, "timestamp", "out of range")],
)  # fmt: skip
def test_movielens_numbers_out_of_range(write_ml100k, line: str, field: str, message: str) -> None:
    """inf ratings loaded; a 30-digit id or timestamp was a bare OverflowError."""
    path = write_ml100k(u_data=f"1\t1\t5\t100\n{line}\n")
    with pytest.raises(DataError, match=message) as e:
        load_movielens_100k(path)
    _at(e.value, "u.data", 2, field)


def test_movielens_a_20_mb_field(write_ml100k) -> None:
    """Python's csv module refused it ("field larger than field limit"), a bare csv.Error."""
    path = write_ml100k(u_data="1\t1\t5\t100\n" + "9" * 20_000_000 + "\t1\t5\t100\n")
    with pytest.raises(DataError) as e:
        load_movielens_100k(path)
    _at(e.value, "u.data", 2, "user_id")
    assert len(str(e.value)) < 400


def _parquet(tmp_path: Path, groups: int = 4) -> Path:
    frame = pd.DataFrame({"user_id": range(400), "item_id": range(400), "rating": 3.0})
    frame["comment"] = [f"row {i} " * 40 for i in range(400)]  # pages big enough to damage
    pq.write_table(
        pa.Table.from_pandas(frame), tmp_path / "r.parquet", row_group_size=400 // groups,
        compression="none", use_dictionary=False,
    )  # fmt: skip
    return tmp_path / "r.parquet"


@pytest.mark.parametrize("cut", ["empty", "half", "footer"])
def test_zero_byte_and_truncated_parquet(tmp_path: Path, cut: str) -> None:
    """Were pyarrow's ArrowInvalid with no file named."""
    raw = _parquet(tmp_path).read_bytes()
    kept = {"empty": b"", "half": raw[: len(raw) // 2], "footer": raw[:-9]}[cut]
    err = _error(tmp_path, kept, {**RATED, "interactions": "r.parquet"}, "r.parquet")
    _at(err, "r.parquet", None, None)
    assert "not a readable Parquet file" in str(err)


def test_parquet_with_a_damaged_row_group(tmp_path: Path) -> None:
    path = _parquet(tmp_path)
    meta = pq.ParquetFile(path).metadata
    column = meta.row_group(2).column(1)  # item_id of the third row group
    raw = bytearray(path.read_bytes())
    start = column.data_page_offset
    raw[start : start + column.total_compressed_size] = b"\xff" * column.total_compressed_size
    err = _error(tmp_path, bytes(raw), {**RATED, "interactions": "r.parquet"}, "r.parquet")
    _at(err, "r.parquet", None, "item_id")
    assert "row group 3 of 4" in str(err)


def test_parquet_without_rows(tmp_path: Path) -> None:
    empty = pd.DataFrame({"user_id": pd.Series([], dtype="int64"), "item_id": [], "rating": []})
    empty.to_parquet(tmp_path / "r.parquet")
    err = _error(tmp_path, (tmp_path / "r.parquet").read_bytes(),
                 {**RATED, "interactions": "r.parquet"}, "r.parquet")  # fmt: skip
    assert "no rows" in str(err) and err.field == "user_id"


def test_movielens_1m_implicit_pairs_truncated(tmp_path: Path) -> None:
    folder = tmp_path / "ml-1m"
    (folder / "implicit-pairs-parquet").mkdir(parents=True)
    (folder / "implicit-pairs-parquet" / "ratings.parquet").write_bytes(b"PAR1\x00\x01")
    with pytest.raises(DataError, match="not a readable Parquet file") as e:
        load_movielens_1m(folder)
    assert e.value.file is not None and e.value.file.endswith("ratings.parquet")


def test_sequences_binary_garbage_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "s.txt").write_bytes(b"1 2 3\n2 3 4\n3 \xff\xfe 5\n")
    with pytest.raises(DataError, match="not UTF-8") as e:
        load_sequences(tmp_path / "s.txt")
    assert e.value.line == 3


def test_sequences_line_numbers_count_only_newlines(tmp_path: Path) -> None:
    """A form feed or \\x1c splits lines for str.splitlines, not for an editor."""
    (tmp_path / "s.txt").write_bytes(b"1 2 3\x0c\n2 3\x1c4\n3 x\n")
    with pytest.raises(DataError, match="'x' is not an integer id") as e:
        load_sequences(tmp_path / "s.txt")
    assert e.value.line == 3


def test_sequences_a_20_mb_id(tmp_path: Path) -> None:
    (tmp_path / "s.txt").write_text("1 2 3\n2 " + "9" * 20_000_000 + "\n")
    with pytest.raises(DataError) as e:
        load_sequences(tmp_path / "s.txt")
    assert (e.value.line, e.value.field) == (2, "item") and len(str(e.value)) < 300
