"""Kill ``hydrarec train`` (SIGKILL, as ``kill -9``) at chosen moments, then resume (issue 21).

Each kill leaves no run, or the previous complete run, at ``--out`` (never a mix of two runs'
files), and ``--resume`` ends with the uninterrupted run's weights, metrics and history. The
moments, in the order training reaches them:

- ``step:13``: in the middle of epoch 2 (1,380 train rows / batch 128 = 11 steps an epoch);
- ``checkpoint:2``: right after the first file of epoch 2's checkpoint is in place. With the
  earlier two-file checkpoint this was between ``last.safetensors`` and ``last.json``, and the
  resumed run went on silently from epoch-2 weights with epoch-1 counters;
- ``evaluate``: during the final evaluation, after training stopped early (patience 1 of 6
  epochs). Resuming used to train another epoch, and ``metrics.json`` then recorded the resume's
  0.01 s as the training time;
- ``swap``: an ``--overwrite`` retrain, complete, killed between moving the previous run aside
  and putting the new one in its place.

Run as a script (``python test_crash_resume.py ARGS``) this file is a worker: the ``hydrarec``
command line, killing itself at the moment named by the environment variable ``KILL_AT``. The
kill is patched in here, in the worker process; the product has no test hook.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
if __name__ == "__main__":  # worker mode: make ``tests`` importable as in pytest
    sys.path.insert(0, str(REPO))

from tests.integration.tiny import tiny_raw  # noqa: E402

from hydrarec.config import config_from_dict, dump_config  # noqa: E402
from hydrarec.io.atomic import read_tensors  # noqa: E402
from hydrarec.io.progress import Progress  # noqa: E402
from hydrarec.run.train import train  # noqa: E402

pytestmark = pytest.mark.slow
# stops early: best at epoch 2, patience runs out at epoch 3 (measured)
RAW = tiny_raw(epochs=6, patience=1, lr=0.05)
QUIET = Progress(enabled=False)
PYTHONPATH = os.pathsep.join([str(REPO), str(REPO / "src")])  # this tree's tests and hydrarec
DEADLINE_S = 600  # a hang guard: one training of the tiny config takes a few seconds


def hydrarec_train(config: Path, out: Path, *extra: str, kill_at: str) -> int:
    """``hydrarec train`` in a worker process that kills itself at ``kill_at``; its exit code."""
    proc = subprocess.run(
        [sys.executable, __file__, "train", "-c", str(config), "-o", str(out), "-q", *extra],
        env=os.environ | {"KILL_AT": kill_at, "OMP_NUM_THREADS": "1", "PYTHONPATH": PYTHONPATH},
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        cwd=REPO,
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-3000:])
    return proc.returncode


def run_files(run: Path) -> dict[str, bytes]:
    """Every file of a run but its log, by path: what must not change under a killed retrain."""
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name != "log.txt"
    }


def assert_same_run(resumed: Path, full: Path) -> None:
    """Same weights, metrics (but the time) and per-epoch history (but the times)."""
    wa, wb = read_tensors(full / "model.safetensors"), read_tensors(resumed / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert float((wa[k] - wb[k]).abs().max()) <= 1e-6, k
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (full, resumed))
    for split in ("valid", "test"):
        assert mb[split] == pytest.approx(ma[split], abs=1e-6), split
    for key in ("epochs", "best_epoch"):
        assert mb["train"][key] == ma["train"][key], key
    ha, hb = (
        [json.loads(line) for line in (r / "history.jsonl").read_text().splitlines()]
        for r in (full, resumed)
    )
    assert [h["epoch"] for h in hb] == [h["epoch"] for h in ha]
    for a, b in zip(ha, hb, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-6)
        assert b["valid"] == pytest.approx(a["valid"], abs=1e-6)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Every training here on one thread, as in the workers: the same sums in the same order
    (and no two-thread pools fighting over a busy machine's cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("crash") / "c.toml"
    path.write_text(dump_config(config_from_dict(RAW)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run (tests must not modify it)."""
    out = tmp_path_factory.mktemp("crash") / "full"
    run = train(config_from_dict(RAW), out, progress=QUIET)
    assert run.result.stopped_early and run.result.epochs == 3  # what the moments above assume
    return out


