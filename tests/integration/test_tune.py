"""``hydrarec tune`` end to end on a tiny config (issue 24): a study from the command line,
its outputs, resuming, pruning and a failing trial."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
import tomllib
from optuna.trial import TrialState
from tests.integration.tune_tiny import (
    SPACE,
    enqueue,
    load,
    tune_config,
    tune_raw,
    write_inputs,
)
from typer.testing import CliRunner

from hydrarec.cli import app
from hydrarec.config import config_from_dict, load_config
from hydrarec.io.atomic import read_json
from hydrarec.io.progress import Progress
from hydrarec.tuning import tune

QUIET = Progress(enabled=False)
MONITOR = "retrieval/ndcg@10"
SPACE_TOML = '"model.dim" = [4, 8]\n"train.lr" = { low = 0.002, high = 0.05, log = true }\n'


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-trial study run by the command line, every trial's run kept (read-only)."""
    folder = tmp_path_factory.mktemp("tune")
    config, space = write_inputs(folder / "inputs", SPACE_TOML)
    out = folder / "study"
    args = ["tune", "-c", str(config), "-s", str(space), "-n", "3", "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--keep", "all", "--pruner", "none", "-q"])
    assert result.exit_code == 0, result.output
    assert "best config written to" in result.output
    return out


def test_best_toml_is_the_best_trials_config(study_dir: Path) -> None:
    study = load(study_dir)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3
    best = max(complete, key=lambda t: t.value)  # ndcg: higher is better
    assert study.best_trial.number == best.number
    cfg = load_config(study_dir / "best.toml")  # what `hydrarec train --config` reads
    assert cfg.model.dim == best.params["model.dim"]
    assert cfg.train.lr == best.params["train.lr"]
    assert cfg.train.seed == 0 and cfg.train.epochs == 2  # the base config's, not a trial's
    # the objective is the run's validation metric; test was never read in a trial
    metrics = read_json(Path(best.user_attrs["run"]) / "metrics.json")
    assert set(metrics) == {"valid", "train"}
    assert metrics["valid"][MONITOR] == pytest.approx(best.value)


def test_outputs_table_and_report(study_dir: Path) -> None:
    table = pd.read_csv(study_dir / "trials.csv")
    assert table["number"].tolist() == [0, 1, 2]
    assert set(table["state"]) == {"COMPLETE"}
    assert {"params_model.dim", "params_train.lr", "user_attrs_seeds"} <= set(table.columns)
    page = (study_dir / "report.html").read_text()
    for title in ("Optimisation history", "Learning curves", "Parameter importances", "Slices"):
        assert f"<h2>{title}</h2>" in page
    assert "<h2>Contours</h2>" in page  # two parameters, three completed trials
    assert page.count("data:image/png;base64,") == 5  # the five plots above
    assert (study_dir / "plots" / "history.png").stat().st_size > 0


def test_each_trial_trains_in_its_own_run_with_its_own_seed(study_dir: Path) -> None:
    trials = load(study_dir).get_trials()
    runs = [Path(t.user_attrs["run"]) for t in trials]
    assert len(set(runs)) == len(runs)
    seeds = [t.user_attrs["seeds"][0] for t in trials]
    assert len(set(seeds)) == len(seeds)
    for trial, run, seed in zip(trials, runs, seeds, strict=True):
        written = tomllib.loads((run / "config.toml").read_text())
        assert written["model"]["dim"] == trial.params["model.dim"]
        assert written["train"]["lr"] == trial.params["train.lr"]
        assert written["train"]["seed"] == seed
        history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
        reported = trial.intermediate_values  # epoch -> the value its run recorded
        assert reported == {r["epoch"]: r["valid"][MONITOR] for r in history}


def test_the_same_command_again_continues_the_study(study_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / study_dir.name  # the same study name: the folder's
    shutil.copytree(study_dir, out)
    result = tune(tune_config(), SPACE, out=out, trials=1, keep="best", progress=QUIET)
    study = load(out)
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert result.trials == {"complete": 4}
    # keep = best: only the best trial's run is left
    best = f"{study.best_trial.number:04d}"
    assert [p.name for p in (out / "trials").iterdir()] == [best]
    assert result.best_run == out / "trials" / best


def test_another_study_in_the_same_folder_is_refused(study_dir: Path) -> None:
    with pytest.raises(Exception, match="give each study its own --out"):
        tune(tune_config(), SPACE, out=study_dir, trials=1, study="other", progress=QUIET)


def test_pruner_stops_trials_worse_than_the_median(tmp_path: Path) -> None:
    out = tmp_path / "pruned"
    # monitored: the genre reconstruction loss. At lr 1e-7 the model keeps its random start
    # (valid loss ~0.65-0.69 here), where one epoch at lr 0.05 learns the genres' base rates
    # (~0.50): worse by construction, not by the luck of a seed
    raw = tune_raw(epochs=3, monitor="genres/loss")
    raw["tasks"].append(
        {"name": "genres", "kind": "reconstruction", "entity": "item", "feature": "genres"}
    )
    space = {"train.lr": [0.05, 1e-7]}
    enqueue(out, "minimize", {"train.lr": 0.05}, {"train.lr": 1e-7}, {"train.lr": 1e-7})
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    cfg = config_from_dict(raw)
    result = tune(cfg, space, out=out, trials=3, pruner=pruner, progress=QUIET)
    trials = load(out).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED]
    for t in trials[1:]:  # stopped after the first epoch, worse than the first trial there
        assert list(t.intermediate_values) == [1]
        assert t.user_attrs["epochs"] == 1
        assert t.intermediate_values[1] > trials[0].intermediate_values[1]
    assert trials[0].user_attrs["epochs"] == 3
    assert result.best_trial == 0 and result.trials == {"complete": 1, "pruned": 2}
    assert list((out / "trials").iterdir()) == []  # keep = none: every trial's run deleted


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "failing"
    # each value alone is one the config takes; 4 heads cannot split a 6-wide model
    space = {"model.dim": [6, 8], "model.sequence.heads": [2, 4]}
    enqueue(
        out,
        "maximize",
        {"model.dim": 6, "model.sequence.heads": 4},
        {"model.dim": 8, "model.sequence.heads": 2},
    )
    result = tune(tune_config(), space, out=out, trials=2, progress=QUIET)
    failed, done = load(out).get_trials()
    assert failed.state == TrialState.FAIL
    assert "heads" in failed.user_attrs["fail_reason"]
    assert done.state == TrialState.COMPLETE
    assert result.best_trial == 1
    assert load_config(out / "best.toml").model.dim == 8
