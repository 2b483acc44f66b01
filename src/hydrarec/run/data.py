"""From a dataset and a config to what the trainer consumes: split, labels, fitted features,
encoded tables, and a batch source per epoch. Everything is fitted on the train rows only.

``train.batch_size`` is the GLOBAL batch: with W data-parallel ranks, optimizer step j covers the
same rows as step j of a single process with the same seed, split into W contiguous parts, one per
rank (per-rank batch = batch_size / W, the first ``batch_size % W`` ranks one row more). Steps per
epoch, the learning-rate schedule and the rows of each step therefore do not depend on the number
of ranks.

``train.examples = "windows"``: an epoch iterates over ``batch_size`` training windows at a time
instead of rows (``BatchBuilder.units``; ``features/batching.py`` explains them).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from hydrarec.config import Config, RetrievalTaskConfig
from hydrarec.data.dataset import Dataset
from hydrarec.data.labels import label_stats, task_labels
from hydrarec.data.sampling import PopularitySampler, UniformSampler
from hydrarec.data.schema import TIMESTAMP
from hydrarec.data.splits import Split, make_split
from hydrarec.errors import DataError
from hydrarec.features.batch import Batch, EntityFeatures, EntitySpec
from hydrarec.features.batching import BatchBuilder, UserHistories
from hydrarec.features.pipeline import FeaturePipeline
from hydrarec.features.text import item_spec_with_text

FULL_SOFTMAX_MAX_ITEMS = 5000


@dataclass
class TrainData:
    cfg: Config
    dataset: Dataset
    split: Split
    labels: dict[str, np.ndarray]  # task name -> float32 over all interactions (NaN: missing)
    stats: dict[str, tuple[float, float, float]]  # task name -> (min, max, mean) over train
    pipeline: FeaturePipeline
    users: EntityFeatures
    items: EntityFeatures
    user_spec: EntitySpec
    item_spec: EntitySpec
    builder: BatchBuilder
    rank: int = 0
    world_size: int = 1

    @cached_property
    def units(self) -> np.ndarray:
        """What an epoch iterates over: the train rows, or the training windows' ends."""
        return self.builder.units(self.split.train)

    @property
    def train_rows(self) -> int:
        """Training interactions (rows of the split's train part)."""
        return len(self.split.train)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch: global batches, the same on every rank and for any W."""
        return BatchBuilder.num_batches(len(self.units), self.cfg.train.batch_size)

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        """This rank's batches of ``epoch``: the same shuffle for a given (seed, epoch)."""
        seed, size = epoch_seed(self.cfg, epoch), self.cfg.train.batch_size
        if self.world_size == 1:
            return self.builder.iterate(self.units, size, shuffle=True, seed=seed)
        return rank_batches(self.builder, self.units, size, seed, self.rank, self.world_size)

    def histories(self, parts: tuple[str, ...]) -> UserHistories:
        """Each user's items in the given split parts, oldest first."""
        rows = np.concatenate([getattr(self.split, p) for p in parts])
        return UserHistories(*_columns(self.dataset), rows=rows, n_users=self.dataset.n_users)


