"""Several processes on one study (issue 24): two ``hydrarec tune`` commands racing on one
SQLite file, ``--jobs 2``, and a worker killed (SIGKILL) in the middle of a trial.

Run as a script (``python test_tune_workers.py OUT``) this file is a worker that hangs after
its first trial's first epoch, as a slow trial would, until the test kills it. The hang is
patched in here, in the worker process; the product has no test hook.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if __name__ == "__main__":  # worker mode: make ``tests`` importable as in pytest
    sys.path.insert(0, str(REPO))

from optuna.trial import TrialState  # noqa: E402
from tests.integration.tune_tiny import SPACE, load, tune_config, write_inputs  # noqa: E402

from hydrarec.io.progress import Progress  # noqa: E402
from hydrarec.tuning import tune  # noqa: E402

QUIET = Progress(enabled=False)
HEARTBEAT = {"heartbeat_interval": 1, "grace_period": 4}  # seconds: a killed worker goes stale fast
SPACE_TOML = '"model.dim" = [4, 8]\n"train.lr" = { low = 0.002, high = 0.05, log = true }\n'


def _hanging_worker(out: Path) -> None:
    """Tune ``out`` with a training that stops after its first epoch and waits to be killed."""
    from hydrarec.tuning import objective

    real_train = objective.train

    def train(*args: Any, on_epoch: Any, **kwargs: Any) -> Any:
        def hang_after(record: dict[str, Any]) -> None:
            on_epoch(record)
            (out / "hanging").touch()
            time.sleep(600)

        return real_train(*args, on_epoch=hang_after, **kwargs)

    objective.train = train  # type: ignore[assignment]
    tune(tune_config(epochs=3), SPACE, out=out, trials=1, progress=QUIET, **HEARTBEAT)


def _env() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _states(out: Path) -> list[TrialState]:
    return [t.state for t in load(out).get_trials()]


def test_two_commands_on_one_sqlite_file_share_the_study(tmp_path: Path) -> None:
    config, space = write_inputs(tmp_path / "inputs", SPACE_TOML)
    out = tmp_path / "shared"
    command = [sys.executable, "-m", "hydrarec", "tune", "-c", str(config), "-s", str(space)]
    command += ["-n", "2", "-o", str(out), "--keep", "all", "-q"]
    # both start at once: both create the tables and the study, one of them finds it made
    workers = [subprocess.Popen(command, env=_env(), stderr=subprocess.PIPE) for _ in range(2)]
    errors = [w.communicate(timeout=900)[1].decode() for w in workers]
    assert [w.returncode for w in workers] == [0, 0], errors
    trials = load(out).get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # each process ran two of them
    assert len({t.user_attrs["run"] for t in trials}) == 4


def test_jobs_start_worker_processes_on_the_same_study(tmp_path: Path) -> None:
    out = tmp_path / "jobs"
    result = tune(tune_config(), SPACE, out=out, trials=2, jobs=2, keep="all", progress=QUIET)
    trials = load(out).get_trials()
    assert result.trials == {"complete": 2}
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2 and str(os.getpid()) not in {w.split(":")[1] for w in workers}


def test_a_worker_killed_mid_trial_leaves_a_resumable_study(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    worker = subprocess.Popen([sys.executable, __file__, str(out)], env=_env())
    deadline = time.monotonic() + 900
    while not (out / "hanging").exists():
        assert worker.poll() is None and time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.5)
    assert _states(out) == [TrialState.RUNNING]
    assert (out / "trials" / "0000.partial" / "checkpoints").is_dir()  # killed mid-training
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    killed = load(out).trials[0]
    time.sleep(HEARTBEAT["grace_period"] + 1)  # its heartbeat goes stale
    result = tune(tune_config(epochs=3), SPACE, out=out, trials=2, progress=QUIET, **HEARTBEAT)
    trials = load(out).get_trials()
    # the killed trial: FAIL; its values retried once (trial 1), then one new trial
    assert [t.state for t in trials] == [TrialState.FAIL] + [TrialState.COMPLETE] * 2
    assert trials[1].params == killed.params
    assert result.trials == {"fail": 1, "complete": 2}
    assert not any(p.name.startswith("0000") for p in (out / "trials").iterdir())
    assert (out / "best.toml").is_file()


if __name__ == "__main__":
    _hanging_worker(Path(sys.argv[1]))
