"""hydrarec: multi-task representation learning for recommender systems.

from hydrarec import load_config, train, evaluate, Recommender, add_items, update, tune
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# The public API, imported on first use so that `import hydrarec` (and `hydrarec --version`)
# stays light.
_API = {
    "load_config": "hydrarec.config",
    "train": "hydrarec.run.train",
    "evaluate": "hydrarec.run.evaluate",
    "Recommender": "hydrarec.recommend.recommender",
    "add_items": "hydrarec.run.catalogue",
    "tune": "hydrarec.tuning",  # the `tune` extra (optuna)
    "update": "hydrarec.online.update",
}

__all__ = [
    "Recommender",
    "__version__",
    "add_items",
    "evaluate",
    "load_config",
    "train",
    "tune",
    "update",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'hydrarec' has no attribute {name!r}")
