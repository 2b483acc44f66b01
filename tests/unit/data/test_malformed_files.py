"""Property: every loader, on any malformed file, loads it or raises a DataError naming the file
(and a line inside it, when it names one) -- never another exception (issue 21).

Files are random bytes, or good files with a random cut, a random line replaced, or random
values put into random fields (values chosen to be hard: inf, 1e300, huge digits, quotes, NUL).
What loads must hold what the models need: finite float32 labels, int64 timestamps.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hydrarec.data.dataset import Dataset
from hydrarec.data.movielens import load_movielens_100k
from hydrarec.data.sequences import load_sequences
from hydrarec.data.tabular import load_tabular
from hydrarec.errors import DataError

HARD_VALUES = [
    "", " ", '"', '"x', 'a"b', "inf", "-inf", "nan", "NaN", "1e300", "-1e39", "3.4e38", "0x1F",
    "9" * 19, "9" * 400, "-0", " 5 ", "5.5", "1_000", "yesterday", "2021-02-30", "1001-01-01",
    "\x00", "\u00e9", "\ufeff", "\r", ";", ",", "\t", "|", "::",
]  # fmt: skip
CSV_GOOD = "user_id,item_id,rating,timestamp\n" + "".join(
    f"{u},{i},{(u * i) % 5 + 1},{964982703 + u * 10 + i}\n"
    for u in range(1, 5)
    for i in range(1, 4)
)
U_DATA_GOOD = "".join(
    f"{u}\t{i}\t{(u + i) % 5 + 1}\t{880000000 + u + i}\n" for u in (1, 2, 3) for i in (1, 2, 3)
)
SEQ_GOOD = "1 10 11 12\n2 11 13\n3 10 12 13 14\n"
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def malformed(draw: st.DrawFn, good: str, sep: str) -> bytes:
    """``good`` damaged one of four ways (or several, one after the other)."""
    text = good
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["bytes", "cut", "line", "values"]))
        lines = text.split("\n")
        if how == "bytes":
            return draw(st.binary(max_size=300))
        if how == "cut":
            text = text[: draw(st.integers(0, len(text)))]
        elif how == "line":
            at = draw(st.integers(0, len(lines) - 1))
            lines[at] = draw(st.text(max_size=40) | st.sampled_from(HARD_VALUES))
            text = "\n".join(lines)
        else:
            for _ in range(draw(st.integers(1, 4))):
                at = draw(st.integers(0, len(lines) - 1))
                fields = lines[at].split(sep)
                col = draw(st.integers(0, max(0, len(fields) - 1)))
                fields[col] = draw(st.sampled_from(HARD_VALUES) | st.text(max_size=12))
                lines[at] = sep.join(fields)
            text = "\n".join(lines)
    return text.encode("utf-8", errors="surrogatepass")


def _check(load: Callable[[], Dataset], file: Path, labels: list[str]) -> None:
    """``load()`` returns a dataset fit for the models, or raises a DataError naming ``file``."""
    try:
        ds = load()
    except DataError as e:
        assert e.file is not None and Path(e.file).name == file.name, str(e)
        lines = file.read_bytes().count(b"\n") + 1  # + 1: "no rows" names the line after
        assert e.line is None or 1 <= e.line <= lines + 1, str(e)
        assert len(str(e)) < 1000  # a huge value is cut, not pasted whole
        return
    inter = ds.interactions
    for name in labels:
        assert np.isfinite(inter[name].to_numpy(np.float32)).all()
    if "timestamp" in inter.columns:
        assert inter["timestamp"].dtype == np.int64


@given(data=malformed(CSV_GOOD, ","))
@SETTINGS
def test_tabular_csv(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "r.csv").write_bytes(data)
        cfg = {"interactions": "r.csv", "labels": {"rating": "regression"}}
        _check(lambda: load_tabular(cfg, d), Path(d) / "r.csv", ["rating"])


@given(
    cut=st.integers(0, 4000),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=3),
    values=st.lists(st.sampled_from(HARD_VALUES), min_size=12, max_size=12),
)
@SETTINGS
def test_tabular_parquet(cut: int, flips: list[tuple[int, int]], values: list[str]) -> None:
    """Random string values in typed columns, then a cut file or flipped bytes."""
    frame = pd.read_csv(io.StringIO(CSV_GOOD), dtype=str)
    frame["rating"] = values
    buffer = io.BytesIO()
    frame.to_parquet(buffer, row_group_size=4)
    raw = bytearray(buffer.getvalue())
    for at, byte in flips:
        raw[at % len(raw)] = byte
    raw = raw[:cut] if cut < len(raw) else raw
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "r.parquet").write_bytes(bytes(raw))
        cfg = {"interactions": "r.parquet", "labels": {"rating": "regression"}}
        _check(lambda: load_tabular(cfg, d), Path(d) / "r.parquet", ["rating"])


@given(data=malformed(U_DATA_GOOD, "\t"))
@SETTINGS
def test_movielens_100k_ratings(data: bytes, write_ml100k) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ml-100k"
        good = write_ml100k()
        path.mkdir()
        for f in good.iterdir():
            (path / f.name).write_bytes(f.read_bytes())
        (path / "u.data").write_bytes(data)
        _check(lambda: load_movielens_100k(path), path / "u.data", ["rating"])


@given(data=malformed(SEQ_GOOD, " "))
@SETTINGS
def test_sequences(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "s.txt").write_bytes(data)
        _check(lambda: load_sequences(Path(d) / "s.txt"), Path(d) / "s.txt", [])
