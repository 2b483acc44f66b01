"""BEAUTY-LOO speed (issue 19): seconds per training epoch, hydrarec against torch-rechub's SASRec.

    python benchmarks/bench_beauty_speed.py [--rounds 3] [--config configs/beauty.toml]

Both train on the BEAUTY-LOO train sequences at equal sizes, read from the hydrarec config: item
vectors of ``model.dim``, ``model.sequence.layers`` blocks of ``heads`` heads, windows of
``max_len``, ``train.batch_size`` windows a batch, the same dropout, one process, the same torch
thread count. torch-rechub's
SASRec runs the paper's loop (``peers/rechub_sasrec.py``: one negative per position, BCE); hydrarec
runs ``hydrarec.train`` on the shipped config for one epoch (its own loss: the softmax over the
whole catalogue) and the epoch's seconds are read from the run's ``history.jsonl`` (validation
excluded on both sides). The VM's speed drifts, so the two alternate ``rounds`` times, the order
rotating; each round gives a ratio; the row gives the median seconds and each round's ratio.

Time to quality: from the ``history.jsonl`` of runs already trained by ``quality.py BEAUTY-LOO``
(``runs/bench/BEAUTY-LOO/hydrarec/seed*``), the seconds of training and validation up to the
epoch validation chose.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import rechub_sasrec  # noqa: E402
from peers.common import load_split  # noqa: E402
from quality import BEAUTY, commit, data_of, split_of  # noqa: E402

RUNS = Path("runs/bench/BEAUTY-SPEED")


def sizes_of(config: str) -> rechub_sasrec.Params:
    """torch-rechub's SASRec at the sizes of a hydrarec config."""
    from hydrarec.config import load_config

    cfg = load_config(config)
    seq = cfg.model.sequence
    return rechub_sasrec.Params(
        max_len=seq.max_len,
        dim=cfg.model.dim,
        blocks=seq.layers,
        heads=seq.heads,
        dropout=seq.dropout,
        batch_size=cfg.train.batch_size,
    )


def rechub_epoch_seconds(data: Any, p: rechub_sasrec.Params) -> float:
    """One training epoch of torch-rechub's SASRec (fresh model, seed 0) at sizes ``p``."""
    seqs = rechub_sasrec.sequences(data, ("train",))
    wins, owner = rechub_sasrec.training_windows(seqs, p)
    seen = [set(s.tolist()) for s in rechub_sasrec.sequences(data, ("train", "valid", "test"))]
    model, opt, rng = rechub_sasrec.fresh(data, 0, p)
    start = time.perf_counter()
    rechub_sasrec.train_epoch(model, opt, wins, seen, owner, p, rng, data.n_items)
    return time.perf_counter() - start


def hydrarec_epoch_seconds(config: str, name: str) -> float:
    """One training epoch of ``config`` through ``hydrarec.train`` (its history's seconds)."""
    from hydrarec.config import load_config
    from hydrarec.run.train import train

    out = RUNS / name
    train(load_config(config, ["train.epochs=1", "train.refit=false"]), out, overwrite=True)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    return float(history[0]["seconds"])


def time_to_quality(run: Path, monitor: str = "retrieval/ndcg@10") -> tuple[float, int, int]:
    """Seconds of training and validation up to the best validation epoch, that epoch, and the
    epochs trained. A ``train.refit`` run adds its refit (``RUN/history.jsonl``) to the
    selection's seconds up to the best epoch (``RUN/selection/history.jsonl``)."""

    def read(folder: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()]

    refit = (run / "selection" / "history.jsonl").is_file()
    history = read(run / "selection") if refit else read(run)
    scored = [h for h in history if monitor in h.get("valid", {})]
    best = max(scored, key=lambda h: h["valid"][monitor])
    upto = [h for h in history if h["epoch"] <= best["epoch"]]
    secs = sum(h["seconds"] + h.get("valid_seconds", 0.0) for h in upto)
    if refit:
        secs += sum(h["seconds"] for h in read(run))
    return secs, best["epoch"], len(history)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--config", default="configs/beauty.toml")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    os.environ.setdefault("HYDRAREC_DATA_DIR", str((HERE.parent.parent / "shared/data").resolve()))
    torch.set_num_threads(args.threads)
    data = load_split(split_of(BEAUTY), data_of(BEAUTY))
    sizes = sizes_of(args.config)
    print(f"sizes: {sizes}", flush=True)
    runs = {
        "rechub": lambda: rechub_epoch_seconds(data, sizes),
        "hydrarec": lambda: hydrarec_epoch_seconds(args.config, Path(args.config).stem),
    }
    seconds: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(args.rounds):
        for key in list(runs)[r % 2 :] + list(runs)[: r % 2]:
            seconds[key].append(runs[key]())
            print(f"round {r}: {key} {seconds[key][-1]:.1f} s", flush=True)
    ratios = np.array(seconds["rechub"]) / np.array(seconds["hydrarec"])
    stamp = f"commit {commit()}, {date.today().isoformat()}, {args.threads} thread(s)"
    lines = [
        "| system | s / epoch (median) | torch-rechub / hydrarec (per round) | note |",
        "|---|---:|---:|---|",
        f"| torch-rechub SASRec | {np.median(seconds['rechub']):.1f} | 1.00 | BCE, 1 negative; "
        f"dim {sizes.dim}, {sizes.blocks} block(s) of {sizes.heads} head(s), batch "
        f"{sizes.batch_size}; {stamp} |",
        f"| hydrarec {Path(args.config).name} | {np.median(seconds['hydrarec']):.1f} | "
        f"{np.median(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)}) | its own loss and "
        f"schedule; {args.rounds} alternating rounds |",
    ]
    for run in sorted(Path("runs/bench/BEAUTY-LOO/hydrarec").glob("seed*")):
        if run.suffix != ".partial" and (run / "history.jsonl").is_file():  # complete runs
            secs, epoch, epochs = time_to_quality(run)
            lines.append(
                f"| time to best valid, {run.name} | {secs:.0f} s | - | best epoch {epoch} of "
                f"{epochs} (training + validation seconds up to it) |"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
