"""Long data work shows progress (issue 22: minutes of silence while a large CSV loaded): the
megabytes parsed, rows or lines read and features fitted reach their totals in increasing steps;
a bar appears only when the work lasts; quiet (``-q``, CI, a pipe) draws nothing."""

from __future__ import annotations

import io
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console
from tests.progress_recording import Recording

from hydrarec.config import FeaturesConfig
from hydrarec.data import reading
from hydrarec.data.parquet import BATCH_ROWS
from hydrarec.data.sequences import LINES_A_STEP, load_sequences
from hydrarec.data.tabular import load_tabular
from hydrarec.features.pipeline import FeaturePipeline
from hydrarec.io.log import log_to
from hydrarec.io.progress import Progress, enclosing_progress

ROWS = 150_000  # about 3.3 MB of CSV: several megabytes, several Parquet batches


def interactions(rows: int = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "user_id": rng.integers(0, 5_000, rows),
        "item_id": rng.integers(0, 800, rows),
        "timestamp": 1_600_000_000 + np.arange(rows),
        "rating": rng.integers(1, 6, rows).astype(float),
    })  # fmt: skip


def assert_reaches(bar: tuple[int | None, list[int]], total: int) -> None:
    declared, counts = bar
    assert declared == total
    assert len(counts) > 1 and counts[-1] == total
    assert all(a < b for a, b in itertools.pairwise(counts)), counts


def test_a_csv_read_counts_its_megabytes_up_to_the_size(tmp_path: Path) -> None:
    interactions().to_csv(tmp_path / "big.csv", index=False)
    size = (tmp_path / "big.csv").stat().st_size
    rec = Recording()
    ds = load_tabular({"interactions": "big.csv", "labels": {"rating": "regression"}}, tmp_path,
                      progress=rec)  # fmt: skip
    assert len(ds.interactions) == ROWS
    assert_reaches(rec.bars["reading big.csv"], reading.megabytes(size))  # 4 MB begun
    assert reading.megabytes(size) == 4
    assert rec.bars["loading tabular data"] == (3, [1, 2, 3])  # the file, entities, checks


def test_a_parquet_read_counts_its_rows(tmp_path: Path) -> None:
    interactions().to_parquet(tmp_path / "big.parquet", index=False)
    rec = Recording()
    load_tabular({"interactions": "big.parquet"}, tmp_path, progress=rec)
    assert_reaches(rec.bars["reading big.parquet"], ROWS)
    assert len(rec.bars["reading big.parquet"][1]) == -(-ROWS // BATCH_ROWS)  # 3 batches


def test_a_sequence_file_counts_its_lines(tmp_path: Path) -> None:
    users = LINES_A_STEP * 2 + 5
    lines = "\n".join(f"{u} {u % 97} {u % 89}" for u in range(users)) + "\n"
    (tmp_path / "seq.txt").write_text(lines)
    rec = Recording()
    ds = load_sequences(tmp_path / "seq.txt", progress=rec)
    assert len(ds.interactions) == users * 2
    # users + 1 lines: the text after the last newline is one (empty) line
    assert rec.bars["reading seq.txt"] == (users + 1, [LINES_A_STEP, 2 * LINES_A_STEP, users + 1])


def test_feature_fitting_counts_its_encoders(tmp_path: Path) -> None:
    inter = interactions(2_000)
    items = pd.DataFrame({"item_id": np.arange(800), "genre": np.arange(800) % 7,
                          "price": np.arange(800) / 10})  # fmt: skip
    inter.to_csv(tmp_path / "i.csv", index=False)
    items.to_csv(tmp_path / "items.csv", index=False)
    cfg = {"interactions": "i.csv", "items": "items.csv",
           "item_features": {"genre": "categorical", "price": "numeric"}}  # fmt: skip
    ds = load_tabular(cfg, tmp_path)
    rec = Recording()
    FeaturePipeline(FeaturesConfig()).fit(ds, np.arange(1_000), progress=rec)
    # the user ids, then the item ids, genre, price: 4 encoders
    assert rec.bars["fitting features"] == (4, [1, 2, 3, 4])


def test_bars_inside_a_quiet_one_stay_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reading, "SHOW_AFTER_S", 0.0)  # even a short read would be drawn
    interactions(5_000).to_csv(tmp_path / "i.csv", index=False)
    quiet = Progress(enabled=False)  # what `hydrarec train -q` passes
    with quiet.task("loading data", total=1):
        assert enclosing_progress() is quiet
        load_tabular({"interactions": "i.csv"}, tmp_path)
    load_tabular({"interactions": "i.csv"}, tmp_path)  # outside every bar: a library call
    assert capsys.readouterr() == ("", "")
    terminal = io.StringIO()
    shown = Progress(enabled=True, console=Console(file=terminal, force_terminal=True))
    with shown.task("loading data", total=1):
        load_tabular({"interactions": "i.csv"}, tmp_path)
    assert "reading i.csv" in terminal.getvalue()  # the same read, not quiet: drawn


def test_a_delayed_bar_shows_only_work_that_lasts(tmp_path: Path) -> None:
    terminal = io.StringIO()
    progress = Progress(enabled=True, console=Console(file=terminal, force_terminal=True))
    with log_to(tmp_path / "log.txt"):
        with progress.task("short work", total=2, delay=5.0) as bar:
            bar.advance(n=2)
        with progress.task("long work", total=2, delay=0.05) as bar:
            time.sleep(0.3)
            bar.advance(n=2)
    assert "short work" not in terminal.getvalue() and "long work" in terminal.getvalue()
    log = (tmp_path / "log.txt").read_text()
    assert "short work" not in log and "long work: 2/2 in " in log
