"""Full-ranking metrics of several trained runs' retrieval scores summed: what a deep ensemble of
separately trained models would rank (how ``model.ensemble`` was chosen, on validation).

    python benchmarks/summed_runs.py RUN RUN [RUN ...] [--split valid]

Every run must share the dataset and split (the benchmark's seeds of one config do). Prints each
run's metrics alone, then those of the sum of their dot products (the dot product of their
concatenated vectors). Reads ``--split`` only (valid by default).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from hydrarec.evaluation.evaluate import full_ranking_ranks, split_vectors
from hydrarec.run.evaluate import KNOWN_BEFORE
from hydrarec.run.rundir import load_run
from hydrarec.tasks.metrics import ranking_metrics


def vectors(path: str, split: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(user vectors of the split's users, item vectors, what ranking them needs)."""
    run = load_run(path, torch.device("cpu"))
    rows = run.interactions[run.interactions["split"] == split]
    known = run.known(KNOWN_BEFORE[split])
    users, inverse = np.unique(rows["user_idx"].to_numpy(), return_inverse=True)
    user_vecs, items = split_vectors(
        run.model,
        run.users,
        run.items,
        users,
        known,
        run.config.model.sequence.max_len,
        torch.device("cpu"),
    )
    targets = rows["item_idx"].to_numpy()
    return (
        user_vecs,
        items,
        {"users": users, "inverse": inverse, "targets": targets, "known": known},
    )


def metrics(user_vecs: torch.Tensor, item_vecs: torch.Tensor, rank: dict, k: int) -> dict:
    ranks = full_ranking_ranks(
        user_vecs, item_vecs, rank["users"], rank["inverse"], rank["targets"], rank["known"], 256
    )
    return {m: round(v, 4) for m, v in ranking_metrics(ranks, [k]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--split", choices=["valid", "test"], default="valid")
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    parts = []
    for path in args.runs:
        user_vecs, item_vecs, rank = vectors(path, args.split)
        if parts and not np.array_equal(rank["targets"], parts[0][2]["targets"]):
            raise SystemExit(f"{path}: its {args.split} interactions differ from {args.runs[0]}'s")
        parts.append((user_vecs, item_vecs, rank))
        print(f"{path}: {metrics(user_vecs, item_vecs, rank, args.k)}")
    summed = metrics(
        torch.cat([p[0] for p in parts], 1),
        torch.cat([p[1] for p in parts], 1),
        parts[0][2],
        args.k,
    )
    print(f"sum of {len(parts)}: {summed}")


if __name__ == "__main__":
    main()
