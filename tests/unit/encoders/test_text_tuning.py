"""Fine-tuning the last k layers of the text encoder (issue 4): the frozen prefix's token states
and their cache, the trainable copy of the last layers, and the optimizer group it trains in.

The real all-MiniLM-L6-v2 (6 layers, hidden size 384, mean pooling, normalised) on a few texts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from hydrarec.config import LossConfig, ModelConfig, TextConfig, TrainConfig, config_from_dict
from hydrarec.encoders import text_tuning
from hydrarec.encoders.text_tuning import TunedTextLayers
from hydrarec.encoders.towers import ItemTower
from hydrarec.errors import ConfigError, RunError
from hydrarec.features import text as text_mod
from hydrarec.features.batch import EntityFeatures, EntitySpec
from hydrarec.features.text import TextEncoder
from hydrarec.features.text_model import (
    DEFAULT_MODEL,
    load_sentence_model,
    resolve_model,
    top_layers,
)
from hydrarec.tasks.joint import JointLoss
from hydrarec.training.optim import model_param_groups
from hydrarec.training.trainer import Trainer

CPU = torch.device("cpu")
TEXTS = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy",
    "Heat",
    "Sense and Sensibility (1995). Genres: Drama, Romance",
    "GoldenEye (1995). Genres: Action, Adventure, Thriller",
]


@pytest.fixture(scope="module")
def minilm() -> Any:
    return load_sentence_model(str(resolve_model(DEFAULT_MODEL)), "cpu")


def text_cfg(tmp_path: Path, **cfg: Any) -> TextConfig:
    return TextConfig(enabled=True, cache_dir=str(tmp_path / "cache"), **cfg)


def encoder(tmp_path: Path, **cfg: Any) -> TextEncoder:
    return TextEncoder(text_cfg(tmp_path, **cfg), progress=False, device="cpu")


def tuned_text_layers(cfg: TextConfig) -> TunedTextLayers:
    """What the run assembly hands the item tower: the feature stage's copy of the top layers."""
    init = top_layers(cfg)
    return TunedTextLayers(init.layers, init.pooling, init.normalize)


def tensors(states: np.ndarray, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.array(states)), torch.from_numpy(np.array(mask))


@pytest.mark.parametrize(("k", "group"), [(1, 256), (2, 3)])
def test_untouched_layers_give_the_frozen_vector(
    minilm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, k: int, group: int
) -> None:
    """``group`` 3: the 4 items run as two length groups, [Heat, GoldenEye, Sense] + [Toy]."""
    monkeypatch.setattr(text_tuning, "GROUP", group)
    enc = encoder(tmp_path, finetune_layers=k, batch_size=3)  # batches of 3 + 1, padded apart
    states, mask = tensors(*enc.encode_states(TEXTS))
    assert states.shape[0] == 4 and states.shape[2] == 384 and mask.shape == states.shape[:2]
    assert mask[1].sum() == 3  # "Heat": [CLS] heat [SEP]
    layers = tuned_text_layers(enc.cfg).eval()
    want = minilm.encode(TEXTS, convert_to_numpy=True)  # embeddings, 6 layers, mean, normalise
    with torch.no_grad():
        got = layers(states, mask).numpy()
        alone = layers(states[1:2], mask[1:2]).numpy()  # cut to its own 3 tokens
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(alone, want[1:2], atol=1e-5)


def test_the_copy_trains_and_leaves_the_shared_model_alone(minilm: Any, tmp_path: Path) -> None:
    layers = tuned_text_layers(encoder(tmp_path, finetune_layers=2).cfg)
    assert len(layers.layers) == 2 and layers.pooling == "mean" and layers.normalize
    last = minilm[0].auto_model.encoder.layer[5]
    assert all(p.requires_grad for p in layers.parameters())
    torch.testing.assert_close(layers.layers[1].output.dense.weight, last.output.dense.weight)
    with torch.no_grad():
        layers.layers[1].output.dense.weight.add_(1.0)
    assert not torch.equal(layers.layers[1].output.dense.weight, last.output.dense.weight)


