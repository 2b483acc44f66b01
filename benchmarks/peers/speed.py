"""SPEED: training throughput against torch-rechub's MMOE, and hydrarec's time-to-quality.

Both models train on the ML100K-LOO train rows, one process at a time, with the same torch
thread count, batch size 512 and equal sizes: id embeddings of 64, 4 experts of [128], task
towers of [64], two tasks (rating regression, like = rating >= 4). torch-rechub's model sees the
user and item ids (its MMOE has no sequence or side-feature towers); hydrarec's sees what its
config gives it, so it does more work per example; the row says which.

Throughput = train rows x epochs / summed training-epoch seconds (validation excluded).
Time-to-quality = seconds of training epochs and their validations until the epoch whose validation
NDCG@10 is the run's best (the checkpoint hydrarec keeps), from the ``history.jsonl`` of a run of
the shipped ML100K-LOO config trained by this script.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hydrarec.config import SplitConfig
from peers.common import load_split

RUNS = Path("runs/bench/SPEED")
BATCH, DIM, EXPERTS, HIDDEN, TOWER = 512, 64, 4, [128], [64]


def rechub_throughput(epochs: int = 2) -> tuple[float, int]:
    """Examples per second of torch-rechub's MMOE + MTLTrainer.train_one_epoch."""
    from torch_rechub.basic.features import SparseFeature
    from torch_rechub.models.multi_task import MMOE
    from torch_rechub.trainers import MTLTrainer

    data = load_split(SplitConfig(kind="leave_last_out"))
    rows = data.split.train
    rating = data.column("rating", rows).astype(np.float32)
    x = {"user": torch.as_tensor(data.users(rows)), "item": torch.as_tensor(data.items(rows))}
    y = torch.as_tensor(np.stack([rating, (rating >= 4).astype(np.float32)], axis=1))
    feats = [
        SparseFeature("user", data.n_users, embed_dim=DIM),
        SparseFeature("item", data.n_items, embed_dim=DIM),
    ]
    tower = {"dims": TOWER}
    model = MMOE(feats, ["regression", "classification"], EXPERTS, {"dims": HIDDEN}, [tower, tower])
    trainer = MTLTrainer(model, ["regression", "classification"], n_epoch=epochs)
    loader = _loader(x, y)
    start = time.perf_counter()
    for _ in range(epochs):
        trainer.train_one_epoch(loader)
    return len(rows) * epochs / (time.perf_counter() - start), len(rows)


def _loader(x: dict[str, torch.Tensor], y: torch.Tensor) -> Any:
    """(x_dict, y) batches of ``BATCH`` in a fresh shuffle, as torch-rechub's trainers expect."""

    class Loader:
        def __iter__(self) -> Any:
            perm = torch.randperm(len(y))
            for idx in perm.split(BATCH):
                yield {k: v[idx] for k, v in x.items()}, y[idx]

        def __len__(self) -> int:
            return -(-len(y) // BATCH)

    return Loader()


def hydrarec_history(config: str, overrides: list[str], name: str) -> list[dict[str, Any]]:
    from hydrarec.config import load_config
    from hydrarec.experiment import train

    out = RUNS / name
    train(load_config(config, overrides), out)
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def throughput(history: list[dict[str, Any]], n_rows: int) -> float:
    return n_rows * len(history) / sum(h["seconds"] for h in history)


def time_to_quality(history: list[dict[str, Any]], monitor: str) -> tuple[float, int, float]:
    """Seconds of training and validation up to the best validation epoch, that epoch, and its
    metric."""
    scored = [h for h in history if "valid" in h and monitor in h["valid"]]
    best = max(scored, key=lambda h: h["valid"][monitor])
    upto = [h for h in history if h["epoch"] <= best["epoch"]]
    secs = sum(h["seconds"] + h.get("valid_seconds", 0.0) for h in upto)
    return secs, best["epoch"], best["valid"][monitor]


def equal_size_config(epochs: int) -> Any:
    """ml100k_mmoe.toml at torch-rechub's sizes: no sequence encoder, rating + like only, no
    dropout (torch-rechub's MLP default)."""
    import tomllib

    from hydrarec.config import config_from_dict

    raw = tomllib.loads(Path("configs/ml100k_mmoe.toml").read_text())
    raw["model"]["sequence"] = {"kind": "none"}
    raw["model"]["architecture"] = {
        "name": "mmoe",
        "experts": EXPERTS,
        "hidden": HIDDEN,
        "tower": TOWER,
        "dropout": 0.0,  # torch-rechub's MLP default (dropout=0)
    }
    raw["model"]["dropout"] = 0.0
    raw["tasks"] = [t for t in raw["tasks"] if t["name"] in ("rating", "like")]
    raw["train"].update(epochs=epochs, batch_size=BATCH, monitor="like/auc")
    raw.pop("recommend", None)
    return config_from_dict(raw, "equal-size mmoe")


def hydrarec_equal_size(epochs: int = 2) -> list[dict[str, Any]]:
    from hydrarec.experiment import train

    out = RUNS / "hydrarec-equal-size"
    train(equal_size_config(epochs), out)
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def main(threads: int = 1, ttq_config: str = "configs/ml100k_loo.toml") -> list[str]:
    """Markdown rows: throughput of each model, and the time-to-quality of the shipped
    multi-task ML100K-LOO config, trained here (a fresh run: no stale history is read)."""
    torch.set_num_threads(threads)
    rechub, n_rows = rechub_throughput()
    small = throughput(hydrarec_equal_size(), n_rows)
    lines = [
        "| protocol | system | examples/s | ratio vs torch-rechub MMOE | note |",
        "|---|---|---:|---:|---|",
        f"| SPEED | torch-rechub MMOE | {rechub:,.0f} | 1.00 | ids only, {threads} thread(s) |",
        f"| SPEED | hydrarec mmoe (equal sizes) | {small:,.0f} | {small / rechub:.2f} | "
        "ids + side features, no sequence, rating + like, no dropout |",
    ]
    name = Path(ttq_config).stem
    hist = hydrarec_history(ttq_config, [], name)
    full = throughput(hist, n_rows)
    secs, epoch, ndcg = time_to_quality(hist, "retrieval/ndcg@10")
    total = sum(h["seconds"] for h in hist)
    lines.append(
        f"| SPEED | hydrarec {name}.toml | {full:,.0f} | {full / rechub:.2f} | "
        "4 tasks + sequence encoder, train rows per second of training epochs |"
    )
    lines.append(
        f"| TIME-TO-QUALITY | hydrarec {name}.toml | - | - | best valid NDCG@10 {ndcg:.4f} at "
        f"epoch {epoch} of {len(hist)}: {secs:.0f} s of training and validation to it "
        f"({total:.0f} s of training epochs in all) |"
    )
    print("\n".join(lines))
    return lines
