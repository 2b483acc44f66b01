"""``train`` and ``evaluate``: the whole job from a config to a run directory.

data -> split -> features (fitted on train) -> model -> trainer (early stop on valid)
     -> best weights -> metrics on valid and test (test read once, at the end)

With ``train.refit`` the run above is the selection run, ``RUN/selection`` (valid metrics only,
test unread); then features and a new model are fitted on train + valid, trained for the
selected epochs of the same schedule, and that model is the run's, scored once on test.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hydrarec import __version__, staging
from hydrarec.build import build_model
from hydrarec.config import Config, dump_config, monitor_of
from hydrarec.data.dataset import Dataset
from hydrarec.data.registry import load_dataset
from hydrarec.data.schema import TIMESTAMP
from hydrarec.data.splits import Split
from hydrarec.encoders.autorec import RatingBags
from hydrarec.ensemble import Ensemble, Model
from hydrarec.errors import ConfigError
from hydrarec.evaluation.evaluate import evaluate_model
from hydrarec.features.text import save_text_state
from hydrarec.io import write_json, write_tensors, write_text, write_with
from hydrarec.model import MultiTaskRecommender
from hydrarec.retrieval.build import build_index
from hydrarec.rundir import LoadedRun, RunDir, load_run, save_table
from hydrarec.runlog import log_to
from hydrarec.tasks.joint import JointLoss
from hydrarec.training.data import TrainData, make_train_data
from hydrarec.training.distributed import Distributed, process_group
from hydrarec.training.progress import Progress
from hydrarec.training.stream_data import make_stream_train_data
from hydrarec.training.trainer import Trainer, TrainResult, pick_device

SPLIT_NAMES = ("train", "valid", "test")
# the interactions a split's users are known to have had before it: excluded from its ranking
# and read as their history
KNOWN_BEFORE = {"valid": ("train",), "test": ("train", "valid")}
SELECTION = "selection"  # RUN/selection: the run that chose a refit's epochs (train.refit)


def ranks_held_out_items(cfg: Config) -> bool:
    """Whether retrieval is scored by ranking the held-out items among themselves: on a
    cold-item split, as the COLD protocol does (issue 20), so that validation chooses the
    checkpoint that ranks new items best and ``hydrarec evaluate`` reports that figure."""
    return cfg.data.split.kind == "cold_item"


@dataclass
class Run:
    """What ``train`` returns: where the run is and what it measured."""

    path: Path
    metrics: dict[str, dict[str, float]]
    result: TrainResult


def _order(df: pd.DataFrame) -> np.ndarray:
    """Time order within a user: the timestamp, else the position in the file."""
    if TIMESTAMP in df.columns:
        return df[TIMESTAMP].to_numpy(dtype=np.int64)
    return np.arange(len(df), dtype=np.int64)


def _split_column(n: int, split: Split) -> np.ndarray:
    col = np.full(n, "", dtype=object)
    for name in SPLIT_NAMES:
        col[getattr(split, name)] = name
    return col


def _save_data(run: RunDir, ds: Dataset, split: Split, labels: dict[str, np.ndarray]) -> None:
    inter = pd.DataFrame(
        {
            "user_idx": ds.interactions["user_idx"].to_numpy(),
            "item_idx": ds.interactions["item_idx"].to_numpy(),
            "order": _order(ds.interactions),
            "split": _split_column(len(ds.interactions), split),
        }
    )
    for name, v in labels.items():
        inter[name] = v
    inter = inter[inter["split"] != ""]
    write_with(run.data / "interactions.parquet", lambda p: inter.to_parquet(p, index=False))
    items = ds.items.copy()
    for col in items.columns:  # lists (multi-hot) as "a|b" strings: plain parquet columns
        if items[col].map(lambda v: isinstance(v, list)).any():
            items[col] = items[col].map(
                lambda v: "|".join(map(str, v)) if isinstance(v, list) else v
            )
    write_with(run.data / "items.parquet", lambda p: items.to_parquet(p, index=False))
    write_json(
        run.data / "ids.json",
        {"users": ds.user_ids.raw_ids.tolist(), "items": ds.item_ids.raw_ids.tolist()},
    )


def train_bags(cfg: Config, data: TrainData) -> dict[str, RatingBags]:
    """The rating task's train ratings by item ("item") and by user ("user"): the inputs of the
    AutoRec paths (none without them). Ids are id-vocabulary indices, the ids the towers read;
    unlabelled rows are left out."""
    if not (cfg.model.autorec.hidden or cfg.model.user_autorec.hidden):
        return {}
    task = next(t.name for t in cfg.tasks if t.kind == "rating")  # exactly one (config check)
    rows = data.split.train
    inter = data.dataset.interactions
    users = data.users.ids.numpy()[inter["user_idx"].to_numpy()[rows]]
    items = data.items.ids.numpy()[inter["item_idx"].to_numpy()[rows]]
    label = data.labels[task][rows]
    ok = ~np.isnan(label)
    users, items, label = users[ok], items[ok], label[ok]
    return {
        "item": RatingBags.from_pairs(items, users, label, data.item_spec.n_ids),
        "user": RatingBags.from_pairs(users, items, label, data.user_spec.n_ids),
    }


def _meta(cfg: Config, data: TrainData, model: Model) -> dict[str, Any]:
    return {
        "hydrarec_version": __version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": data.dataset.name,
        "n_users": data.dataset.n_users,
        "n_items": data.dataset.n_items,
        "user_spec": data.user_spec.to_dict(),
        "item_spec": data.item_spec.to_dict(),
        "label_stats": data.stats,
        "tasks": {t.name: t.kind for t in cfg.tasks},
        "parameters": sum(p.numel() for p in model.parameters()),
        "split_sizes": {k: len(getattr(data.split, k)) for k in SPLIT_NAMES}
        | {"train": data.train_rows},
    }


def _validator(
    cfg: Config, data: TrainData, device: torch.device, progress: Progress | None = None
) -> Callable[[torch.nn.Module], dict[str, float]]:
    """Validation metrics of every task (the trainer monitors one of them)."""
    rows = data.split.valid
    inter = data.dataset.interactions
    users, items = inter["user_idx"].to_numpy()[rows], inter["item_idx"].to_numpy()[rows]
    labels = {k: v[rows] for k, v in data.labels.items()}
    known = data.histories(KNOWN_BEFORE["valid"])

    def validate(model: torch.nn.Module) -> dict[str, float]:
        assert isinstance(model, (MultiTaskRecommender, Ensemble))
        with (progress or Progress(enabled=False)).task("validating", total=1) as bar:
            metrics = evaluate_model(
                model,
                data.users,
                data.items,
                users,
                items,
                labels,
                known,
                cfg.model.sequence.max_len,
                cfg.eval.ks,
                device,
                cfg.eval.batch_size,
                among_held_out=ranks_held_out_items(cfg),
            )
            bar.advance()
        return metrics

    return validate


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
    it ends; an exception it raises stops the training (``hydrarec tune`` prunes this way,
    issue 24). ``test=False`` leaves test unread and builds no item index (a tuning trial is
    scored on valid only; not with ``train.refit``, whose point is the test score).

    The run is built in ``out.partial`` and swapped in at ``out`` once complete, so a kill
    leaves the previous run or none, never a mix (``staging.py``, issue 21). A complete run at
    ``out`` is a ``RunError`` unless ``overwrite``. ``resume`` continues a killed training (in
    ``out.partial``) or the training of the complete run at ``out`` from its last checkpoint,
    to the result an uninterrupted run would have had; with nothing to continue, it trains anew.

    Everything printed meanwhile also goes to ``out/log.txt`` (issue 6). Under ``torchrun``
    every rank trains its share of each batch (DDP, issue 7); rank 0 alone logs, writes the run
    directory and evaluates, and the other ranks return a ``Run`` with empty ``metrics``.
    """
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
    if not test and cfg.train.refit:
        raise ConfigError("train.refit trains again to score test: it cannot skip test")
    dist = dist or Distributed()
    progress = (progress or Progress()) if dist.is_main else Progress(enabled=False)
    run = RunDir(out)
    run.path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.train.seed)
    with progress.task("loading data", total=2) as bar:
        if cfg.data.streaming:  # the train rows stay on disk (issue 7)
            if dataset is not None:
                raise ConfigError("data.streaming reads its files: pass no dataset to train()")
            data: TrainData = make_stream_train_data(cfg, dist.rank, dist.world_size)
            ds = data.dataset
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
    chosen = fit_run(
        cfg,
        RunDir(run.path / SELECTION),
        data,
        device,
        dist,
        progress,
        resume=resume,
        test=False,
        on_epoch=on_epoch,
    )
    split = data.split
    merged = Split(np.concatenate([split.train, split.valid]), split.valid[:0], split.test)
    torch.manual_seed(cfg.train.seed)
    refit_data = make_train_data(cfg, ds, dist.rank, dist.world_size, split=merged)
    epochs = max(1, chosen.result.best_epoch)
    final = fit_run(
        cfg, run, refit_data, device, dist, progress, resume=resume, refit_epochs=epochs
    )
    if not dist.is_main:
        return final
    metrics = {
        "valid": chosen.metrics["valid"],  # of the selected model, before the refit
        "test": final.metrics["test"],
        "train": final.metrics["train"]
        | {
            "seconds": round(
                chosen.metrics["train"]["seconds"] + final.metrics["train"]["seconds"], 2
            ),
            "selection_seconds": chosen.metrics["train"]["seconds"],
            "selection_epochs": chosen.result.epochs,
            "refit_seconds": final.metrics["train"]["seconds"],
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
        _save_data(run, ds, data.split, data.labels)
        write_json(run.meta, _meta(cfg, data, model))
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
    validate = None if refit_epochs is not None else _validator(cfg, data, device, progress)
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
        "seconds": round(result.seconds, 2),  # summed over resumes (issue 21)
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
    }
    write_json(run.metrics, metrics)
    if test:  # RUN/index/: the item index recommend.index names (issue 5)
        with progress.task(f"building the {cfg.recommend.index} item index", total=1) as bar:
            build_index(loaded)
            bar.advance()
    return Run(run.path, metrics, result)


def evaluate(
    run: LoadedRun | str | Path, split: str = "test", exclude_known: bool = True
) -> dict[str, float]:
    """Metrics of every task on ``split`` of a trained run (keys ``task/metric``).

    ``exclude_known = False``: the items the user had before the split compete in the retrieval
    ranking too (by default they are left out, as ``recommend`` leaves out seen items)."""
    if split not in ("valid", "test"):
        raise ConfigError(f"split must be 'valid' or 'test', not {split!r}")
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    device = next(loaded.model.parameters()).device
    rows = loaded.interactions[loaded.interactions["split"] == split]
    if len(rows) == 0:
        why = ""
        if (selection := loaded.run.path / SELECTION).is_dir():
            why = f" (refit on train + valid, train.refit; {selection} holds the selected model)"
        elif loaded.run.update.is_file():  # hydrarec update (online/update.py)
            why = " (an updated run: it is validated on its newest interactions, split 'valid')"
        raise ConfigError(f"the run has no {split!r} interactions to evaluate{why}")
    labels = {
        n: rows[n].to_numpy(dtype=np.float32) for n in loaded.model.tasks if n in rows.columns
    }
    cfg = loaded.config
    return evaluate_model(
        loaded.model,
        loaded.users,
        loaded.items,
        rows["user_idx"].to_numpy(),
        rows["item_idx"].to_numpy(),
        labels,
        loaded.known(KNOWN_BEFORE[split]),
        cfg.model.sequence.max_len,
        cfg.eval.ks,
        device,
        cfg.eval.batch_size,
        exclude_known,
        among_held_out=ranks_held_out_items(cfg),
    )


__all__ = ["Run", "evaluate", "train"]
