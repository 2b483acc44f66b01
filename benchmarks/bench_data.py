"""Data-path speed and memory: loading, splitting, feature fitting and batch assembly.

Reports, as Markdown table rows:

(a) MovieLens-100K (from ``HYDRAREC_DATA_DIR``; a note when absent): load, leave-last-out
    split, feature fit, one epoch of batch assembly over the train rows;
(b) ``--n`` synthetic interactions (default 10M): generation, leave-last-out split, feature fit,
    histories, one epoch of batch assembly (``--history`` items per row, ``--batch-size``).

Rates are per wall second and per CPU second of this process (steadier on a shared machine).
Peak memory is ``ru_maxrss`` after each stage (it never goes down), next to the bytes of the raw
interaction columns (user / item index, timestamp, labels) that any pipeline must hold.

    python benchmarks/bench_data.py --n 10000000
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

from hydrarec.config import DataConfig, FeaturesConfig, SyntheticConfig
from hydrarec.data.dataset import Dataset
from hydrarec.data.schema import TIMESTAMP
from hydrarec.features.batching import BatchBuilder, UserHistories
from hydrarec.features.pipeline import FeaturePipeline

T = TypeVar("T")
MIB = 1024 * 1024


def peak_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


class Timing:
    """Wall seconds and CPU seconds of this process (CPU time is the steadier number on a
    shared machine: it does not count time spent waiting for a core)."""

    def __init__(self, wall: float, cpu: float) -> None:
        self.wall, self.cpu = wall, cpu


def timed(fn: Callable[[], T]) -> tuple[T, Timing]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, Timing(time.perf_counter() - wall, time.process_time() - cpu)


class Table:
    """Collects Markdown rows: stage, rows processed, seconds, rows/s, peak RSS."""

    def __init__(self) -> None:
        print("| data | stage | rows | wall s | rows/s (wall) | rows/s (CPU) | peak RSS MiB |")
        print("|---|---|---:|---:|---:|---:|---:|")

    def row(self, data: str, stage: str, rows: int, t: Timing) -> None:
        wall = f"{rows / t.wall:,.0f}" if t.wall > 0 else "-"
        cpu = f"{rows / t.cpu:,.0f}" if t.cpu > 0 else "-"
        cells = [data, stage, f"{rows:,}", f"{t.wall:.2f}", wall, cpu, f"{peak_mib():,.0f}"]
        print("| " + " | ".join(cells) + " |", flush=True)

    def note(self, data: str, stage: str, text: str) -> None:
        print(f"| {data} | {stage} | {text} | | | | {peak_mib():,.0f} |", flush=True)


def raw_column_bytes(ds: Dataset) -> int:
    """Bytes of the columns every pipeline needs: user / item index, timestamp, labels."""
    inter = ds.interactions
    cols = ["user_idx", "item_idx", *ds.label_columns]
    cols += [TIMESTAMP] if TIMESTAMP in inter.columns else []
    return int(sum(inter[c].to_numpy().nbytes for c in cols))


def label_arrays(ds: Dataset) -> dict[str, np.ndarray]:
    """Every feedback column as float32 with NaN for missing (what the trainer passes)."""
    inter = ds.interactions
    return {c: inter[c].to_numpy(np.float32, na_value=np.nan) for c in ds.label_columns}


def assemble_epoch(
    ds: Dataset, train: np.ndarray, args: argparse.Namespace, table: Table, name: str
) -> None:
    """Fit features on train, build train histories and time one epoch of batches."""
    pipe, secs = timed(lambda: FeaturePipeline(FeaturesConfig()).fit(ds, train))
    users, items = pipe.transform_users(ds.users), pipe.transform_items(ds.items)
    table.row(name, "feature fit + transform", len(train), secs)
    inter = ds.interactions
    u, i = inter["user_idx"].to_numpy(), inter["item_idx"].to_numpy()
    ts = inter[TIMESTAMP].to_numpy() if TIMESTAMP in inter.columns else None
    hist, secs = timed(lambda: UserHistories(u, i, ts, rows=train, n_users=ds.n_users))
    table.row(name, "train histories", len(train), secs)
    builder = BatchBuilder(u, i, label_arrays(ds), users, items, hist, args.history)
    next(iter(builder.iterate(train[: args.batch_size], args.batch_size)))  # layout built once
    count, secs = timed(lambda: _epoch(builder, train, args.batch_size))
    stage = f"batch assembly (B={args.batch_size}, N={args.history})"
    table.row(name, stage, count, secs)


def _epoch(builder: BatchBuilder, rows: np.ndarray, batch_size: int) -> int:
    return sum(len(b) for b in builder.iterate(rows, batch_size, shuffle=True, seed=0))


def bench_movielens(args: argparse.Namespace, table: Table) -> None:
    from hydrarec.data.registry import load_dataset
    from hydrarec.data.splits import leave_last_out

    name = "ML-100K"
    try:
        ds, secs = timed(lambda: load_dataset(DataConfig(dataset="movielens-100k")))
    except Exception as e:  # missing files: report and go on with the synthetic part
        reason = " ".join(str(e).split())[:100]
        table.note(name, "load", f"skipped: {type(e).__name__}: {reason}")
        return
    table.row(name, "load", len(ds.interactions), secs)
    split, secs = timed(lambda: leave_last_out(ds.interactions))
    table.row(name, "leave-last-out split", len(ds.interactions), secs)
    assemble_epoch(ds, split.train, args, table, name)


def bench_synthetic(args: argparse.Namespace, table: Table) -> None:
    from hydrarec.data.splits import leave_last_out
    from hydrarec.data.synthetic import generate

    n = args.n
    cfg = SyntheticConfig(
        n_users=max(1, n // args.per_user),
        n_items=min(args.items, max(100, n // 200)),
        n_interactions=n,
    )
    name = f"synthetic {n:,} ({cfg.n_users:,} users, {cfg.n_items:,} items)"
    ds, secs = timed(lambda: generate(cfg))
    table.row(name, "generate", len(ds.interactions), secs)
    split, secs = timed(lambda: leave_last_out(ds.interactions))
    table.row(name, "leave-last-out split", len(ds.interactions), secs)
    assemble_epoch(ds, split.train, args, table, name)
    raw = raw_column_bytes(ds) / MIB
    growth = (peak_mib() - args.baseline_mib) / raw
    text = f"{raw:,.0f} MiB; (peak - start) / raw = {growth:.1f}x"
    table.note(name, "raw interaction columns", text)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=10_000_000, help="synthetic interactions")
    p.add_argument("--per-user", type=int, default=50, help="synthetic interactions per user")
    p.add_argument("--items", type=int, default=50_000, help="synthetic catalogue size (at most)")
    p.add_argument("--history", type=int, default=50, help="history items per row")
    p.add_argument("--batch-size", type=int, default=1024, help="rows per batch")
    p.add_argument("--skip-movielens", action="store_true", help="only the synthetic part")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    args.baseline_mib = peak_mib()  # interpreter + numpy + pandas + torch
    print(f"peak RSS after imports: {args.baseline_mib:,.0f} MiB\n")
    table = Table()
    if not args.skip_movielens:
        bench_movielens(args, table)
    if args.n > 0:
        bench_synthetic(args, table)
    print(f"\ntorch threads: {torch.get_num_threads()}; peak RSS {peak_mib():,.0f} MiB")
    return vars(args)


if __name__ == "__main__":
    main()
