"""Building a run's item index shows the items encoded (issue 22: a catalogue of millions of
items is minutes of work), in steps, and the index is the one a one-pass encoding gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from tests.progress_recording import Recording

from hydrarec.evaluation.evaluate import encode_items
from hydrarec.run import index as build
from hydrarec.run.rundir import load_run


def test_index_building_counts_the_items_it_encodes(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_run(shutil.copytree(tiny_run, tmp_path / "run"))
    n = len(loaded.items)
    monkeypatch.setattr(build, "ENCODE_STEP", 7)
    recording = Recording()
    with recording.task("adding items", 1):  # the bar around it, as add-items opens one
        index = build.build_index(loaded)
    total, counts = recording.bars["indexing items"]
    assert total == n and counts == [min(n, 7 * (k + 1)) for k in range(-(-n // 7))]
    whole = encode_items(loaded.model, loaded.items, torch.device("cpu"))  # (I, D) one pass
    want = build.index_from_vectors(loaded.config.recommend.index, whole)
    queries = whole[:4]
    got_ids, got_scores = index.search(queries, 5)
    want_ids, want_scores = want.search(queries, 5)
    assert (got_ids == want_ids).all()
    torch.testing.assert_close(torch.as_tensor(got_scores), torch.as_tensor(want_scores))
