"""From a dataset and a config to what the trainer consumes: split, labels, fitted features,
encoded tables, and a batch source per epoch. Everything is fitted on the train rows only."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hydrarec.config import Config
from hydrarec.data.dataset import Dataset
from hydrarec.data.sampling import PopularitySampler, UniformSampler
from hydrarec.data.schema import TIMESTAMP
from hydrarec.data.splits import Split, make_split
from hydrarec.errors import DataError
from hydrarec.features.batch import Batch, EntityFeatures, EntitySpec
from hydrarec.features.batching import BatchBuilder, UserHistories
from hydrarec.features.pipeline import FeaturePipeline
from hydrarec.labels import label_stats, task_labels

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

    @property
    def steps_per_epoch(self) -> int:
        return BatchBuilder.num_batches(
            len(self.split.train), self.cfg.train.batch_size, world_size=self.world_size
        )

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        """This rank's batches of ``epoch``: the same shuffle for a given (seed, epoch)."""
        return self.builder.iterate(
            self.split.train, self.cfg.train.batch_size, shuffle=True,
            seed=self.cfg.train.seed * 1_000_003 + epoch, rank=self.rank,
            world_size=self.world_size,
        )

    def histories(self, parts: tuple[str, ...]) -> UserHistories:
        """Each user's items in the given split parts, oldest first."""
        rows = np.concatenate([getattr(self.split, p) for p in parts])
        return UserHistories(*_columns(self.dataset), rows=rows, n_users=self.dataset.n_users)


def _columns(ds: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    inter = ds.interactions
    ts = inter[TIMESTAMP].to_numpy(np.int64) if TIMESTAMP in inter.columns else None
    return inter["user_idx"].to_numpy(), inter["item_idx"].to_numpy(), ts


def _retrieval_settings(cfg: Config, n_items: int) -> tuple[bool, int, str, float]:
    for t in cfg.tasks:
        if t.kind == "retrieval":
            full = t.full_softmax if t.full_softmax is not None else n_items <= FULL_SOFTMAX_MAX_ITEMS
            return full, t.negatives, t.sampler, t.alpha
    return False, 0, "uniform", 0.0


def make_train_data(cfg: Config, ds: Dataset, rank: int = 0, world_size: int = 1) -> TrainData:
    split = make_split(ds, cfg.data.split)
    if len(split.train) == 0:
        raise DataError(f"dataset {ds.name!r}: the split left no training interactions")
    if len(split.valid) == 0:
        raise DataError(
            f"dataset {ds.name!r}: the split left no validation interactions, needed to "
            "select the model (raise data.split.valid_ratio, or use leave_last_out)"
        )
    labels = task_labels(ds.interactions, cfg.tasks)
    stats = label_stats({k: v[split.train] for k, v in labels.items()})
    pipeline = FeaturePipeline(cfg.features).fit(ds, split.train)
    users = pipeline.transform_users(ds.users)
    items = pipeline.transform_items(ds.items)
    user_idx, item_idx, ts = _columns(ds)
    train_hist = UserHistories(user_idx, item_idx, ts, rows=split.train, n_users=ds.n_users)
    counts = np.bincount(item_idx[split.train], minlength=ds.n_items).astype(np.float64)
    full, negatives, sampler_kind, alpha = _retrieval_settings(cfg, ds.n_items)
    sampler = (
        (PopularitySampler(counts, alpha) if sampler_kind == "popularity" else UniformSampler(ds.n_items))
        if negatives > 0 else None
    )
    with np.errstate(divide="ignore"):
        log_prob = np.log(counts / counts.sum())
    builder = BatchBuilder(
        user_idx, item_idx, labels, users, items, histories=train_hist,
        history_len=cfg.model.sequence.max_len if cfg.model.sequence.kind != "none" else 1,
        negatives=negatives, sampler=sampler, item_log_prob=log_prob, full_catalogue=full,
    )
    return TrainData(
        cfg, ds, split, labels, stats, pipeline, users, items,
        pipeline.user_spec(), pipeline.item_spec(), builder, rank, world_size,
    )
