"""Where a study lives: an SQLite file in the output folder by default, any SQLAlchemy URL
Optuna accepts otherwise (``postgresql://...`` for workers on several machines, issue 24).

Several processes share one study through the database. SQLite takes one writer at a time, so
its connections wait up to ``SQLITE_WAIT`` seconds for the lock instead of failing at once.
Every trial beats a heartbeat; a trial whose worker was killed stops beating and is marked
FAIL by the next worker that starts a trial (Optuna's ``fail_stale_trials``), then enqueued
once more with the same values (``RetryHeartbeatStaleTrialCallback``): the study stays consistent
and the killed trial's values get their chance again.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Literal

import optuna
import sqlalchemy
from sqlalchemy.engine import make_url

from hydrarec.errors import ConfigError

SQLITE_WAIT = 30  # seconds a connection waits for another process's write lock
OPEN_ATTEMPTS = 5  # two workers creating the tables at once: the loser tries again
STUDY_FILE = "study.db"


def default_url(out: Path) -> str:
    return f"sqlite:///{(out / STUDY_FILE).resolve()}"


def shown_url(url: str) -> str:
    """``url`` with its password hidden, for messages and files."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def open_storage(
    url: str, *, heartbeat_interval: int = 60, grace_period: int | None = None
) -> optuna.storages.RDBStorage:
    """Connect to (and create the tables of) the study database; ``ConfigError`` with the
    reason when the URL is malformed, its driver is missing or the server cannot be reached."""
    engine_kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": SQLITE_WAIT}}
        if url.startswith("sqlite")
        else {"pool_pre_ping": True}
    )
    for attempt in range(OPEN_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna since 2.8
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=1
                    ),
                )
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as e:
            # the other worker created a table, or stamped the schema version, first
            racing = isinstance(e, sqlalchemy.exc.IntegrityError) or any(
                m in str(e) for m in ("locked", "already exists")
            )
            if not racing or attempt == OPEN_ATTEMPTS - 1:
                raise _unreachable(url, e) from None
            time.sleep(0.5 * (attempt + 1))
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as e:
            raise _unreachable(url, e) from None
    raise AssertionError("unreachable: the loop returns or raises")


def _unreachable(url: str, error: Exception) -> ConfigError:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    hint = ""
    if isinstance(error, ImportError):
        hint = " (install the database driver, e.g. pip install psycopg2-binary for postgresql)"
    return ConfigError(f"cannot open the study storage {shown_url(url)}: {reason}{hint}")


def open_study(
    storage: optuna.storages.RDBStorage,
    name: str,
    direction: Literal["minimize", "maximize"],
    stamp: dict[str, Any],
) -> optuna.Study:
    """Create the study, or load it when it exists (a resume, or another worker's).

    ``stamp`` (objective metric, search space) is stored with a new study; a study that was
    started with another one is a ``ConfigError``: its trials would not be comparable."""
    study = optuna.create_study(
        storage=storage, study_name=name, direction=direction, load_if_exists=True
    )
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"study {name!r} {study.direction.name.lower()}s its objective, this run would "
            f"{direction} it: choose another --study"
        )
    for key, value in stamp.items():
        known = study.user_attrs.get(key)
        if known is None:
            study.set_user_attr(key, value)
        elif known != value:
            raise ConfigError(
                f"study {name!r} was started with {key} = {known!r}, not {value!r}: "
                "give another --study (or --out) for a different search"
            )
    return study
