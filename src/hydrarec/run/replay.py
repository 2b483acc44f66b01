"""Training on new interactions with a replay sample of the old ones (``hydrarec update``).

An epoch is every unit (row, or training window with ``train.examples = "windows"``) that trains
a new interaction, plus ``replay`` old units drawn afresh each epoch without replacement: the
model keeps seeing the old data it was trained on, so it does not drift towards the new days
alone (experience replay against catastrophic forgetting; Rolnick et al., "Experience Replay for
Continual Learning", NeurIPS 2019), at a cost that grows with the new data, not with the old.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from hydrarec.features.batch import Batch
from hydrarec.features.batching import BatchBuilder
from hydrarec.run.data import TrainData, epoch_seed


def new_units(builder: BatchBuilder, units: np.ndarray, is_new: np.ndarray) -> np.ndarray:
    """(U,) bool: whether each unit trains a new interaction (``is_new``: per interaction row).

    A row is its own unit; a window is new when any of its targets is (its last ``stride``
    places, not before its user's first place; ``UserHistories.windows``).
    """
    units = np.asarray(units, dtype=np.int64)
    histories = builder.histories
    if builder.examples == "rows" or histories is None:
        return np.asarray(is_new, dtype=bool)[units]
    new_place = np.asarray(is_new, dtype=bool)[histories.rows]  # (M,) per place
    seen = np.concatenate([[0], np.cumsum(new_place)])  # new targets before each place
    user_start = histories.indptr[np.searchsorted(histories.indptr, units, side="right") - 1]
    first = np.maximum(user_start, units - builder.window_stride + 1)  # first target place
    return np.asarray(seen[units + 1] - seen[first] > 0, dtype=bool)


@dataclass
class ReplayData(TrainData):
    """``TrainData`` whose epochs are the new units and a fresh replay sample of the old ones."""

    fresh: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # new units
    old: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # old units
    replay: int = 0  # old units per epoch

    @property
    def steps_per_epoch(self) -> int:
        return BatchBuilder.num_batches(len(self.fresh) + self.replay, self.cfg.train.batch_size)

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        """The new units and ``replay`` old ones, shuffled together (same for a given seed)."""
        seed = epoch_seed(self.cfg, epoch)
        drawn = np.random.default_rng([seed, 2]).choice(self.old, self.replay, replace=False)
        units = np.concatenate([self.fresh, np.sort(drawn)])
        return self.builder.iterate(units, self.cfg.train.batch_size, shuffle=True, seed=seed)
