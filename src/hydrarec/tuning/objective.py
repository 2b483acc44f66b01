"""One trial: the base config with the trial's values, trained by ``hydrarec.run.train.train``
into its own run directory, scored on VALIDATION (test stays unread, STYLE avoid 7).

Each epoch's validation value of the monitored metric is reported to Optuna as it ends, so the
pruner can stop a trial that is doing worse than the others at the same epoch; a trial that
raises is recorded FAIL with the reason (user attribute ``fail_reason``) and the study goes on.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from hydrarec.config import Config
from hydrarec.data.dataset import Dataset
from hydrarec.data.registry import load_dataset
from hydrarec.io.progress import Progress
from hydrarec.run.train import train
from hydrarec.tuning.space import Space, config_with, suggest

TRIALS = "trials"  # DIR/trials/NNNN: one run directory per trial


@dataclass(frozen=True)
class Plan:
    """What every trial of a study shares; picklable, so worker processes receive it."""

    raw: dict[str, Any]  # the resolved base config, as a dict
    space: Space
    out: Path
    monitor: str
    repeat: int = 1  # seeds averaged per trial


def trial_dir(out: Path, number: int) -> Path:
    """A trial's own run directory (with ``repeat`` > 1, one run per seed inside it)."""
    return out / TRIALS / f"{number:04d}"


def trial_seed(base: int, number: int, repeat: int, index: int) -> int:
    """Seed of a trial's ``index``-th run: distinct for every trial and repeat of a study."""
    return base + number * repeat + index


class Objective:
    """``study.optimize(Objective(plan))``: trains and scores one trial per call."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._dataset: tuple[str, Dataset] | None = None  # the last one loaded, by data config

    def __call__(self, trial: optuna.Trial) -> float:
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except Exception as e:  # recorded with the trial; optimize(catch=...) goes on
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {e}"[:2000])
            raise

    def _run(self, trial: optuna.Trial) -> float:
        plan = self.plan
        values = suggest(trial, plan.space)
        base_seed = int(plan.raw.get("train", {}).get("seed", 0))
        path = trial_dir(plan.out, trial.number)
        trial.set_user_attr("run", str(path))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # who ran it
        scores: list[float] = []
        seeds = [trial_seed(base_seed, trial.number, plan.repeat, i) for i in range(plan.repeat)]
        trial.set_user_attr("seeds", seeds)
        epochs = [0]  # trained so far, over the repeats: the pruner's saving is counted in it
        for index, seed in enumerate(seeds):
            cfg = config_with(plan.raw, values | {"train.seed": seed, "train.refit": False})
            out = path if plan.repeat == 1 else path / f"seed-{seed}"
            hook = _pruning_hook(trial, plan.monitor, index * cfg.train.epochs, epochs)
            run = train(
                cfg,
                out,
                progress=Progress(enabled=False),
                dataset=self._load(cfg),
                on_epoch=hook,
                test=False,
            )
            scores.append(float(run.metrics["valid"][plan.monitor]))
        trial.set_user_attr("valid", scores)
        return sum(scores) / len(scores)

    def _load(self, cfg: Config) -> Dataset | None:
        """The dataset, loaded once per worker while the space leaves ``data`` alone."""
        if cfg.data.streaming:  # read from its files by the training itself
            return None
        key = cfg.data.model_dump_json()
        if self._dataset is None or self._dataset[0] != key:
            self._dataset = (key, load_dataset(cfg.data))
        return self._dataset[1]


def _pruning_hook(
    trial: optuna.Trial, monitor: str, offset: int, epochs: list[int]
) -> Callable[[dict[str, Any]], None]:
    """Report each validated epoch to the pruner (step = epochs before this repeat + epoch)
    and stop the training, by ``TrialPruned``, when the pruner says so."""

    def on_epoch(record: dict[str, Any]) -> None:
        epochs[0] += 1
        trial.set_user_attr("epochs", epochs[0])
        value = record.get("valid", {}).get(monitor)
        if value is None or math.isnan(value):
            return
        step = offset + int(record["epoch"])
        trial.report(float(value), step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"{monitor} = {value:.4f} at epoch {record['epoch']}")

    return on_epoch
