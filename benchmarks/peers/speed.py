"""SPEED: training throughput against torch-rechub's MMOE, and hydrarec's time-to-quality.

Both models train on the ML100K-LOO train rows, one process at a time, with the same torch
thread count, batch size 512 and equal sizes: id embeddings of 64, 4 experts of [128], task
towers of [64], two tasks (rating regression, like = rating >= 4), no dropout and no gradient
clipping (torch-rechub's defaults). torch-rechub's model sees the user and item ids (its MMOE has
no sequence or side-feature towers). hydrarec runs twice: with the same inputs ("equal inputs":
ids only, each tower one Linear, experts reading ``[u, i]`` (2 x 64 wide) as torch-rechub's do,
``model.pair_input = "concat"``) and as it ships ("equal sizes": side features, tower MLPs, and
experts reading ``[u, i, u * i]``, 3 x 64 wide), which is more work per example.

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
TTQ_CONFIG = "configs/ml100k_loo.toml"


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


def trained_history(cfg: Any, name: str) -> list[dict[str, Any]]:
    """Train ``cfg`` into ``RUNS / name`` (a fresh history) and read its per-epoch records."""
    from hydrarec.run.train import train

    out = RUNS / name
    train(cfg, out, overwrite=True)
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


def equal_size_config(epochs: int, side: bool = True) -> Any:
    """ml100k_mmoe.toml at torch-rechub's sizes: no sequence encoder, rating + like only, no
    dropout (torch-rechub's MLP default), no gradient clipping (its trainer clips none).
    ``side=False``: torch-rechub's inputs too, the two ids and nothing else, each tower one
    Linear (torch-rechub has no towers) and experts over the concatenated ``[u, i]``."""
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
    if not side:
        raw["model"]["tower_hidden"] = []
        raw["model"]["pair_input"] = "concat"  # experts read [u, i], as torch-rechub's
        raw["features"] = {"user": [], "item": []}
    raw["tasks"] = [t for t in raw["tasks"] if t["name"] in ("rating", "like")]
    # torch-rechub's MTLTrainer clips no gradient
    raw["train"].update(epochs=epochs, batch_size=BATCH, monitor="like/auc", grad_clip=0.0)
    raw.pop("recommend", None)
    return config_from_dict(raw, "equal-size mmoe")


def hydrarec_equal_size(epochs: int = 2, side: bool = True) -> list[dict[str, Any]]:
    name = "hydrarec-equal-size" if side else "hydrarec-equal-inputs"
    return trained_history(equal_size_config(epochs, side), name)


def main(threads: int = 1, ttq_config: str = TTQ_CONFIG, rounds: int = 3) -> list[str]:
    """Markdown rows: throughput of each model, and the time-to-quality of the shipped
    multi-task ML100K-LOO config, trained here (a fresh run: no stale history is read).

    The machine's speed drifts (a shared VM: up to 2x within minutes), so the three throughput
    measurements run in alternation, ``rounds`` times; each round gives a ratio against the
    torch-rechub measurement of its round (the order rotates from round to round); a row gives
    the median examples/s and the median of its per-round ratios, then each round's ratio.
    """
    torch.set_num_threads(threads)
    per_round: dict[str, list[float]] = {"rechub": [], "inputs": [], "sizes": []}
    n_rows = len(load_split(SplitConfig(kind="leave_last_out")).split.train)
    runs = {
        "rechub": lambda: rechub_throughput()[0],
        "inputs": lambda: throughput(hydrarec_equal_size(side=False), n_rows),
        "sizes": lambda: throughput(hydrarec_equal_size(), n_rows),
    }
    order = list(runs)
    for r in range(rounds):  # the order rotates, so a drift within rounds favours no one
        for key in order[r % 3 :] + order[: r % 3]:
            per_round[key].append(runs[key]())
    rechub = float(np.median(per_round["rechub"]))

    def cells(key: str) -> str:
        ratios = np.array(per_round[key]) / np.array(per_round["rechub"])
        spread = ", ".join(f"{r:.2f}" for r in ratios)
        return f"{np.median(per_round[key]):,.0f} | {np.median(ratios):.2f} ({spread})"

    lines = [
        "| protocol | system | examples/s | ratio vs torch-rechub MMOE (per round) | note |",
        "|---|---|---:|---:|---|",
        f"| SPEED | torch-rechub MMOE | {rechub:,.0f} | 1.00 | ids only, {threads} thread(s), "
        f"median of {rounds} alternating rounds |",
        f"| SPEED | hydrarec mmoe (equal inputs) | {cells('inputs')} | ids only, each tower one "
        "Linear, experts over [u, i], no sequence, rating + like, no dropout or clipping |",
        f"| SPEED | hydrarec mmoe (equal sizes) | {cells('sizes')} | ids + side features, tower "
        "MLPs [128], no sequence, rating + like, no dropout or clipping |",
    ]
    if ttq_config == "":
        print("\n".join(lines))
        return lines
    name = Path(ttq_config).stem
    from hydrarec.config import load_config

    hist = trained_history(load_config(ttq_config), name)
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
