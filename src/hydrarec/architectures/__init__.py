"""Multi-task architectures: ``x (B, in_dim)`` -> one ``(B, out_dim)`` vector per task.

An explicit registry (after torch-rechub's ``models/multi_task/__init__.py``): adding an
architecture is one file, its name in ``config.ArchitectureName`` and its class here;
``tests/contracts/test_architectures.py`` then runs the shared contract suite on it.
"""

from __future__ import annotations

from typing import get_args

from hydrarec.architectures.aitm import AITM
from hydrarec.architectures.layers import Architecture, mlp
from hydrarec.architectures.mmoe import MMoE
from hydrarec.architectures.ple import PLE
from hydrarec.architectures.shared_bottom import SharedBottom
from hydrarec.architectures.single import SingleTask
from hydrarec.config import ArchitectureConfig, ArchitectureName
from hydrarec.errors import ConfigError

# model.architecture.name -> class: the names of config.ArchitectureName, each with its class
ARCHITECTURES: dict[str, type[Architecture]] = dict(
    zip(get_args(ArchitectureName), (SingleTask, SharedBottom, MMoE, PLE, AITM), strict=True)
)


def build_architecture(cfg: ArchitectureConfig, in_dim: int, n_tasks: int) -> Architecture:
    """The architecture named by ``cfg.name``, reading ``in_dim`` features, for ``n_tasks``."""
    if cfg.name not in ARCHITECTURES:
        allowed = ", ".join(ARCHITECTURES)
        raise ConfigError(f"model.architecture.name: unknown {cfg.name!r} (allowed: {allowed})")
    return ARCHITECTURES[cfg.name](in_dim, n_tasks, cfg)


__all__ = [
    "AITM",
    "ARCHITECTURES",
    "PLE",
    "Architecture",
    "MMoE",
    "SharedBottom",
    "SingleTask",
    "build_architecture",
    "mlp",
]
