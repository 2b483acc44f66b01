"""Two workers creating one study database at once (issue 24): the loser of the race opens the
tables the winner made instead of failing (seen: sqlite3 IntegrityError on alembic_version)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy

from hydrarec.errors import ConfigError
from hydrarec.tuning import storage


def _flaky(failures: list[Exception]) -> Any:
    real = optuna.storages.RDBStorage

    def make(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop(0)
        return real(*args, **kwargs)

    return make


def _integrity() -> Exception:
    orig = Exception("UNIQUE constraint failed: alembic_version.version_num")
    return sqlalchemy.exc.IntegrityError("INSERT INTO alembic_version", {}, orig)


def test_a_lost_race_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(optuna.storages, "RDBStorage", _flaky([_integrity()]))
    monkeypatch.setattr(storage.time, "sleep", lambda s: None)
    opened = storage.open_storage(storage.default_url(tmp_path))
    assert opened.get_all_studies() == []


def test_a_race_lost_every_time_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = [_integrity() for _ in range(storage.OPEN_ATTEMPTS)]
    monkeypatch.setattr(optuna.storages, "RDBStorage", _flaky(failures))
    monkeypatch.setattr(storage.time, "sleep", lambda s: None)
    with pytest.raises(ConfigError, match="cannot open the study storage"):
        storage.open_storage(storage.default_url(tmp_path))
