"""The metric names the config checks ``train.monitor`` against (``config.validation_metrics``)
are those a trained run's validation wrote (issue 21: an unknown monitor used to stop training at
its first validation)."""

from __future__ import annotations

from pathlib import Path

from hydrarec.config import load_config, validation_metrics
from hydrarec.io.atomic import read_json


def test_validation_metrics_are_the_ones_a_run_records(tiny_run: Path) -> None:
    cfg = load_config(tiny_run / "config.toml")
    kinds = {t.kind for t in cfg.tasks}
    assert kinds == {"retrieval", "rating", "binary", "reconstruction"}
    assert validation_metrics(cfg) == list(read_json(tiny_run / "metrics.json")["valid"])
