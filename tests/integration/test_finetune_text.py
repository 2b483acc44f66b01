"""A run that fine-tunes the last layer of MiniLM (issue 4, ``model.text.finetune_layers = 1``):
the tuned layer is saved with the run, reloading and ``add_items`` give the vectors of the end of
training, and cold and added items go through the tuned layer.

One small synthetic run of one epoch (4 steps) per module; the test that adds items copies it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from tests.integration.test_cold_start import text_config

from hydrarec.config import Config
from hydrarec.features.batch import EntitySpec
from hydrarec.features.text import TextEncoder
from hydrarec.features.text_model import DEFAULT_MODEL, load_sentence_model, resolve_model
from hydrarec.io.atomic import read_json, read_tensors
from hydrarec.io.progress import Progress
from hydrarec.recommend.recommender import Recommender
from hydrarec.run.build import build_model
from hydrarec.run.catalogue import add_items
from hydrarec.run.rundir import load_run
from hydrarec.training import checkpoint

PREFIX = "item_encoder.text_layers.layers.0."


def tuned_config(cache: Path) -> Config:
    """The cold-start tests' text config with the last MiniLM layer tuned, one epoch."""
    return text_config(  # type: ignore[no-any-return]
        cache,
        text={"finetune_layers": 1, "finetune_lr": 1e-4},
        train={"epochs": 1, "batch_size": 512},
    )


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hydrarec.run.train import train

    root = tmp_path_factory.mktemp("tuned")
    train(tuned_config(root / "cache"), root / "run", progress=Progress(enabled=False))
    return root / "run"


def vectors_from_checkpoint(run: Path) -> torch.Tensor:
    """Item vectors of the last training state (``checkpoints/last``, = the best after one
    epoch), on token states computed afresh from the raw items: nothing read from the run's
    saved weights or tables."""
    loaded = load_run(run)
    meta = loaded.meta
    model = build_model(loaded.config, EntitySpec.from_dict(meta["user_spec"]),
                        EntitySpec.from_dict(meta["item_spec"]),
                        {k: tuple(v) for k, v in meta["label_stats"].items()},
                        int(meta["n_items"]))  # fmt: skip
    model.load_state_dict(checkpoint.load_state(run / "checkpoints" / "last")["model"])
    items = loaded.items.gather(torch.arange(len(loaded.items)))
    raw = loaded.items_raw.assign(genres=loaded.items_raw["genres"].str.split("|"))
    TextEncoder(loaded.config.model.text, progress=False).add_to(items, raw)
    with torch.no_grad():
        return model.eval().encode_items(items)


def test_training_changes_the_tuned_layer_and_the_run_saves_it(tuned_run: Path) -> None:
    weights = read_tensors(tuned_run / "model.safetensors")
    minilm = load_sentence_model(str(resolve_model(DEFAULT_MODEL)), "cpu")
    pretrained = minilm[0].auto_model.encoder.layer[5].state_dict()  # the last of 6
    tuned = {k.removeprefix(PREFIX): v for k, v in weights.items() if k.startswith(PREFIX)}
    assert tuned.keys() == pretrained.keys()
    changed = [k for k, v in tuned.items() if not torch.equal(v, pretrained[k])]
    assert "attention.self.query.weight" in changed and "output.dense.weight" in changed
    assert read_json(tuned_run / "features" / "text.json")["finetune_layers"] == 1
    table = read_tensors(tuned_run / "features" / "items.safetensors")
    assert "text" not in table and table["text_states"].shape[::2] == (60, 384)


def test_reloaded_run_gives_the_vectors_of_the_end_of_training(tuned_run: Path) -> None:
    rec = Recommender.load(tuned_run)
    torch.testing.assert_close(rec.item_vectors, vectors_from_checkpoint(tuned_run),
                               atol=1e-5, rtol=0)  # fmt: skip


def test_cold_and_added_items_go_through_the_tuned_layer(tuned_run: Path, tmp_path: Path) -> None:
    """A cold item (never in training: OOV id) and its twin added after training (same text
    and genres, new id) get the same vector, which the untuned layer would not give."""
    run = Path(shutil.copytree(tuned_run, tmp_path / "run"))
    before = Recommender.load(run)
    inter = before.run.interactions
    cold = int(np.setdiff1d(inter["item_idx"], inter.loc[inter["split"] == "train", "item_idx"])[0])
    items = pd.read_parquet(run / "data" / "items.parquet")
    twin = items.iloc[[cold]].assign(item_id=10_000).reset_index(drop=True)
    added = add_items(run, twin, progress=False)
    after = Recommender.load(run)
    assert after.n_items == 61 and bool(after.run.items.ids[60] == 1)  # out of vocabulary
    torch.testing.assert_close(after.item_vectors[60], after.item_vectors[cold], atol=1e-5, rtol=0)
    torch.testing.assert_close(after.item_vectors[:60], before.item_vectors)
    untuned = _with_pretrained_layer(after)
    assert (untuned[cold] - after.item_vectors[cold]).abs().max() > 1e-4
    top, _ = after.recommend(list(after.run.user_ids.raw_ids[:3]), k=1, allow=added.ids)
    assert [list(t) for t in top] == [[10_000]] * 3


def _with_pretrained_layer(rec: Recommender) -> torch.Tensor:
    """Item vectors of ``rec`` with its tuned layer reset to MiniLM's own last layer."""
    minilm: Any = load_sentence_model(str(resolve_model(DEFAULT_MODEL)), "cpu")
    layers = rec.model.item_encoder.text_layers
    saved = {k: v.clone() for k, v in layers.state_dict().items()}
    layers.layers[0].load_state_dict(minilm[0].auto_model.encoder.layer[5].state_dict())
    with torch.no_grad():
        out = rec.model.encode_items(rec.run.items)
    layers.load_state_dict(saved)
    return out
