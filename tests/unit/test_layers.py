"""The folders follow the data path (README, "Layout"): a module imports only from the stages
before its own in ``ORDER``, and no module but the entry points and the shared vocabulary lives
outside a stage folder (issue 23). Lazy imports inside functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hydrarec

PKG = Path(hydrarec.__file__).parent
# a stage imports only from stages before it; errors/config are the vocabulary of all
ORDER = [
    "errors", "settings", "config", "io", "data", "features", "encoders", "architectures",
    "tasks", "model", "training", "evaluation", "retrieval", "run", "recommend", "online",
    "serving", "report", "tuning", "scaffold", "cli", "__main__",
]  # fmt: skip
TOP_LEVEL = {"__init__", "__main__", "cli", "config", "errors"}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "hydrarec"


def _imports(path: Path, module: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("hydrarec.") and _stage(m) != _stage(module)}


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def test_every_module_lives_in_a_stage_folder() -> None:
    loose = sorted(p.stem for p in PKG.glob("*.py") if p.stem not in TOP_LEVEL)
    assert loose == [], f"modules outside a stage folder: {loose}"
    folders = {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert folders <= set(ORDER), f"stage folders missing from ORDER: {folders - set(ORDER)}"


@pytest.mark.parametrize("module", sorted(_modules()))
def test_imports_run_up_the_stage_order(module: str) -> None:
    here = _stage(module)
    if here == "hydrarec":  # the package's lazy public API may name any stage
        return
    wrong = sorted(
        m for m in _imports(_modules()[module], module)
        if _stage(m) in ORDER and ORDER.index(_stage(m)) > ORDER.index(here)
    )  # fmt: skip
    assert wrong == [], f"{module} ({here}) imports later stages: {wrong}"
