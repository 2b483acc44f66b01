"""Tasks know no loop and no evaluator (issue 23): no module of ``hydrarec/tasks/`` imports from
``hydrarec.training`` or ``hydrarec.evaluation``, at module level or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hydrarec.tasks

TASKS_DIR = Path(hydrarec.tasks.__file__).parent
ABOVE_TASKS = ("hydrarec.training", "hydrarec.evaluation")


def imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports, wherever the import statement stands (relative imports
    resolved against the tasks package)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x / from .x import y
                package = "hydrarec.tasks".rsplit(".", node.level - 1)[0]
                base = f"{package}.{base}" if base else package
            names.append(base)
            names.extend(f"{base}.{alias.name}" for alias in node.names)
    return names


def imports_above(path: Path) -> list[str]:
    return [
        name
        for name in imported_modules(path)
        if any(name == up or name.startswith(up + ".") for up in ABOVE_TASKS)
    ]


@pytest.mark.parametrize("path", sorted(TASKS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_no_task_module_imports_training_or_evaluation(path: Path) -> None:
    assert imports_above(path) == []


def test_the_check_sees_lazy_and_from_imports(tmp_path: Path) -> None:
    """The check itself: what the tasks did before issue 23 is caught."""
    source = tmp_path / "old.py"
    source.write_text(
        "from hydrarec.training.distributed import keep\n"
        "def metrics():\n"
        "    from hydrarec.evaluation import metrics as m\n"
        "    import hydrarec.training\n"
    )
    assert sorted(imports_above(source)) == [
        "hydrarec.evaluation",
        "hydrarec.evaluation.metrics",
        "hydrarec.training",
        "hydrarec.training.distributed",
        "hydrarec.training.distributed.keep",
    ]
