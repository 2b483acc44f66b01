"""hydrarec itself, run like a peer: a shipped config, several seeds, test read once per run.

``train`` selects the checkpoint on validation (early stopping on ``train.monitor``) and scores
test once at the end; this module only collects ``run.metrics`` over seeds. The TFRS protocol's
top-100 accuracy (seen items included, as in the TFRS tutorial) is computed here from the saved
run, since hydrarec's own evaluation excludes known items.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hydrarec.config import Config, load_config
from hydrarec.evaluation.evaluate import encode_items, encode_users
from hydrarec.run.evaluate import evaluate
from hydrarec.run.rundir import load_run
from hydrarec.run.train import train
from peers.common import WITH_KNOWN, Result

RUNS = Path("runs/bench")


def finished(cfg: Config, run_dir: Path) -> dict[str, Any] | None:
    """The metrics of a finished run of exactly ``cfg`` in ``run_dir``, else None."""
    metrics, saved = run_dir / "metrics.json", run_dir / "config.toml"
    if not (metrics.is_file() and saved.is_file()):
        return None
    if load_config(saved) != cfg:
        return None
    found: dict[str, Any] = json.loads(metrics.read_text(encoding="utf-8"))
    return found if "test" in found else None


def train_seeds(
    name: str, config: str, seeds: int, overrides: list[str], out: Path, reuse: bool = False
) -> list[dict[str, dict[str, float]]]:
    """``run.metrics`` of ``config`` trained with seeds 0..seeds-1 (valid, test, train).

    ``reuse``: a seed whose run directory already holds a finished run of the same config (the
    config.toml reads back equal to it) is read back instead of trained again, so a long benchmark
    can add seeds to one it ran before; its test was read once, by that run."""
    res = []
    for seed in range(seeds):
        cfg = load_config(config, [*overrides, f"train.seed={seed}"])
        metrics = finished(cfg, out / f"seed{seed}") if reuse else None
        if metrics is None:
            metrics = train(cfg, out / f"seed{seed}", overwrite=True).metrics  # replaces its run
        else:
            print(f"    seed {seed}: reusing the finished run in {out / f'seed{seed}'}", flush=True)
        res.append(metrics)
        print(f"    seed {seed}: {json.dumps(metrics)}", flush=True)
    return res


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def aggregate(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Mean of every metric, plus ``<metric>_std`` (sample standard deviation; 0 for one seed)."""
    out: dict[str, float] = {}
    for k in per_seed[0]:
        m, s = mean_std([r[k] for r in per_seed if k in r])
        out[k], out[f"{k}_std"] = m, s
    return out


@torch.no_grad()
def top_k_accuracy(path: Path, k: int = 100) -> float:
    """Share of test pairs whose item is in the user's top ``k`` over ALL items (seen included)."""
    run = load_run(path)
    device = next(run.model.parameters()).device
    rows = run.interactions[run.interactions["split"] == "test"]
    known = run.known(("train", "valid"))
    item_vecs = encode_items(run.model, run.items, device)
    users = rows["user_idx"].to_numpy()
    uniq, inverse = np.unique(users, return_inverse=True)
    hist, mask = known.last_n(uniq, run.config.model.sequence.max_len)
    user_vecs = encode_users(run.model, run.users, uniq, hist, mask, item_vecs, device)
    top = torch.topk(user_vecs @ item_vecs.T, k, dim=1).indices.cpu().numpy()  # (U, k)
    items = rows["item_idx"].to_numpy()
    return float((top[inverse] == items[:, None]).any(axis=1).mean())


def run(
    name: str,
    config: str,
    seeds: int,
    overrides: list[str],
    protocol: str,
    tfrs: bool = False,
    reuse: bool = False,
) -> Result:
    out = RUNS / protocol / name
    per_seed = train_seeds(name, config, seeds, overrides, out, reuse=reuse)
    tests = [dict(m["test"]) for m in per_seed]
    if tfrs:
        for seed, t in enumerate(tests):
            t["top100"] = top_k_accuracy(out / f"seed{seed}")
    if (
        protocol == "BEAUTY-LOO"
    ):  # also with the known items ranked (hydrarec evaluate --with-known)
        for seed, t in enumerate(tests):
            known = evaluate(out / f"seed{seed}", "test", exclude_known=False)
            t.update({WITH_KNOWN + k.split("/")[-1]: v for k, v in known.items() if "@" in k})
    seconds = statistics.fmean(m["train"]["seconds"] for m in per_seed)
    refit = any(m["train"].get("refit") for m in per_seed)
    epochs = [
        f"{m['train']['best_epoch']}/{m['train'].get('selection_epochs', m['train']['epochs'])}"
        for m in per_seed
    ]
    params: dict[str, Any] = {"config": config, "overrides": overrides, "best/epochs": epochs}
    valid = aggregate([m["valid"] for m in per_seed])
    note = f"{seeds} seed(s); seconds = mean per seed, incl. per-epoch validation"
    if refit:  # train.refit: valid is the selected model's, test the refit one's
        note += "; refit on train + valid for the best epochs (seconds include both fits)"
    name = f"hydrarec ({Path(config).stem}{', refit' if refit else ''})"
    return Result(name, aggregate(tests), seconds, params, valid, note)
