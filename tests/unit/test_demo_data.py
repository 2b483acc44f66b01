"""Where ``hydrarec demo`` finds MovieLens (issue 22): $HYDRAREC_DATA_DIR, the cache, a download,
then the Makefile's folder; and its figures printed beside the peers'."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rich.console import Console

from hydrarec.report.demo import DEMO_EPOCHS, PEERS, _compare, demo_config

SHARED = Path(os.environ.get("HYDRAREC_DATA_DIR", "../shared/data")).resolve()


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No data in the environment or the cache, and downloads refused at once."""
    monkeypatch.setenv("HYDRAREC_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HYDRAREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HYDRAREC_FETCH_BASE_URL", "http://127.0.0.1:9")
    return tmp_path


def test_the_makefile_folder_is_the_last_resort(offline: Path) -> None:
    demo = demo_config(quiet=True, fallback=SHARED)
    assert demo.fallback_reason is None and demo.config.data.dataset == "movielens-100k"
    assert demo.config.data.path == str(SHARED / "ml-100k")
    assert demo.config.train.epochs == DEMO_EPOCHS
    assert demo.config.train.examples == "windows"  # the fast next-item schedule


def test_the_environment_comes_first(offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYDRAREC_DATA_DIR", str(SHARED))
    demo = demo_config(quiet=True, fallback=offline / "nowhere")
    assert demo.config.data.path is None and str(SHARED) in demo.source


def test_nothing_anywhere_says_where_it_looked(offline: Path) -> None:
    demo = demo_config(quiet=True, fallback=offline / "nowhere")
    assert demo.config.data.dataset == "synthetic"
    assert f"{offline / 'nowhere'} does not hold it either" in str(demo.fallback_reason)


def test_the_comparison_lists_every_peer_and_the_demo() -> None:
    console = Console(record=True, width=200)
    _compare(console, {"retrieval/hr@10": 0.1711, "retrieval/ndcg@10": 0.0876}, 6)
    text = console.export_text()
    assert all(name in text for name, _, _ in PEERS)
    assert "this demo (6 epochs, 1 seed)" in text and "0.1711" in text and "0.0876" in text
    assert "the full configs do better" in text
