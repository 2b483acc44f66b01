"""Hyper-parameter search on Optuna (issue 24): ``hydrarec tune`` and ``hydrarec.tune``.

Named ``tuning``, not ``tune``: ``hydrarec.tune`` is the function, and importing a subpackage
of that name would rebind ``hydrarec.tune`` to the package.
"""

from __future__ import annotations

from hydrarec.tuning.space import Space, load_space
from hydrarec.tuning.study import TuneResult, tune

__all__ = ["Space", "TuneResult", "load_space", "tune"]
