"""``update``: warm-start a trained run on new interactions into a new run (issue 25).

    RUN (read, never written)            RUN2 (built in RUN2.partial, swapped in when complete)
    data/interactions.parquet   -------> every old interaction, now "train": history and replay
    new interactions (file, log) ------> "train", the newest VALID_SHARE of them "valid"
    features/features.json      -------> id vocabularies extended: old ids keep their index
    features/*.safetensors      -------> new users / items appended; ids encoded again
    model.safetensors           -------> the warm start: id tables grown, new rows = the OOV row

Training then runs a few epochs over the new interactions and a fresh replay sample of old ones
(``run/replay.py``), with the run's own config (learning rate, schedule, batch size,
patience), keeps the epoch best on the newest interactions and writes RUN2 as ``train`` writes a
run (its item index included). A user's history in RUN2 is RUN's plus the new interactions, in
time order (``order``: the timestamp, else after RUN's interactions in file order).

New id rows start as a copy of the out-of-vocabulary row: that row is how the run scores an id
it does not know (zero at init, trained by id-dropout), so an update starts from the run's
current predictions for new users and items, and nothing jumps before training moves them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hydrarec.config import Config
from hydrarec.encoders.embedding import OOV
from hydrarec.errors import ArgumentError, RunError, Where
from hydrarec.io.atomic import write_json
from hydrarec.io.log import log_to
from hydrarec.io.progress import Progress
from hydrarec.model.ensemble import Model
from hydrarec.online.new_interactions import check_interactions, read_file, read_log
from hydrarec.online.store import log_identity
from hydrarec.online.update_data import feedback_columns, read_new_items, replay_data
from hydrarec.run import staging
from hydrarec.run.build import build_model
from hydrarec.run.index import build_index
from hydrarec.run.replay import ReplayData
from hydrarec.run.rundir import LoadedRun, RunDir, load_run
from hydrarec.run.train import fit_run, monitor_of
from hydrarec.training.distributed import Distributed
from hydrarec.training.trainer import pick_device

DEFAULT_EPOCHS = 5  # a few passes: the warm start already knows the old data
DEFAULT_REPLAY = 1.0  # old examples per new example and epoch: as many old as new


def update(
    run: str | Path,
    out: str | Path,
    *,
    interactions: str | Path | None = None,
    events: str | Path | None = None,
    items: str | Path | None = None,
    epochs: int | None = None,
    replay: float | None = None,
    seed: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Train ``run`` further on new ``interactions`` (a CSV / Parquet file) or ``events`` (an
    event log: SQLite path or ``postgresql://`` URL) and write the result as the new run ``out``.

    ``items``: a CSV / Parquet file of new items with their features and text, as ``add-items``
    takes (needed for new items when the run reads item text). ``epochs`` (default 5): at most
    this many epochs, the best on validation kept; ``replay`` (default 1.0): old interactions
    drawn per new one each epoch; ``seed``: default the run's. Bad input (a file, a column, an
    id, a run that cannot be updated) is a ``HydrarecError`` naming it, raised before anything
    is written. ``run`` is only read.
    """
    if (interactions is None) == (events is None):
        raise ArgumentError("give the new interactions as interactions=FILE or events=LOG (one)")
    if epochs is not None and epochs < 1:
        raise ArgumentError(f"epochs must be a positive integer, not {epochs!r}")
    if replay is not None and not (0 <= replay < float("inf")):
        raise ArgumentError(f"replay must be a number >= 0, not {replay!r}")
    rd = RunDir(run).require()
    _check_out(rd, out)
    loaded = load_run(rd.path)
    cfg = _update_config(loaded.config, epochs or DEFAULT_EPOCHS, seed)
    _check_updatable(cfg, rd)
    progress = progress or Progress()
    listed = None if items is None else read_new_items(items, loaded, cfg, progress.enabled)
    frame, source = read_file(interactions) if interactions is not None else read_log(str(events))
    new = check_interactions(
        frame, source, feedback_columns(cfg), loaded.user_ids.raw_ids, loaded.item_ids.raw_ids
    )
    ratio = DEFAULT_REPLAY if replay is None else replay
    data, facts = replay_data(cfg, loaded, new, source, ratio, listed)
    cfg = data.cfg = _validated_by(cfg, data, source)
    if events is not None:  # the last event trained on (docs/online.md, "Updating a run")
        facts["events_received_through"] = float(frame["received"].max())
        facts["events_log"] = log_identity(events)
    where = Path(staging.build_dir(out, resume=False, overwrite=False))
    with log_to(RunDir(out).log):
        best_epoch = _train_into(where, cfg, loaded, data, progress)
        facts |= {"from": os.path.abspath(rd.path), "best_epoch": best_epoch}
        write_json(RunDir(where).update, facts)
        staging.swap_in(where, out)
    return Path(out)


