"""Data-parallel training (issue 7): two gloo processes on CPU, launched by torchrun.

- Two ranks with ``gather_negatives`` train the same model as one process with the same global
  batch and seed: with dropout off (dropout masks are drawn per process, so they cannot match)
  every step sees the same rows and the same retrieval candidates, and the only difference is
  the order of floating-point sums. Tolerance: 1e-5 absolute on every validation and test metric
  and on the epoch losses (measured ~1e-8). Weights are not compared: parameters whose gradient
  is zero in exact arithmetic (e.g. the attention key bias) get rounding noise that Adam's
  g / sqrt(v) scales up to full-size steps, measured up to 1e-3, without changing any output.
  With per-rank negatives (the default) the same config gives metrics ~0.05 apart (measured),
  so this comparison fails if the gathering does nothing.
- A rank killed mid-training (SIGKILL) makes torchrun exit non-zero within seconds, naming the
  rank, instead of hanging; the job then resumes from the last checkpoint, every rank loading it,
  to the same weights as the uninterrupted run.
- A rank that stalls (alive, silent) makes the others fail after ``HYDRAREC_DIST_TIMEOUT``
  seconds with a message that says so.

Run as a script (``python -m torch.distributed.run ... test_distributed.py ARGS``) this file is a
worker: the ``hydrarec train`` command line in which rank ``FAULT_RANK`` kills itself
(``FAULT=kill``) or stalls (``FAULT=hang``) at optimizer step ``FAULT_STEP``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if __name__ == "__main__":  # worker mode: make ``tests`` importable as in pytest
    sys.path.insert(0, str(REPO))

from tests.integration.tiny import tiny_raw  # noqa: E402

from hydrarec.config import config_from_dict, dump_config  # noqa: E402
from hydrarec.io.atomic import read_tensors  # noqa: E402
from hydrarec.io.progress import Progress  # noqa: E402
from hydrarec.run.train import train  # noqa: E402
from hydrarec.training import checkpoint  # noqa: E402

TOLERANCE = 1e-5  # metrics and epoch losses, DDP vs one process (see the module doc)
KILL_DEADLINE_S = 60  # the killed job must end within this (it ends in a few seconds)
DIST_TIMEOUT_S = "20"  # HYDRAREC_DIST_TIMEOUT of every launch but the stall test


def ddp_raw(gather: bool) -> dict[str, Any]:
    """The tiny config with dropout off, and a catalogue large enough (1000 items) that a rank's
    half batch holds fewer distinct items than the whole batch (no full softmax)."""
    raw = tiny_raw(epochs=2, patience=5)
    raw["data"]["synthetic"]["n_items"] = 1000
    raw["model"]["dropout"] = 0.0
    raw["model"]["sequence"]["dropout"] = 0.0
    raw["model"]["architecture"]["dropout"] = 0.0
    raw["tasks"][0].update(full_softmax=False, gather_negatives=gather)
    return raw


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(dump_config(config_from_dict(raw)), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun(
    target: list[str], args: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Launch two CPU ranks on this machine; returns the finished process and its seconds."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    cmd += ["--master-addr", "127.0.0.1", "--master-port", str(free_port())]
    full_env = os.environ | {
        "HYDRAREC_DIST_TIMEOUT": DIST_TIMEOUT_S,  # nothing may wait longer
        "OMP_NUM_THREADS": "1",
        "CI": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    start = time.perf_counter()
    proc = subprocess.run(
        cmd + target + args,
        env=full_env | (env or {}),
        capture_output=True,
        text=True,
        timeout=KILL_DEADLINE_S * 2,
        cwd=REPO,
    )
    return proc, time.perf_counter() - start


def hydrarec_train(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    proc, _ = torchrun(["-m", "hydrarec"], ["train", "-c", str(config), "-o", str(out), *extra])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def assert_close_metrics(a: Path, b: Path, tol: float) -> None:
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
    for split in ("valid", "test"):
        assert ma[split].keys() == mb[split].keys()
        for k in ma[split]:
            assert abs(ma[split][k] - mb[split][k]) <= tol, (split, k, ma[split][k], mb[split][k])


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two ranks, gathered negatives, 2 epochs: the reference of the tests below."""
    root = tmp_path_factory.mktemp("ddp")
    hydrarec_train(write_config(root / "c.toml", ddp_raw(gather=True)), root / "run")
    return root / "run"