@pytest.mark.parametrize("kill_at", ["step:13", "checkpoint:2", "evaluate"])
def test_killed_training_resumes_to_the_uninterrupted_run(
    config: Path, full: Path, tmp_path: Path, kill_at: str
) -> None:
    out = tmp_path / "run"
    hydrarec_train(config, out, kill_at=kill_at)
    assert not (out / "model.safetensors").exists()  # no run at out until one is complete
    resumed = train(config_from_dict(RAW), out, resume=True, progress=QUIET)
    assert resumed.path == out
    assert_same_run(out, full)
    assert not list(tmp_path.glob("run.*")), "nothing is left beside the run"
    assert not list(out.rglob("*.tmp")), "no temporary file is left in the run"
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    # the training time of every epoch, the killed attempt's too (was 0.01 s: issue 21)
    assert resumed.metrics["train"]["seconds"] >= sum(h["seconds"] for h in history) - 0.01


def test_a_killed_retrain_leaves_the_previous_run_whole(
    config: Path, full: Path, tmp_path: Path
) -> None:
    """``--overwrite`` killed in epoch 2: every file of the previous run is as it was (the new
    epoch-1 weights used to replace its model.safetensors beside its old metrics and index)."""
    out = tmp_path / "run"
    shutil.copytree(full, out)
    before = run_files(out)
    hydrarec_train(config, out, "--overwrite", kill_at="step:13")
    assert run_files(out) == before
    assert (tmp_path / "run.partial").is_dir()  # the retrain's, which --resume continues


def test_a_retrain_killed_in_the_swap_leaves_no_run_and_resumes(
    config: Path, full: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    shutil.copytree(full, out)
    before = run_files(out)
    hydrarec_train(config, out, "--overwrite", kill_at="swap")
    assert not out.exists()  # no run: neither the old nor a mix
    assert run_files(tmp_path / "run.old") == before  # the previous run, aside, whole
    train(config_from_dict(RAW), out, resume=True, progress=QUIET)
    assert_same_run(out, full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def _worker() -> None:
    """``hydrarec`` that kills itself (SIGKILL) at the moment KILL_AT names (see above)."""
    import hydrarec.run.train as run_train
    from hydrarec.cli import main
    from hydrarec.training.trainer import Trainer

    point, _, arg = os.environ["KILL_AT"].partition(":")
    replace = os.replace
    saving = {"epoch": 0}  # the epoch whose checkpoint is being written

    def die(*_: Any) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def step_or_die(self: Trainer, batch: Any, step: Any = Trainer._step) -> Any:
        if self.state.step == int(arg):
            die()
        return step(self, batch)

    def save_noting_epoch(self: Trainer, save: Any = Trainer._save_checkpoint) -> None:
        saving["epoch"] = self.state.epoch
        save(self)

    def replace_then_die(src: Any, dst: Any) -> None:
        replace(src, dst)
        if point == "checkpoint":  # the first file of epoch ARG's checkpoint is in place
            if Path(dst).parent.name == "checkpoints" and saving["epoch"] == int(arg):
                die()
        elif str(dst).endswith(".old"):  # swap: the previous run is aside, the new one not in
            die()

    if point == "step":
        Trainer._step = step_or_die  # type: ignore[method-assign]
    elif point == "evaluate":
        run_train.evaluate = die  # type: ignore[assignment]
    else:
        Trainer._save_checkpoint = save_noting_epoch  # type: ignore[method-assign]
        os.replace = replace_then_die
    sys.argv = ["hydrarec", *sys.argv[1:]]
    main()


if __name__ == "__main__":
    _worker()
