"""What a study leaves in its output folder besides the database: ``best.toml`` (the base
config with the best trial's values written in, for ``hydrarec train``), ``trials.csv`` (one
row per trial: state, value, values, epochs, failure reason) and the trial run directories
that ``--keep`` asks for.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hydrarec.config import dump_config
from hydrarec.io.atomic import write_text, write_with
from hydrarec.tuning.objective import TRIALS, Plan
from hydrarec.tuning.space import config_with, decode

KEEP = ("none", "best", "all")  # --keep: which trial run directories stay
BEST_CONFIG = "best.toml"
TRIALS_CSV = "trials.csv"
# DIR/trials/NNNN and what training leaves beside it (NNNN.partial of a pruned or killed trial)
_TRIAL_DIR = re.compile(r"^(\d+)(\..+)?$")


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return study.best_trial if done else None


def write_best_config(study: optuna.Study, plan: Plan) -> Path | None:
    """``DIR/best.toml``; None (and no file) while no trial has completed."""
    best = best_trial(study)
    if best is None:
        return None
    values = decode(plan.space, best.params)
    cfg = config_with(plan.raw, values)
    header = [
        f"# hydrarec tune: the best of {len(study.trials)} trials of study {study.study_name!r}:",
        f"# trial {best.number}, valid {plan.monitor} = {best.value:.6g}",
        *(f"#   {k} = {v!r}" for k, v in values.items()),
    ]
    path = plan.out / BEST_CONFIG
    write_text(path, "\n".join(header) + "\n" + dump_config(cfg))
    return path


def write_trials_csv(study: optuna.Study, out: Path) -> Path:
    """One row per trial of the study (every worker's), params and user attributes as columns."""
    frame = study.trials_dataframe(
        attrs=("number", "state", "value", "params", "user_attrs", "duration", "datetime_start")
    )
    path = out / TRIALS_CSV
    write_with(path, lambda p: frame.to_csv(p, index=False))
    return path


def sweep_trial_dirs(study: optuna.Study, out: Path, keep: str) -> list[Path]:
    """Delete the run directories of finished trials that ``keep`` does not keep.

    A directory whose trial is still RUNNING (another worker's, here or on another machine
    sharing this folder) or whose number the study does not know is left alone: the sweep
    never touches a run a trial may still write. Returns the directories deleted."""
    root = out / TRIALS
    if keep == "all" or not root.is_dir():
        return []
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    best = best_trial(study)
    kept = best.number if best is not None and keep == "best" else None
    deleted: list[Path] = []
    for entry in sorted(root.iterdir()):
        match = _TRIAL_DIR.match(entry.name)
        if match is None:
            continue
        number, suffix = int(match.group(1)), match.group(2)
        if not states.get(number, TrialState.RUNNING).is_finished():
            continue
        if number == kept and suffix is None:
            continue
        _remove(entry)
        deleted.append(entry)
    return deleted


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def summary(study: optuna.Study) -> dict[str, Any]:
    """Trial counts by state, for the CLI and ``TuneResult``."""
    return dict(Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False)))