def test_two_ranks_match_one_process(ddp_run: Path, tmp_path: Path) -> None:
    one = train(config_from_dict(ddp_raw(gather=True)), tmp_path / "one", progress=Progress(False))
    assert_close_metrics(ddp_run, one.path, TOLERANCE)
    history = [json.loads(x) for x in (ddp_run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]  # rank 0 alone wrote it
    # the second rank's part counted: the epoch loss is the mean over both ranks' batches
    want = [h["train_loss"]["total"] for h in one.result.history]
    assert [h["train_loss"]["total"] for h in history] == pytest.approx(want, abs=TOLERANCE)


def test_two_ranks_match_one_process_with_sparse_tables(tmp_path: Path) -> None:
    """Sparse embedding gradients (``train.sparse_embeddings``) are all-reduced by gloo: the
    same tolerance against one process holds as with dense tables."""
    raw = ddp_raw(gather=True)
    raw["train"]["sparse_embeddings"] = True
    hydrarec_train(write_config(tmp_path / "c.toml", raw), tmp_path / "ddp")
    one = train(config_from_dict(raw), tmp_path / "one", progress=Progress(False))
    assert_close_metrics(tmp_path / "ddp", one.path, TOLERANCE)


def test_two_ranks_refit_like_one_process(tmp_path: Path) -> None:
    """``train.refit`` under two ranks: the selection's best epoch reaches every rank, both
    fits are data-parallel, and the result matches one process."""
    raw = ddp_raw(gather=True)
    raw["train"]["refit"] = True
    hydrarec_train(write_config(tmp_path / "c.toml", raw), tmp_path / "ddp")
    one = train(config_from_dict(raw), tmp_path / "one", progress=Progress(False))
    assert (tmp_path / "ddp/selection/model.safetensors").is_file()
    assert_close_metrics(tmp_path / "ddp", one.path, TOLERANCE)
    refit = json.loads((tmp_path / "ddp/metrics.json").read_text())["train"]
    assert refit["refit"] is True and refit["epochs"] == one.metrics["train"]["epochs"]


def test_two_ranks_train_an_ensemble_like_one_process(tmp_path: Path) -> None:
    """``model.ensemble``: every member's negatives are gathered from both ranks and its
    gradients averaged over them, as for one model."""
    raw = ddp_raw(gather=True)
    raw["model"]["ensemble"] = 2
    hydrarec_train(write_config(tmp_path / "c.toml", raw), tmp_path / "ddp")
    one = train(config_from_dict(raw), tmp_path / "one", progress=Progress(False))
    assert_close_metrics(tmp_path / "ddp", one.path, TOLERANCE)


def test_killed_rank_fails_fast_and_resume_matches(ddp_run: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", ddp_raw(gather=True))
    out = tmp_path / "run"
    # rank 1 dies at the 3rd step of epoch 2 (1380 train rows / batch 128 = 11 steps an epoch)
    proc, seconds = torchrun(
        [__file__],
        ["train", "-c", str(config), "-o", str(out), "-q"],
        env={"FAULT": "kill", "FAULT_RANK": "1", "FAULT_STEP": "13"},
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert seconds < KILL_DEADLINE_S, f"the job took {seconds:.0f}s to fail"
    assert "rank      : 1" in log and "Signal 9 (SIGKILL)" in log, log[-3000:]
    # killed, so never swapped in at run: its checkpoint is in run.partial
    saved = checkpoint.load_state(tmp_path / "run.partial/checkpoints/last")
    assert saved["loop"]["epoch"] == 1  # the last good checkpoint survived
    hydrarec_train(config, out, "--resume")
    assert_close_metrics(ddp_run, out, 1e-6)  # the same ranks do the same sums: equal weights
    wa, wb = (read_tensors(p / "model.safetensors") for p in (ddp_run, out))
    for k in wa:
        assert float((wa[k] - wb[k]).abs().max()) <= 1e-6, k


def test_stalled_rank_times_out(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", ddp_raw(gather=True))
    proc, seconds = torchrun(
        [__file__],
        ["train", "-c", str(config), "-o", str(tmp_path / "run"), "-q"],
        env={"FAULT": "hang", "FAULT_RANK": "1", "FAULT_STEP": "1", "HYDRAREC_DIST_TIMEOUT": "3"},
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert seconds < KILL_DEADLINE_S, f"the job took {seconds:.0f}s to fail"
    assert "stalled for more than 3s (HYDRAREC_DIST_TIMEOUT)" in " ".join(log.split()), log[-3000:]


def _worker() -> None:
    """``hydrarec train`` in which rank FAULT_RANK dies or stalls at step FAULT_STEP."""
    from hydrarec.cli import main
    from hydrarec.training.trainer import Trainer

    step = Trainer._step
    rank, at, fault = (
        int(os.environ["FAULT_RANK"]),
        int(os.environ["FAULT_STEP"]),
        os.environ["FAULT"],
    )

    def step_or_fail(self: Trainer, batch: Any) -> Any:
        if self.dist.rank == rank and self.state.step == at:
            if fault == "hang":  # alive but silent: the other rank must time out
                time.sleep(3600)
            os.kill(os.getpid(), signal.SIGKILL)
        return step(self, batch)

    Trainer._step = step_or_fail  # type: ignore[method-assign]
    sys.argv = ["hydrarec", *sys.argv[1:]]
    main()


if __name__ == "__main__":
    _worker()
