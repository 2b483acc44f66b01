"""Every architecture and every loss weighting trains end to end and records its weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tests.integration.tiny import tiny_raw

from hydrarec.config import config_from_dict
from hydrarec.experiment import train
from hydrarec.training.progress import Progress


@pytest.mark.parametrize(
    ("architecture", "weighting", "sequence"),
    [
        ("single", "static", "none"),
        ("shared_bottom", "uncertainty", "gru"),
        ("mmoe", "dwa", "lstm"),
        ("ple", "gradnorm", "transformer"),
        ("aitm", "static", "transformer"),
    ],
)
def test_trains_and_records_weights(
    tmp_path: Path, architecture: str, weighting: str, sequence: str
) -> None:
    raw = tiny_raw(epochs=3, patience=5)
    raw["model"]["architecture"]["name"] = architecture
    raw["model"]["sequence"]["kind"] = sequence
    raw["loss"] = {"weighting": weighting}
    run = train(config_from_dict(raw), tmp_path / "run", progress=Progress(enabled=False))
    assert all(math.isfinite(v) for v in run.metrics["test"].values())
    history = [json.loads(x) for x in (run.path / "history.jsonl").read_text().splitlines()]
    weights = [h["weights"] for h in history]
    assert all(set(w) == {"retrieval", "rating", "like", "genres"} for w in weights)
    if weighting == "static":
        assert weights[-1]["genres"] == pytest.approx(1.0)
    elif weighting == "dwa":
        # DWA: equal weights for the first two epochs, then set by the loss ratios (sum = K)
        assert weights[0] == pytest.approx(dict.fromkeys(weights[0], 1.0))
        assert sum(weights[2].values()) == pytest.approx(4.0, rel=1e-4)
        assert weights[2] != pytest.approx(weights[0])
    else:  # learned weights move away from their start
        assert weights[-1] != pytest.approx(weights[0], rel=1e-3)
