"""Every architecture and every loss weighting trains end to end and records its weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tests.integration.tiny import tiny_raw

from hydrarec.config import config_from_dict
from hydrarec.io.progress import Progress
from hydrarec.run.train import train


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


def test_pair_input_without_the_product_trains_and_reranks_factored(tmp_path: Path) -> None:
    """``model.pair_input = "concat"``: the architecture reads [user, item] (2D wide); stage two's
    factored pairs give what the plain input gives, and the run loads back as trained."""
    import torch

    from hydrarec.recommend.rerank import ItemSideCache, predict_candidates
    from hydrarec.run.rundir import load_run

    raw = tiny_raw(epochs=2, patience=5)
    raw["model"]["architecture"]["name"] = "mmoe"
    raw["model"]["pair_input"] = "concat"
    run = train(config_from_dict(raw), tmp_path / "run", progress=Progress(enabled=False))
    assert all(math.isfinite(v) for v in run.metrics["test"].values())
    model = load_run(run.path).model.eval()
    d = raw["model"]["dim"]
    assert model.architecture.in_dim == 2 * d
    gen = torch.Generator().manual_seed(0)
    table, user = torch.randn(9, d, generator=gen), torch.randn(3, d, generator=gen)
    cand = torch.randint(0, 9, (3, 4), generator=gen)
    got = predict_candidates(model, user, cand, ItemSideCache(table))
    flat_user = user[:, None, :].expand(3, 4, d).reshape(12, d)
    want = model.predict_pairs(flat_user, table[cand].reshape(12, d))
    assert set(got) == set(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-5)