def rank_part(rows: np.ndarray, order: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s contiguous part of one global batch ``rows``.

    A last batch with fewer rows than ranks is topped up with the epoch's first rows (``order``),
    so that no rank gets an empty batch and every rank takes the same number of steps.

    >>> [rank_part(np.arange(5), np.arange(5), r, 2).tolist() for r in (0, 1)]
    [[0, 1, 2], [3, 4]]
    >>> [rank_part(np.array([9]), np.arange(10), r, 2).tolist() for r in (0, 1)]
    [[9], [0]]
    """
    if len(rows) < world_size:
        rows = np.concatenate([rows, order[: world_size - len(rows)]])
    return np.array_split(rows, world_size)[rank]


def rank_batches(
    builder: BatchBuilder, rows: np.ndarray, batch_size: int, seed: int, rank: int, world_size: int
) -> Iterator[Batch]:
    """This rank's part of every global batch of ``rows`` (see the module doc).

    The shuffle is ``BatchBuilder.iterate``'s for the same seed; negatives of part r of global
    batch b are drawn from a generator seeded by (seed, b, r): each rank samples its own.
    """
    if batch_size < world_size:
        raise DataError(
            f"train.batch_size {batch_size} is the global batch; it must be at least the "
            f"number of ranks ({world_size})"
        )
    order = builder.epoch_order(rows, batch_size, seed)
    for b in range(BatchBuilder.num_batches(len(order), batch_size)):
        part = rank_part(order[b * batch_size : (b + 1) * batch_size], order, rank, world_size)
        rng = np.random.default_rng([seed, 1, b, rank]) if builder.negatives else None
        yield builder.build(part, rng)


def train_batches(
    cfg: Config,
    ds: Dataset,
    train: np.ndarray,
    labels: dict[str, np.ndarray],
    users: EntityFeatures,
    items: EntityFeatures,
    counts: np.ndarray,
) -> BatchBuilder:
    """The batch builder of ``ds``'s interactions, the ``train`` rows as users' histories;
    ``counts``: each item's training count, for the retrieval sampler and its logQ."""
    user_idx, item_idx, ts = _columns(ds)
    return BatchBuilder(
        user_idx,
        item_idx,
        labels,
        users,
        items,
        histories=UserHistories(user_idx, item_idx, ts, rows=train, n_users=ds.n_users),
        history_len=cfg.model.sequence.max_len if cfg.model.sequence.kind != "none" else 1,
        **retrieval_sampling(cfg, ds.n_items, counts),
        examples=cfg.train.examples,
        window_stride=cfg.train.window_stride or 0,
        length_buckets=cfg.train.length_buckets,
        pack_windows=cfg.train.pack_windows,
    )


def _columns(ds: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    inter = ds.interactions
    ts = inter[TIMESTAMP].to_numpy(np.int64) if TIMESTAMP in inter.columns else None
    return inter["user_idx"].to_numpy(), inter["item_idx"].to_numpy(), ts


def retrieval_sampling(cfg: Config, n_items: int, counts: np.ndarray) -> dict[str, Any]:
    """``BatchBuilder``'s candidate arguments from the retrieval task's config and the items'
    train counts: sampled negatives and their sampler, each item's log sampling probability (for
    logQ) and whether the softmax runs over the whole catalogue."""
    task = next((t for t in cfg.tasks if isinstance(t, RetrievalTaskConfig)), None)
    full, negatives, sampler = False, 0, None
    if task is not None:
        full = task.softmax_over_catalogue(n_items, FULL_SOFTMAX_MAX_ITEMS)
        negatives = task.negatives
        if negatives > 0:
            sampler = (
                PopularitySampler(counts, task.alpha)
                if task.sampler == "popularity"
                else UniformSampler(n_items)
            )
    with np.errstate(divide="ignore"):
        log_prob = np.log(counts / counts.sum())
    return dict(negatives=negatives, sampler=sampler, item_log_prob=log_prob, full_catalogue=full)


def epoch_seed(cfg: Config, epoch: int) -> int:
    """The seed of one epoch's shuffle and sampling (the same for every rank)."""
    return cfg.train.seed * 1_000_003 + epoch


def make_train_data(
    cfg: Config, ds: Dataset, rank: int = 0, world_size: int = 1, split: Split | None = None
) -> TrainData:
    """Everything training reads, fitted on the train part of ``split`` (default: the split
    ``cfg.data.split`` makes). A given ``split`` may have no valid part (a refit)."""
    refit = split is not None
    split = split if split is not None else make_split(ds, cfg.data.split)
    if len(split.train) == 0:
        raise DataError(f"dataset {ds.name!r}: the split left no training interactions")
    if len(split.valid) == 0 and not refit:
        raise DataError(
            f"dataset {ds.name!r}: the split left no validation interactions, needed to "
            "select the model (raise data.split.valid_ratio, or use leave_last_out)"
        )
    labels = task_labels(ds.interactions, cfg.tasks)
    stats = label_stats({k: v[split.train] for k, v in labels.items()})
    pipeline = FeaturePipeline(cfg.features).fit(ds, split.train)
    users = pipeline.transform_users(ds.users)
    items = pipeline.transform_items(ds.items)
    item_spec = item_spec_with_text(cfg.model.text, pipeline.item_spec(), items, ds.items)
    item_idx = ds.interactions["item_idx"].to_numpy()
    counts = np.bincount(item_idx[split.train], minlength=ds.n_items).astype(np.float64)
    builder = train_batches(cfg, ds, split.train, labels, users, items, counts)
    return TrainData(
        cfg,
        ds,
        split,
        labels,
        stats,
        pipeline,
        users,
        items,
        pipeline.user_spec(),
        item_spec,
        builder,
        rank,
        world_size,
    )
