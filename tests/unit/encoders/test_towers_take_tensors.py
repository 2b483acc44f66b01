"""Towers take tensors, never files (issue 23): the language model is loaded, run and cached by the
feature stage (``features/text.py``, ``features/text_model.py``); the item tower is handed the text
vectors or token states, and the fine-tuned top layers, ready-made.

Two checks: no module of ``hydrarec/encoders`` reads a file, loads a model or touches the
environment (by its syntax tree), and an item tower with text, frozen and fine-tuned, is built and
trained a step in a fresh process where sentence-transformers cannot be imported and opening any
file fails.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import hydrarec.encoders

ENCODERS = Path(hydrarec.encoders.__file__).parent
# modules that reach files, models or the environment; hydrarec's own that do
BANNED_IMPORTS = ("os", "pathlib", "shutil", "tempfile", "io", "safetensors", "transformers",
                  "sentence_transformers", "huggingface_hub", "hydrarec.io", "hydrarec.run",
                  "hydrarec.features.text", "hydrarec.features.text_model",
                  "hydrarec.features.pipeline")  # fmt: skip
# calls that read or write a file or load a model, by function or method name
BANNED_CALLS = frozenset({"open", "read_text", "read_bytes", "write_text", "write_bytes", "load",
                          "load_file", "SentenceTransformer", "from_pretrained"})  # fmt: skip


def _violations(path: Path) -> list[str]:
    """``file:line what`` for each banned import, call or ``environ`` in the module at ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [f"import {a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"import {node.module}"]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            names = [f"call {name}("] if name in BANNED_CALLS else []
        elif isinstance(node, (ast.Attribute, ast.Name)):
            name = node.attr if isinstance(node, ast.Attribute) else node.id
            names = ["environ"] if name == "environ" else []
        for what in names:
            module = what.removeprefix("import ")
            banned = module != what and any(
                module == b or module.startswith(b + ".") for b in BANNED_IMPORTS
            )
            if banned or not what.startswith("import "):
                found.append(f"{path.name}:{getattr(node, 'lineno', 0)} {what}")
    return found


def test_no_encoder_module_reads_files_or_loads_the_language_model() -> None:
    modules = sorted(ENCODERS.glob("*.py"))
    assert {"towers.py", "text_tuning.py"} <= {p.name for p in modules}
    assert [v for p in modules for v in _violations(p)] == []


def test_the_check_catches_what_it_bans(tmp_path: Path) -> None:
    """The syntax check itself: each banned form is reported (the tower's old text loading)."""
    module = tmp_path / "towers.py"
    module.write_text(
        textwrap.dedent("""
        import os
        from sentence_transformers import SentenceTransformer
        from hydrarec.features.text_model import load_sentence_model
        def tower(path):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            model = SentenceTransformer(path)
            return open(path).read(), path.read_text(), np.load(path), model
    """)
    )
    assert sorted(v.split(" ", 1)[1] for v in _violations(module)) == sorted([
        "import os", "import sentence_transformers", "import hydrarec.features.text_model",
        "environ", "call SentenceTransformer(", "call open(", "call read_text(", "call load(",
    ])  # fmt: skip


SCRIPT = """
import builtins, io, pathlib, sys
sys.modules["sentence_transformers"] = None  # any import of it raises ImportError
sys.modules["transformers"] = None
import torch
from torch import nn
from hydrarec.config import ModelConfig, TextConfig
from hydrarec.encoders.text_tuning import TunedTextLayers
from hydrarec.encoders.towers import ItemTower
from hydrarec.features.batch import EntityFeatures, EntitySpec

class Layer(nn.Linear):  # a transformer layer's signature: (states, attention_mask)
    def forward(self, h, attention_mask=None):
        return super().forward(h)

def no_files(*args, **kwargs):
    raise AssertionError(f"a tower opened a file: {args[:1]}")

builtins.open = io.open = pathlib.Path.open = no_files
pathlib.Path.read_text = pathlib.Path.read_bytes = no_files
torch.manual_seed(0)
ids = torch.arange(2, 6)
for k in (0, 1):
    cfg = ModelConfig(dim=8, embedding_dim=4, tower_hidden=[8],
                      text=TextConfig(enabled=True, finetune_layers=k))
    if k:
        layers = TunedTextLayers(nn.ModuleList([Layer(6, 6)]), "mean", normalize=True)
        feats = EntityFeatures(ids=ids, text_states=torch.randn(4, 3, 6),
                               text_mask=torch.ones(4, 3, dtype=torch.bool))
    else:
        layers, feats = None, EntityFeatures(ids=ids, text=torch.randn(4, 6))
    tower = ItemTower(EntitySpec(n_ids=6, text_dim=6), cfg, layers)
    tower(feats).sum().backward()
    assert all(p.grad is not None for p in (layers or tower).parameters())
print("ok")
"""


def test_item_tower_with_text_needs_no_language_model_and_no_file() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_a_tuned_item_tower_is_handed_its_layers() -> None:
    from hydrarec.config import ModelConfig, TextConfig
    from hydrarec.encoders.towers import ItemTower
    from hydrarec.features.batch import EntitySpec

    cfg = ModelConfig(dim=8, text=TextConfig(enabled=True, finetune_layers=1))
    with pytest.raises(ValueError, match="needs text_layers exactly when"):
        ItemTower(EntitySpec(n_ids=6, text_dim=6), cfg)
