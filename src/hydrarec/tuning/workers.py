"""The processes that run trials. One worker runs in the calling process; ``--jobs J`` starts J
worker processes on the same storage, the path several machines take too (each opens the
database, loads the study and asks it for trials). Processes, not threads: a trial seeds
torch's global generator, which threads would share.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace

import optuna
import torch
from optuna.trial import TrialState

from hydrarec.errors import RunError
from hydrarec.io.progress import Bar
from hydrarec.tuning.objective import Objective, Plan
from hydrarec.tuning.storage import open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
POLL_SECONDS = 1.0  # how often the parent of worker processes updates the progress bar


@dataclass(frozen=True)
class Worker:
    """One worker's share of an invocation; picklable (sent to a spawned process)."""

    plan: Plan
    url: str
    study: str
    pruner: optuna.pruners.BasePruner
    trials: int  # this worker's share of --trials
    timeout: float | None
    heartbeat_interval: int
    grace_period: int | None
    index: int = 0  # which worker of the invocation: its sampler's seed
    threads: int | None = None  # torch CPU threads (None: torch's default)


def run_worker(worker: Worker, on_trial: Callable[[optuna.Study], None] | None = None) -> None:
    """Run ``worker.trials`` trials (fewer if the timeout passes first)."""
    if worker.threads is not None:
        torch.set_num_threads(worker.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(
        worker.url, heartbeat_interval=worker.heartbeat_interval, grace_period=worker.grace_period
    )
    study = optuna.load_study(study_name=worker.study, storage=storage, pruner=worker.pruner)
    # a different sampler seed per worker and per resume: no two workers ask for the same values
    base = int(worker.plan.raw.get("train", {}).get("seed", 0))
    seed = base + 1000 * worker.index + len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    with warnings.catch_warnings():  # "experimental" in Optuna since 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # a killed worker's RUNNING trials: FAIL
    study.optimize(
        Objective(worker.plan),
        n_trials=worker.trials,
        timeout=worker.timeout,
        catch=(Exception,),
        callbacks=[] if on_trial is None else [lambda study, trial: on_trial(study)],
    )


def run_workers(worker: Worker, jobs: int, bar: Bar) -> None:
    """``worker.trials`` trials over ``jobs`` workers, the bar advanced as trials finish."""
    if jobs == 1:
        run_worker(worker, lambda study: _advance(bar, study, 1))
        return
    shares = [worker.trials // jobs + (i < worker.trials % jobs) for i in range(jobs)]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    processes = [
        context.Process(
            target=run_worker, args=(replace(worker, trials=n, index=i, threads=threads),)
        )
        for i, n in enumerate(shares)
        if n > 0
    ]
    study = optuna.load_study(study_name=worker.study, storage=open_storage(worker.url))
    before = {t.number for t in study.get_trials(deepcopy=False, states=FINISHED)}
    for p in processes:
        p.start()
    try:
        while any(p.is_alive() for p in processes):
            time.sleep(POLL_SECONDS)
            _advance(bar, study, _finished_since(study, before) - bar.completed)
    finally:
        for p in processes:
            p.join()
    _advance(bar, study, _finished_since(study, before) - bar.completed)
    failed = [(i, p.exitcode) for i, p in enumerate(processes) if p.exitcode != 0]
    if failed:
        raise RunError(f"tuning workers stopped with an error (worker, exit code): {failed}")


def _finished_since(study: optuna.Study, before: set[int]) -> int:
    """Trials finished since the workers started (other machines' included)."""
    return len({t.number for t in study.get_trials(deepcopy=False, states=FINISHED)} - before)


def _advance(bar: Bar, study: optuna.Study, n: int) -> None:
    best = best_value(study)
    bar.advance(None if best is None else {"best": best}, n=n)


def best_value(study: optuna.Study) -> float | None:
    """The best objective so far; None before the first completed trial."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return study.best_value if done else None
