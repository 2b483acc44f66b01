"""``tune``: a hyper-parameter search over a config, on Optuna (issue 24).

config + search space -> checked (before any trial) -> study (created, or resumed) -> trials,
each a ``train`` into DIR/trials/NNNN scored on valid, pruned per epoch -> best.toml,
trials.csv, report.html. The same call again continues the same study; the same call on other
machines with ``storage`` (a shared database) and ``study`` joins it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import tomllib

from hydrarec.config import Config, config_from_dict, dump_config, load_config
from hydrarec.errors import ConfigError
from hydrarec.io.atomic import read_json, write_json
from hydrarec.io.progress import Progress
from hydrarec.run.train import monitor_of
from hydrarec.tuning.objective import Plan, trial_dir
from hydrarec.tuning.outputs import (
    KEEP,
    best_trial,
    summary,
    sweep_trial_dirs,
    write_best_config,
    write_trials_csv,
)
from hydrarec.tuning.report import write_study_report
from hydrarec.tuning.space import Space, check_space, load_space
from hydrarec.tuning.storage import STUDY_FILE, default_url, open_storage, open_study, shown_url
from hydrarec.tuning.workers import Worker, run_workers

PRUNERS = ("median", "hyperband", "none")
STUDY_MARK = "study.json"  # which study the output folder belongs to


@dataclass
class TuneResult:
    """What ``tune`` returns: where the study is and what it found."""

    out: Path
    study: str
    storage: str  # the URL, password hidden
    trials: dict[str, int]  # trial count by state, the whole study's
    best_value: float | None  # valid value of the monitored metric; None: no trial completed
    best_trial: int | None
    best_params: dict[str, Any]
    best_config: Path | None  # DIR/best.toml
    best_run: Path | None  # the best trial's run directory, when kept here (keep = best, all)
    report: Path


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    """``median``: stop a trial whose epoch value is worse than the median of earlier trials
    at that epoch (after 5 trials, from epoch 2: the first is mostly warm-up);
    ``hyperband``: successive halving over epochs."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"pruner must be one of {', '.join(PRUNERS)}, not {name!r}")


def tune(
    config: Config | str | Path,
    space: Space | dict[str, Any] | str | Path,
    *,
    out: str | Path,
    trials: int,
    timeout: float | None = None,
    storage: str | None = None,
    study: str | None = None,
    jobs: int = 1,
    pruner: str | optuna.pruners.BasePruner = "median",
    repeat: int = 1,
    keep: str = "none",
    progress: Progress | None = None,
    heartbeat_interval: int = 60,
    grace_period: int | None = None,
) -> TuneResult:
    """Run ``trials`` more trials (over ``jobs`` worker processes) of the study ``study`` in
    ``storage`` (default: the SQLite file ``out/study.db``), each trial ``repeat`` trainings
    with their own seeds, and write ``best.toml``, ``trials.csv`` and ``report.html`` to
    ``out``. ``keep``: which trial run directories stay (none, best, all). A trial whose
    worker stopped beating its heartbeat for ``grace_period`` seconds (default: twice
    ``heartbeat_interval``) is marked failed and retried once."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # every rank would run trials of its own
        raise ConfigError("hydrarec tune runs its trials in one process each: not under torchrun")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress bar tells the trials
    out = Path(out)
    raw = _resolved(config)
    space = space if isinstance(space, Space) else load_space(space)
    check_space(space, raw)  # every value the config refuses: an error now, not in a trial
    _check_counts(trials=trials, jobs=jobs, repeat=repeat, keep=keep, timeout=timeout)
    cfg = config_from_dict(raw, "the base config")
    monitor, mode = monitor_of(cfg)
    epochs = cfg.train.epochs * repeat
    chosen = make_pruner(pruner, epochs) if isinstance(pruner, str) else pruner
    out.mkdir(parents=True, exist_ok=True)
    url = storage or default_url(out)
    name = study or out.resolve().name
    _claim(out, name, shown_url(storage) if storage else STUDY_FILE)
    db = open_storage(url, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    stamp = {"hydrarec_monitor": monitor, "hydrarec_space": space.describe()}
    found = open_study(db, name, "maximize" if mode == "max" else "minimize", stamp)
    plan = Plan(raw, space, out, monitor, repeat)
    worker = Worker(plan, url, name, chosen, trials, timeout, heartbeat_interval, grace_period)
    with (progress or Progress()).task(f"tuning {name}", total=trials) as bar:
        run_workers(worker, jobs, bar)
    return _finish(found, plan, url, keep)


def _finish(study: optuna.Study, plan: Plan, url: str, keep: str) -> TuneResult:
    """Write what the study found; delete the trial runs ``keep`` does not keep."""
    best_config = write_best_config(study, plan)
    write_trials_csv(study, plan.out)
    sweep_trial_dirs(study, plan.out, keep)
    report = write_study_report(study, plan.out, plan.monitor, url)
    best = best_trial(study)
    return TuneResult(
        out=plan.out,
        study=study.study_name,
        storage=shown_url(url),
        trials=summary(study),
        best_value=None if best is None else best.value,
        best_trial=None if best is None else best.number,
        best_params={} if best is None else dict(best.params),
        best_config=best_config,
        best_run=None if best is None else _kept(trial_dir(plan.out, best.number)),
        report=report,
    )


def _kept(run: Path) -> Path | None:
    """``run`` when it is here (kept, and trained by a worker that writes to this folder)."""
    return run if run.is_dir() else None


def _resolved(config: Config | str | Path) -> dict[str, Any]:
    """The base config as a plain dict of every field (defaults written out): the dict each
    trial's values are applied to, as ``--set`` would apply them."""
    cfg = config if isinstance(config, Config) else load_config(config)
    return tomllib.loads(dump_config(cfg))


def _claim(out: Path, study: str, storage: str) -> None:
    """Mark ``out`` as the folder of one study: trial run directories are named by trial
    number, which two studies would share. (The default storage is named relative to ``out``,
    so that a study folder can be moved or copied.)"""
    mark = out / STUDY_MARK
    mine = {"study": study, "storage": storage}
    if not mark.exists():
        write_json(mark, mine)
        return
    theirs = read_json(mark)
    if theirs != mine:
        raise ConfigError(
            f"{out} holds study {theirs['study']!r} in {theirs['storage']}, not {study!r} in "
            f"{storage}: give each study its own --out"
        )


def _check_counts(*, trials: int, jobs: int, repeat: int, keep: str, timeout: float | None) -> None:
    for name, value in (("trials", trials), ("jobs", jobs), ("repeat", repeat)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, not {value}")
    if keep not in KEEP:
        raise ConfigError(f"keep must be one of {', '.join(KEEP)}, not {keep!r}")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"timeout must be a positive number of seconds, not {timeout}")