def _train_into(
    where: Path, cfg: Config, loaded: LoadedRun, data: ReplayData, progress: Progress
) -> int:
    """Train the grown model on ``data`` and write the run at ``where`` with its item index;
    the best epoch."""
    torch.manual_seed(cfg.train.seed)
    model = grown_model(loaded, cfg, data)
    device = pick_device(cfg.train.device)
    built = fit_run(
        cfg,
        RunDir(where),
        data,
        device,
        Distributed(),
        progress,
        resume=False,
        test=False,
        model=model,
    )
    with progress.task(f"building the {cfg.recommend.index} item index", total=1) as bar:
        build_index(where)
        bar.advance()
    return built.result.best_epoch


def _validated_by(cfg: Config, data: ReplayData, source: Where) -> Config:
    """``cfg`` when the newest interactions have labels of the task the run monitors; else
    monitoring the retrieval task's NDCG@10 (events often come without a rating), or a
    ``DataError`` for a run without one."""
    monitor, _ = monitor_of(cfg)
    labels = data.labels.get(monitor.split("/")[0])
    if labels is None or not np.isnan(labels[data.split.valid]).all():
        return cfg
    retrieval = next((t.name for t in cfg.tasks if t.kind == "retrieval"), None)
    if retrieval is None:
        why = f"the newest {len(data.split.valid)} interactions have no label for {monitor}"
        raise source.error(None, monitor.split("/")[0], why, "feedback on the newest ones")
    train = cfg.train.model_copy(update={"monitor": f"{retrieval}/ndcg@10"})
    return cfg.model_copy(update={"train": train})


def _check_out(rd: RunDir, out: str | Path) -> None:
    """``out`` must be a new place: never ``run`` itself, never a complete run (replaced by
    nothing but ``hydrarec train --overwrite``)."""
    if Path(out).exists() and Path(out).resolve() == rd.path.resolve():
        raise RunError(
            f"--out {out} is the run being updated: give a new folder (RUN is never modified)"
        )
    if staging.is_complete(RunDir(out)):
        raise RunError(
            f"{out} holds a complete run: give --out a new or empty folder (an update "
            "never replaces a run)"
        )


def _update_config(cfg: Config, epochs: int, seed: int | None) -> Config:
    """The run's config with the update's epochs and seed; RUN2 has a valid part, not a refit."""
    changes: dict[str, Any] = {"epochs": epochs, "refit": False}
    if seed is not None:
        changes["seed"] = seed
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=changes)})


def _check_updatable(cfg: Config, rd: RunDir) -> None:
    """Refuse, with the reason, runs whose training data an update cannot extend."""
    why = None
    if cfg.data.streaming:
        why = "it was trained with data.streaming (its interactions are not kept in the run)"
    elif cfg.model.autorec.hidden or cfg.model.user_autorec.hidden:
        why = "AutoRec blocks (model.autorec) hold the train ratings as weights"
    if why:
        raise RunError(f"{rd.path} cannot be updated: {why}; retrain it with `hydrarec train`")


def grown_model(loaded: LoadedRun, cfg: Config, data: ReplayData) -> Model:
    """The model of the grown sizes, holding the run's weights (see ``grow_state``)."""
    model = build_model(cfg, data.user_spec, data.item_spec, data.stats, data.dataset.n_items)
    old_sizes = {int(loaded.meta["user_spec"]["n_ids"]), int(loaded.meta["item_spec"]["n_ids"])}
    model.load_state_dict(
        grow_state(loaded.model.state_dict(), model.state_dict(), old_sizes, loaded.run.path)
    )
    return model


def grow_state(
    old: dict[str, torch.Tensor], new: dict[str, torch.Tensor], sizes: set[int], run: Path
) -> dict[str, torch.Tensor]:
    """``new``'s tensors filled from ``old``: equal shapes copied; an id table (first dimension
    one of the old vocabulary ``sizes``, grown) keeps its rows and its new rows copy row OOV.

    >>> old = {"ids": torch.tensor([[0.0], [5.0], [7.0]]), "w": torch.ones(2)}
    >>> grow_state(old, {"ids": torch.zeros(5, 1), "w": torch.zeros(2)}, {3}, Path("RUN"))["ids"]
    tensor([[0.],
            [5.],
            [7.],
            [5.],
            [5.]])
    """
    out: dict[str, torch.Tensor] = {}
    for key, target in new.items():
        source = old.get(key)
        if source is not None and source.shape == target.shape:
            out[key] = source.clone()
        elif (
            source is not None
            and source.shape[1:] == target.shape[1:]
            and source.shape[0] in sizes
            and target.shape[0] > source.shape[0] > OOV
        ):
            rows = target.shape[0] - source.shape[0]
            out[key] = torch.cat([source, source[OOV : OOV + 1].expand(rows, *source.shape[1:])])
        else:
            had = None if source is None else tuple(source.shape)
            raise RunError(
                f"{run} cannot be updated: its weight {key!r} {had} does not grow "
                f"into {tuple(target.shape)} with the vocabularies"
            )
    return out
