"""Session fixtures of the integration tests: one tiny trained run, shared read-only."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.tiny import tiny_config

from hydrarec.io.progress import Progress
from hydrarec.recommend.recommender import Recommender
from hydrarec.run.train import train


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained run of the tiny synthetic config (tests must not modify it)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_config(), out, progress=Progress(enabled=False))
    return out


@pytest.fixture(scope="session")
def rec(tiny_run: Path) -> Recommender:
    """The tiny run, loaded (read-only: tests must not modify it)."""
    return Recommender.load(tiny_run)
