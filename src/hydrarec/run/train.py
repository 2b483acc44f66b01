"""``train``: the whole job from a config to a run directory (scored by
``run/evaluate.py``).

data -> split -> features (fitted on train) -> model -> trainer (early stop on valid)
     -> best weights -> metrics on valid and test (test read once, at the end)

With ``train.refit`` the run above is the selection run, ``RUN/selection`` (valid metrics only,
test unread); then features and a new model are fitted on train + valid, trained for the
selected epochs of the same schedule, and that model is the run's, scored once on test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hydrarec.config import Config, dump_config, monitor_of
from hydrarec.data.dataset import Dataset
from hydrarec.data.registry import load_dataset
from hydrarec.data.splits import Split
from hydrarec.errors import ConfigError
from hydrarec.features.text import save_text_state
from hydrarec.io.atomic import write_json, write_tensors, write_text
from hydrarec.io.log import log_to
from hydrarec.io.progress import Progress
from hydrarec.model.ensemble import Model
from hydrarec.run import staging
from hydrarec.run.build import build_model, train_bags
from hydrarec.run.data import TrainData, make_train_data
from hydrarec.run.evaluate import SELECTION, evaluate, validator
from hydrarec.run.index import build_index
from hydrarec.run.rundir import RunDir, load_run, save_table
from hydrarec.run.save import run_meta, save_data
from hydrarec.run.stream_data import make_stream_train_data
from hydrarec.tasks.joint import JointLoss
from hydrarec.training.distributed import Distributed, process_group
from hydrarec.training.trainer import Trainer, TrainResult, pick_device


@dataclass
class Run:
    """What ``train`` returns: where the run is and what it measured."""

    path: Path
    metrics: dict[str, dict[str, float]]
    result: TrainResult


def train(
    cfg: Config,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    dataset: Dataset | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    test: bool = True,
) -> Run:
    """Train ``cfg`` into the run directory ``out`` and evaluate on valid and test.

    ``on_epoch(record)`` sees each epoch's history record (its ``valid`` metrics included) as
    it ends; an exception it raises stops the training (``hydrarec tune`` prunes this way).
    ``test=False`` leaves test unread and builds no item index (a tuning trial is scored on valid
    only; not with ``train.refit``, whose point is the test score).

    The run is built in ``out.partial`` and swapped in at ``out`` once complete (``run/staging.py``
    says how, and what ``overwrite`` and ``resume`` do). ``resume`` continues to the result an
    uninterrupted run would have had.

    Everything printed meanwhile also goes to ``out/log.txt``. Under ``torchrun`` every rank
    trains its share of each batch (DDP); rank 0 alone logs, writes the run directory and
    evaluates, and the other ranks return a ``Run`` with empty ``metrics``.
    """
    if not test and cfg.train.refit:
        raise ConfigError(
            "train.refit trains again to score test: it cannot skip test; to compare settings "
            "on valid alone, add --set train.refit=false"
        )
    with process_group(pick_device(cfg.train.device)) as (dist, device):
        # before the log opens: a refused complete run is left as it was
        where = staging.prepare(out, resume=resume, overwrite=overwrite, dist=dist)
        with log_to(RunDir(out).log) if dist.is_main else nullcontext():
            built = _train(
                cfg,
                where,
                resume=resume,
                progress=progress,
                dataset=dataset,
                dist=dist,
                device=device,
                on_epoch=on_epoch,
                test=test,
            )
            if dist.is_main:
                staging.swap_in(where, out)
    return Run(Path(out), built.metrics, built.result)


def _train(
    cfg: Config,
    out: str | Path,
    *,
    resume: bool = False,
    progress: Progress | None = None,
    dataset: Dataset | None = None,
    dist: Distributed | None = None,
    device: torch.device | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    test: bool = True,
) -> Run:
    """``train`` without the log file (and without joining a process group)."""
    dist = dist or Distributed()
    progress = (progress or Progress()) if dist.is_main else Progress(enabled=False)
    run = RunDir(out)
    run.path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.train.seed)
    with progress.task("loading data", total=2) as bar:
        if cfg.data.streaming:  # the train rows stay on disk
            if dataset is not None:
                raise ConfigError("data.streaming reads its files: pass no dataset to train()")
            data: TrainData = make_stream_train_data(cfg, dist.rank, dist.world_size)
            bar.advance()
        else:
            ds = dataset if dataset is not None else load_dataset(cfg.data)
            bar.advance()
            data = make_train_data(cfg, ds, dist.rank, dist.world_size)  # fitted on train
        bar.advance()
    device = device or pick_device(cfg.train.device)
    if not cfg.train.refit:
        return fit_run(
            cfg, run, data, device, dist, progress, resume=resume, test=test, on_epoch=on_epoch
        )
    # refit: select on valid in RUN/selection (test unread), then train again on train + valid
    selection = RunDir(run.path / SELECTION)
    chosen = fit_run(
        cfg, selection, data, device, dist, progress, resume=resume, test=False, on_epoch=on_epoch
    )
    split = data.split
    merged = Split(np.concatenate([split.train, split.valid]), split.valid[:0], split.test)
    torch.manual_seed(cfg.train.seed)
    refit_data = make_train_data(cfg, data.dataset, dist.rank, dist.world_size, split=merged)
    epochs = max(1, chosen.result.best_epoch)
    final = fit_run(
        cfg, run, refit_data, device, dist, progress, resume=resume, refit_epochs=epochs
    )
    if not dist.is_main:
        return final
    selecting, refitting = chosen.metrics["train"]["seconds"], final.metrics["train"]["seconds"]
    metrics = {
        "valid": chosen.metrics["valid"],  # of the selected model, before the refit
        "test": final.metrics["test"],
        "train": final.metrics["train"]
        | {
            "seconds": round(selecting + refitting, 2),
            "selection_seconds": selecting,
            "selection_epochs": chosen.result.epochs,
            "refit_seconds": refitting,
            "refit": True,
        },
    }
    write_json(run.metrics, metrics)
    return Run(run.path, metrics, final.result)


def fit_run(
    cfg: Config,
    run: RunDir,
    data: TrainData,
    device: torch.device,
    dist: Distributed,
    progress: Progress,
    *,
    resume: bool,
    test: bool = True,
    refit_epochs: int | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    model: Model | None = None,
) -> Run:
    """Build, train and write one run directory from ``data``: early stopping on valid, or
    (``refit_epochs``) that many epochs on a split without a valid part. Its metrics: valid and,
    with ``test``, test (read here, once); a refit has test only. ``model``: the weights to
    start from (``hydrarec update``'s warm start), instead of a new model."""
    run.path.mkdir(parents=True, exist_ok=True)
    ds = data.dataset
    if model is None:
        model = build_model(
            cfg, data.user_spec, data.item_spec, data.stats, ds.n_items, train_bags(cfg, data)
        )
    objective = JointLoss(
        [t.name for t in cfg.tasks],
        cfg.loss,
        {t.name: t.weight for t in cfg.tasks},
        model.shared_parameters(),
    )
    if dist.is_main:  # one writer of the run directory
        write_text(run.config, dump_config(cfg))
        data.pipeline.save(run.features)
        save_table(run.features / "users.safetensors", data.users)
        save_table(run.features / "items.safetensors", data.items)
        if cfg.model.text.enabled:  # which model + template made the text vectors (for add-items)
            save_text_state(run.features, cfg.model.text, data.item_spec.text_dim)
        save_data(run, ds, data.split, data.labels)
        write_json(run.meta, run_meta(cfg, data, model))
    monitor, mode = monitor_of(cfg)

    def on_best(m: torch.nn.Module, epoch: int) -> None:
        write_tensors(run.model, m.state_dict())

    def on_epoch_end(record: dict[str, Any]) -> None:
        with open(run.history, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if on_epoch is not None:
            on_epoch(record)

    if dist.is_main and not resume and run.history.exists():
        run.history.unlink()
    trainer = Trainer(
        model,
        objective,
        cfg.train,
        device=device,
        checkpoint_dir=run.checkpoints,
        on_best=on_best,
        on_epoch_end=on_epoch_end,
        progress=progress,
        dist=dist,
    )
    validate = None if refit_epochs is not None else validator(cfg, data, device, progress)
    result = trainer.fit(
        data.epoch_batches,
        data.steps_per_epoch,
        validate,
        monitor,
        mode,
        resume=resume,
        epochs=refit_epochs,
    )
    if not dist.is_main:  # rank 0 evaluates and writes the metrics
        return Run(run.path, {}, result)
    # every epoch's record, also one a kill kept from being appended before a resume
    write_text(run.history, "".join(json.dumps(record) + "\n" for record in result.history))
    loaded = load_run(run.path, device)
    splits = [s for s, on in (("valid", refit_epochs is None), ("test", test)) if on]
    metrics: dict[str, dict[str, float]] = {}
    with progress.task("evaluating", total=len(splits)) as bar:
        for split in splits:
            metrics[split] = evaluate(loaded, split)
            bar.advance()
    metrics["train"] = {
        "seconds": round(result.seconds, 2),  # summed over resumes
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
    }
    write_json(run.metrics, metrics)
    if test:  # RUN/index/: the item index recommend.index names
        with progress.task(f"building the {cfg.recommend.index} item index", total=1) as bar:
            build_index(loaded)
            bar.advance()
    return Run(run.path, metrics, result)
