"""``train.refit``: select on valid in RUN/selection, then train again on train + valid."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from tests.integration.tiny import tiny_config, train_until

from hydrarec.config import LossConfig, TrainConfig
from hydrarec.errors import ConfigError
from hydrarec.io.atomic import read_tensors
from hydrarec.io.progress import Progress
from hydrarec.recommend.recommender import Recommender
from hydrarec.run.evaluate import evaluate
from hydrarec.run.train import Run, train
from hydrarec.tasks.joint import JointLoss
from hydrarec.training.trainer import Trainer

QUIET = Progress(enabled=False)


def history(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines()]


def pairs(path: Path, *splits: str) -> set[tuple[int, int, int]]:
    inter = pd.read_parquet(path / "data/interactions.parquet")
    rows = inter[inter["split"].isin(splits)]
    return set(zip(rows["user_idx"], rows["item_idx"], rows["order"], strict=True))


@pytest.fixture(scope="module")
def refit_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("refit") / "run"
    return train(tiny_config(epochs=3, patience=3, refit=True), out, progress=QUIET)


def test_selection_run_never_reads_test(refit_run: Run) -> None:
    selection = json.loads((refit_run.path / "selection/metrics.json").read_text())
    assert set(selection) == {"valid", "train"}
    assert refit_run.metrics["valid"] == selection["valid"]  # the selected model's
    assert set(refit_run.metrics["test"]) == set(selection["valid"])
    assert refit_run.metrics["train"]["refit"] is True


def test_refit_trains_on_train_and_valid_for_the_selected_epochs(refit_run: Run) -> None:
    sel = refit_run.path / "selection"
    best = json.loads((sel / "metrics.json").read_text())["train"]["best_epoch"]
    assert pairs(refit_run.path, "train") == pairs(sel, "train", "valid")
    assert pairs(refit_run.path, "valid") == set()
    assert pairs(refit_run.path, "test") == pairs(sel, "test")
    refit = history(refit_run.path)
    assert [h["epoch"] for h in refit] == list(range(1, best + 1))
    assert all("valid" not in h for h in refit)
    assert refit_run.metrics["train"]["epochs"] == best
    # the same schedule over train.epochs: the last epoch's lr is within rounding of the
    # selection's at that epoch (a refit epoch has more steps: train + valid)
    assert refit[-1]["lr"] == pytest.approx(history(sel)[best - 1]["lr"], rel=0.05)
    seconds = refit_run.metrics["train"]
    assert seconds["seconds"] == pytest.approx(
        seconds["selection_seconds"] + seconds["refit_seconds"], abs=0.02
    )


def test_refit_run_is_a_whole_run(refit_run: Run) -> None:
    assert evaluate(refit_run.path, "test") == pytest.approx(refit_run.metrics["test"], rel=1e-5)
    with pytest.raises(ConfigError, match="refit on train \\+ valid"):
        evaluate(refit_run.path, "valid")
    rec = Recommender.load(refit_run.path)
    ids, _ = rec.recommend([rec.run.user_ids.raw_ids[0]], k=5)
    assert ids.shape == (1, 5)


def test_leaving_test_unread_with_a_refit_says_how_to_compare_on_valid(tmp_path: Path) -> None:
    # configs/beauty.toml ships the refit: --no-test on it must say what to do, and train nothing
    with pytest.raises(ConfigError, match=r"cannot skip test.*--set train\.refit=false"):
        train(tiny_config(refit=True), tmp_path / "run", progress=QUIET, test=False)
    assert not any(tmp_path.iterdir())  # refused before a run directory or its staging exists


def test_resume_through_a_refit_equals_uninterrupted(refit_run: Run, tmp_path: Path) -> None:
    cfg = tiny_config(epochs=3, patience=3, refit=True)
    train_until(cfg, tmp_path / "cut", epoch=2)  # in the selection run
    resumed = train(cfg, tmp_path / "cut", resume=True, progress=QUIET)
    wf = read_tensors(refit_run.path / "model.safetensors")
    wr = read_tensors(resumed.path / "model.safetensors")
    for k in wf:
        torch.testing.assert_close(wf[k], wr[k], rtol=0, atol=1e-6)
    assert resumed.metrics["test"] == pytest.approx(refit_run.metrics["test"], abs=1e-6)


class ToyBatch:
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def to(self, device: torch.device) -> ToyBatch:
        return self


class Toy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)

    def losses(self, batch: ToyBatch) -> dict[str, torch.Tensor]:
        return {"y": ((self.lin(batch.x).squeeze(-1) - batch.y) ** 2).mean()}


def toy_fit(validate: bool, epochs: int | None) -> tuple[list[dict], list[int]]:
    torch.manual_seed(0)
    x = torch.randn(4, 16, 3)
    y = x.sum(-1)
    cfg = TrainConfig(epochs=4, lr=0.05, warmup=0.25, patience=10)
    best: list[int] = []
    trainer = Trainer(
        Toy(),
        JointLoss(["y"], LossConfig(), {"y": 1.0}),
        cfg,
        device=torch.device("cpu"),
        on_best=lambda m, e: best.append(e),
        progress=QUIET,
    )
    result = trainer.fit(
        lambda epoch: (ToyBatch(x[s], y[s]) for s in range(4)),
        4,
        (lambda m: {"y/loss": 1.0 / trainer.state.step}) if validate else None,
        "y/loss",
        "min",
        epochs=epochs,
    )
    return result.history, best


def test_trainer_refit_is_the_first_epochs_of_the_same_schedule() -> None:
    full, _ = toy_fit(validate=True, epochs=None)
    part, best = toy_fit(validate=False, epochs=2)
    assert [h["epoch"] for h in part] == [1, 2]
    assert best == [2]  # the final weights, kept once
    for a, b in zip(part, full[:2], strict=True):  # same steps, same lr, same losses
        assert a["lr"] == b["lr"]
        assert a["train_loss"] == b["train_loss"]
    assert full[1]["lr"] > full[3]["lr"]  # the cosine had not ended at epoch 2


def test_trainer_refit_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match=r"epochs must be in 1\.\.4"):
        toy_fit(validate=False, epochs=5)
    with pytest.raises(ValueError, match="not both"):
        toy_fit(validate=True, epochs=2)
    with pytest.raises(ValueError, match="not both"):
        toy_fit(validate=False, epochs=None)