def test_training_the_last_layer_learns_a_planted_pairing(tmp_path: Path) -> None:
    """Planted task: the pooled vectors of texts 0 and 1 should agree (loss = 1 - cosine). Only
    the last layer trains; two AdamW steps at 1e-3 must lower the loss and change the weights."""
    enc = encoder(tmp_path, finetune_layers=1)
    states, mask = tensors(*enc.encode_states(TEXTS[:2]))
    layers = tuned_text_layers(enc.cfg)
    before = {k: v.clone() for k, v in layers.state_dict().items()}

    def loss() -> torch.Tensor:
        v = layers(states, mask)  # (2, 384), unit norm
        return 1 - (v[0] * v[1]).sum()

    def eval_loss() -> float:  # without dropout
        layers.eval()
        with torch.no_grad():
            value = float(loss())
        layers.train()
        return value

    start = eval_loss()
    torch.manual_seed(0)  # the dropout inside the layer, on while training
    opt = torch.optim.AdamW(layers.parameters(), lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        loss().backward()
        opt.step()
    end = eval_loss()
    assert end < start - 0.05, (start, end)
    changed = {k for k, v in layers.state_dict().items() if not torch.equal(v, before[k])}
    assert {"layers.0.attention.self.query.weight", "layers.0.output.dense.weight"} <= changed


def test_states_are_cached_with_k_in_the_key(
    minilm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = encoder(tmp_path, finetune_layers=1)
    s1, m1 = first.encode_states(TEXTS)
    assert first.texts_encoded == 4
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2  # states + mask

    def no_model(*args: object) -> None:
        raise AssertionError("a cache hit must not load the model")

    with monkeypatch.context() as m:
        m.setattr(text_mod, "load_sentence_model", no_model)
        again = encoder(tmp_path, finetune_layers=1)
        s2, m2 = again.encode_states(TEXTS)
        assert again.texts_encoded == 0 and isinstance(s2, np.memmap)
        assert np.array_equal(s1, s2) and np.array_equal(m1, m2) and m2.dtype == bool
    other = encoder(tmp_path, finetune_layers=2)
    other.encode_states(TEXTS)
    assert other.texts_encoded == 4  # other layers, other states
    encoder(tmp_path, finetune_layers=2).encode(TEXTS)  # the frozen vectors: a key of their own
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 5


def test_bad_finetune_settings_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^model\.text\.finetune_layers = 7: the model has 6 "
                       r"transformer layers; allowed: 0 \(frozen\) to 6$"):  # fmt: skip
        encoder(tmp_path, finetune_layers=7)
    task = {"name": "rating", "kind": "rating", "column": "rating"}
    for field, value in (("finetune_layers", -1), ("finetune_lr", 0.0)):
        raw = {"model": {"text": {field: value}}, "tasks": [task]}
        with pytest.raises(ConfigError, match=rf"model\.text\.{field}: Input should be greater"):
            config_from_dict(raw)


def test_run_state_records_the_tuned_layers(tmp_path: Path) -> None:
    tuned, frozen = encoder(tmp_path, finetune_layers=1), encoder(tmp_path)
    assert tuned.state(384)["finetune_layers"] == 1
    tuned.check_state(tuned.state(384), "text.json")
    frozen.check_state({k: v for k, v in frozen.state(384).items() if k != "finetune_layers"},
                       "text.json")  # a run from before fine-tuning existed  # fmt: skip
    with pytest.raises(RunError, match="different finetune_layers"):
        frozen.check_state(tuned.state(384), "text.json")


def test_item_tower_reads_states_and_trains_its_layers_at_their_own_lr(tmp_path: Path) -> None:
    def tower(k: int) -> tuple[ItemTower, EntityFeatures]:
        text = text_cfg(tmp_path, finetune_layers=k, finetune_lr=1e-5)
        feats = EntityFeatures(ids=torch.arange(2, 6))
        width = TextEncoder(text, progress=False).add_to(feats, pd.DataFrame({"title": TEXTS}))
        cfg = ModelConfig(dim=8, embedding_dim=4, tower_hidden=[8], text=text)
        layers = tuned_text_layers(text) if k else None
        return ItemTower(EntitySpec(n_ids=6, text_dim=width), cfg, layers), feats

    torch.manual_seed(0)
    tuned, states = tower(1)
    frozen, vectors = tower(0)
    assert states.text is None and states.text_states is not None and vectors.text is not None
    missing = frozen.load_state_dict(tuned.state_dict(), strict=False).unexpected_keys
    assert missing and all(k.startswith("text_layers.") for k in missing)
    with torch.no_grad():  # untouched layers: the same item vectors as the frozen text path
        torch.testing.assert_close(tuned.eval()(states), frozen.eval()(vectors), atol=1e-5, rtol=0)
    assert model_param_groups(frozen, 0.1) == []
    (group,) = model_param_groups(tuned, 0.1)
    assert (group["name"], group["lr"], group["weight_decay"]) == ("text_layers", 1e-5, 0.1)
    assert [id(p) for p in group["params"]] == [id(p) for p in tuned.text_layers.parameters()]
    train = TrainConfig(lr=3e-3, weight_decay=0.1)
    trainer = Trainer(tuned, JointLoss(["t"], LossConfig(), {"t": 1.0}), train, device=CPU)
    default, layers = trainer.optimizer.param_groups  # every other parameter, then the layers
    assert (default["lr"], layers["lr"], layers["weight_decay"]) == (3e-3, 1e-5, 0.1)
    assert len(default["params"]) + len(layers["params"]) == len(list(tuned.parameters()))
