"""End-to-end training: the run directory, determinism, resume, interruption, learning."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.integration.tiny import tiny_config, tiny_raw, train_until

from hydrarec.config import config_from_dict
from hydrarec.data.registry import load_dataset
from hydrarec.errors import ConfigError, DataError, RunError
from hydrarec.io.atomic import read_tensors
from hydrarec.io.progress import Progress
from hydrarec.run.evaluate import evaluate
from hydrarec.run.rundir import load_run
from hydrarec.run.train import train
from hydrarec.training import checkpoint

QUIET = Progress(enabled=False)


def test_run_directory_has_every_artefact(tiny_run: Path) -> None:
    for name in (
        "config.toml",
        "model.safetensors",
        "model.json",
        "metrics.json",
        "history.jsonl",
        "features/features.json",
        "checkpoints/last.safetensors",
    ):
        assert (tiny_run / name).is_file(), name
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    for split in ("valid", "test"):
        keys = metrics[split]
        assert {"rating/rmse", "like/auc", "retrieval/ndcg@10", "genres/loss"} <= set(keys)
        assert all(math.isfinite(v) for v in keys.values())
    history = [json.loads(line) for line in (tiny_run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]
    assert set(history[0]["train_loss"]) == {"retrieval", "rating", "like", "genres", "total"}
    assert set(history[0]["weights"]) == {"retrieval", "rating", "like", "genres"}


def test_no_pickle_in_run(tiny_run: Path) -> None:
    """Every file of a run is plain data: JSON, TOML, safetensors, Parquet, text."""
    allowed = {
        ".json",
        ".toml",
        ".safetensors",
        ".parquet",
        ".jsonl",
        ".txt",
        ".html",
        ".png",
        ".md",
        ".npy",
        ".faiss",
        ".index",
    }
    for p in tiny_run.rglob("*"):
        if p.is_file():
            assert p.suffix in allowed, p
            if p.suffix not in (".safetensors", ".parquet", ".png", ".npy"):  # binary formats
                assert not p.read_bytes().startswith(b"\x80"), f"{p} looks like a pickle"


def test_evaluate_matches_metrics_json(tiny_run: Path) -> None:
    stored = json.loads((tiny_run / "metrics.json").read_text())["test"]
    again = evaluate(tiny_run, "test")
    assert again == pytest.approx(stored, rel=1e-5)


def test_same_seed_same_model(tmp_path: Path) -> None:
    a = train(tiny_config(epochs=1), tmp_path / "a", progress=QUIET)
    b = train(tiny_config(epochs=1), tmp_path / "b", progress=QUIET)
    wa, wb = read_tensors(a.path / "model.safetensors"), read_tensors(b.path / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)
    assert a.metrics["test"] == b.metrics["test"]


def test_background_batches_train_the_same_model(tmp_path: Path) -> None:
    """``train.prefetch``: assembling batches in a thread changes nothing but the speed."""
    a = train(tiny_config(epochs=2, prefetch=0), tmp_path / "a", progress=QUIET)
    b = train(tiny_config(epochs=2, prefetch=3), tmp_path / "b", progress=QUIET)
    wa, wb = read_tensors(a.path / "model.safetensors"), read_tensors(b.path / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)
    assert a.metrics["test"] == b.metrics["test"]


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    full = train(tiny_config(epochs=3, patience=10), tmp_path / "full", progress=QUIET)

    # interrupt after epoch 2 (as Ctrl-C would), then resume to the end
    train_until(tiny_config(epochs=3, patience=10), tmp_path / "cut", epoch=2)
    # the killed training is in cut.partial (swapped in at cut once complete): its last good one
    assert checkpoint.load_state(tmp_path / "cut.partial/checkpoints/last")["loop"]["epoch"] == 2
    resumed = train(
        tiny_config(epochs=3, patience=10), tmp_path / "cut", resume=True, progress=QUIET
    )
    wf = read_tensors(full.path / "model.safetensors")
    wr = read_tensors(resumed.path / "model.safetensors")
    for k in wf:
        torch.testing.assert_close(wf[k], wr[k], rtol=0, atol=1e-6)
    assert resumed.metrics["test"] == pytest.approx(full.metrics["test"], abs=1e-6)


def test_resume_from_a_checkpoint_that_does_not_fit_is_a_clear_error(tmp_path: Path) -> None:
    """Another model config, or a damaged file: a RunError naming the checkpoint, never a
    traceback from load_state_dict and never a resume from what it holds (issue 21)."""
    train_until(tiny_config(epochs=2), tmp_path / "r", epoch=1)
    saved = tmp_path / "r.partial/checkpoints/last.safetensors"
    raw = tiny_raw(epochs=2)
    raw["model"]["dim"] = 24
    with pytest.raises(RunError, match=f"{saved}: does not fit this run's model and training"):
        train(config_from_dict(raw), tmp_path / "r", resume=True, progress=QUIET)
    data = bytearray(saved.read_bytes())
    data[-1] ^= 0xFF
    saved.write_bytes(bytes(data))
    with pytest.raises(RunError, match=f"{saved}: the SHA-256 .* damaged or edited"):
        train(tiny_config(epochs=2), tmp_path / "r", resume=True, progress=QUIET)


def test_learns_planted_signal(tmp_path: Path) -> None:
    """On synthetic data with planted factors the model beats chance and popularity."""
    raw = tiny_raw(epochs=8, patience=8)
    raw["data"]["synthetic"] = {"n_users": 300, "n_items": 100, "n_interactions": 9000, "seed": 3}
    cfg = config_from_dict(raw)
    run = train(cfg, tmp_path / "r", progress=QUIET)
    test = run.metrics["test"]
    assert test["like/auc"] > 0.7
    # most-popular baseline under the same full-ranking protocol
    ds = load_dataset(cfg.data)
    loaded = load_run(run.path)
    inter = loaded.interactions
    train_rows = inter[inter["split"] == "train"]
    popularity = np.bincount(train_rows["item_idx"], minlength=ds.n_items)
    pop_hits = []
    for u, target in inter[inter["split"] == "test"][["user_idx", "item_idx"]].to_numpy():
        seen = set(inter[(inter["user_idx"] == u) & (inter["split"] != "test")]["item_idx"])
        ranked = [i for i in np.argsort(-popularity, kind="stable") if i not in seen]
        pop_hits.append(target in ranked[:10])
    assert test["retrieval/hr@10"] > float(np.mean(pop_hits)) + 0.05


def test_validation_loss_falls(tiny_run: Path) -> None:
    history = [json.loads(line) for line in (tiny_run / "history.jsonl").read_text().splitlines()]
    assert history[-1]["train_loss"]["total"] < history[0]["train_loss"]["total"]


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"tasks": [{"name": "x", "kind": "binary", "column": "nope"}]}, "column 'nope'"),
        ({"tasks": [{"name": "x", "kind": "ranking"}]}, "tasks.0.kind"),
        ({"model": {"architecture": {"name": "moe"}}}, "model.architecture.name"),
        ({"tasks": [{"name": "x", "kind": "binary", "column": "rating"}]}, "binary label"),
        ({"tasks": [{"name": "x", "kind": "reconstruction", "feature": "nope"}]}, "'nope'"),
    ],
)
def test_bad_config_errors_name_the_problem(tmp_path: Path, patch: dict, message: str) -> None:
    raw = tiny_raw(epochs=1)
    raw.update(patch)
    if "tasks" in patch:  # the blend names the tiny config's tasks, which the patch replaced
        raw.pop("recommend", None)
    with pytest.raises((ConfigError, DataError)) as err:
        train(config_from_dict(raw), tmp_path / "r", progress=QUIET)
    assert message in str(err.value)


def test_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="not a hydrarec run"):
        load_run(tmp_path)
    with pytest.raises(RunError, match="not found"):
        load_run(tmp_path / "missing")


def test_ctrl_c_mid_epoch_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    import hydrarec.run.train as run_train

    original = run_train.Trainer._step
    calls = {"n": 0}

    def step_then_interrupt(self, batch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if self.state.epoch == 1 and calls["n"] > 3:  # in the middle of epoch 2
            raise KeyboardInterrupt
        return original(self, batch)

    run_train.Trainer._step = step_then_interrupt  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            train(tiny_config(epochs=3), tmp_path / "r", progress=QUIET)
    finally:
        run_train.Trainer._step = original  # type: ignore[method-assign]
    partial = tmp_path / "r.partial"  # the run being trained (swapped in when complete)
    state = checkpoint.load_state(partial / "checkpoints/last")
    assert state["loop"]["epoch"] == 1
    assert not list(partial.rglob("*.tmp")), "no half-written file is left"
    assert read_tensors(partial / "model.safetensors")  # the best model so far is intact
    assert not (tmp_path / "r/model.safetensors").exists()  # no run at r before it is complete
