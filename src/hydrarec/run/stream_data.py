"""Training data read from Parquet row groups (``[data] streaming = true``).

The same ``TrainData`` the trainer and the validation use, with the train rows left on disk:

- the first pass (``data.tabular_stream.load_streaming``) fits the id vocabularies, the label
  statistics of every task and the items' train counts (for logQ and the popularity sampler),
  and loads the held-out rows, which become ``dataset.interactions``;
- the features are fitted on the users and items of the train rows, as in memory;
- each epoch is ``ParquetInteractions.epoch``: row groups in a seeded order through a shuffle
  buffer of ``data.buffer_rows`` rows, every train row once; under DDP each rank reads its own
  row groups (``steps_per_epoch`` global batches of about batch_size / W rows per rank).

What streaming supports: id + side-feature (+ text) towers, every task (labels are computed per
batch, rules included). Not: the sequence encoder (a row's history is the user's earlier items,
which needs each user's whole log in time order; ``model.sequence.kind`` must be "none", which
``Config`` checks). Validation and test rank each held-out item against the full catalogue
minus the user's other held-out items, but NOT minus the user's train items (those would need the
whole log in memory): ranking metrics of a streamed run are lower than an in-memory run's on the
same data and are not comparable with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hydrarec.config import Config, TaskConfig
from hydrarec.data.labels import task_labels
from hydrarec.data.streaming import Columns
from hydrarec.data.tabular_stream import StreamingSource, load_streaming
from hydrarec.features.batch import Batch
from hydrarec.features.batching import BatchBuilder
from hydrarec.features.pipeline import FeaturePipeline
from hydrarec.features.text import item_spec_with_text
from hydrarec.run.data import TrainData, epoch_seed, retrieval_sampling


class LabelStats:
    """(min, max, mean) of each pointwise task's train labels, accumulated group by group."""

    def __init__(self, tasks: list[TaskConfig]) -> None:
        self.tasks = tasks
        self.low: dict[str, float] = {}
        self.high: dict[str, float] = {}
        self.sum: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def observe(self, columns: Columns) -> None:
        for name, v in task_labels(pd.DataFrame(columns), self.tasks).items():
            v = v[~np.isnan(v)]
            if len(v):
                self.low[name] = min(self.low.get(name, np.inf), float(v.min()))
                self.high[name] = max(self.high.get(name, -np.inf), float(v.max()))
                self.sum[name] = self.sum.get(name, 0.0) + float(v.sum(dtype=np.float64))
                self.count[name] = self.count.get(name, 0) + len(v)

    def result(self) -> dict[str, tuple[float, float, float]]:
        """As ``labels.label_stats``: (0, 1, 0) for a task without labels."""
        names = [t.name for t in self.tasks if t.labelled]
        return {
            n: (self.low[n], self.high[n], self.sum[n] / self.count[n])
            if self.count.get(n)
            else (0.0, 1.0, 0.0)
            for n in names
        }


@dataclass
class StreamTrainData(TrainData):
    source: StreamingSource | None = None

    def _source(self) -> StreamingSource:
        assert self.source is not None
        return self.source

    @property
    def train_rows(self) -> int:
        return int(self._source().stream.n_rows_)

    @property
    def steps_per_epoch(self) -> int:
        return self._source().stream.steps(self.cfg.train.batch_size)

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        """This rank's batches of ``epoch``, read from the files (see the module doc)."""
        source, seed = self._source(), epoch_seed(self.cfg, epoch)
        names = source.stream.label_columns
        batches = source.stream.epoch(seed, self.cfg.train.batch_size, self.rank, self.world_size)
        for b, cols in enumerate(batches):
            labels = task_labels(pd.DataFrame({c: cols[c] for c in names}), self.cfg.tasks)
            self.builder.set_interactions(
                source.user_index[cols["user_idx"]], source.item_index[cols["item_idx"]], labels
            )
            rng = np.random.default_rng([seed, 1, b, self.rank]) if self.builder.negatives else None
            yield self.builder.build(np.arange(len(cols["user_idx"])), rng)


def make_stream_train_data(cfg: Config, rank: int = 0, world_size: int = 1) -> StreamTrainData:
    stats = LabelStats(cfg.tasks)
    source = load_streaming(cfg.data, stats.observe)
    ds = source.dataset
    labels = task_labels(ds.interactions, cfg.tasks)  # of the held-out rows
    pipeline = FeaturePipeline(cfg.features).fit_entities(
        ds, np.unique(source.user_index), np.unique(source.item_index)
    )
    users, items = pipeline.transform_users(ds.users), pipeline.transform_items(ds.items)
    item_spec = item_spec_with_text(cfg.model.text, pipeline.item_spec(), items, ds.items)
    none = np.empty(0, dtype=np.int64)
    builder = BatchBuilder(
        none,
        none,
        {name: np.empty(0, dtype=np.float32) for name in labels},
        users,
        items,
        **retrieval_sampling(cfg, ds.n_items, source.item_counts()),
    )
    return StreamTrainData(
        cfg,
        ds,
        source.split,
        labels,
        stats.result(),
        pipeline,
        users,
        items,
        pipeline.user_spec(),
        item_spec,
        builder,
        rank,
        world_size,
        source=source,
    )
