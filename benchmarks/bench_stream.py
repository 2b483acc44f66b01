"""Streaming (issue 7): peak memory of training from Parquet against loading the file, 1M and 10M.

Each size gets a Parquet file of random interactions (``user_id``, ``item_id``, ``rating``,
``click``; 100K users, 100K items, row groups of 100K rows), written once into ``--dir`` by a
separate process. Each case then runs in a fresh child process (``ru_maxrss`` is that case's
peak): the data step (``streaming``: the first pass over the row groups; ``memory``: read the
whole file, random split, features) and ``--steps`` training steps through the real ``Trainer``
with a buffer of ``--buffer`` rows. The model has no history encoder (streaming cannot feed one)
and sparse embedding tables: dimension 64, retrieval + rating + click, MMoE, batch 1024.

    python benchmarks/bench_stream.py                          # 1M and 10M rows, both modes
    python benchmarks/bench_stream.py --sizes 1000000 --modes streaming
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from hydrarec.config import Config, config_from_dict
from hydrarec.data.registry import load_dataset
from hydrarec.features.batch import Batch
from hydrarec.run.build import build_model
from hydrarec.run.data import TrainData, make_train_data
from hydrarec.run.stream_data import make_stream_train_data
from hydrarec.tasks.joint import JointLoss
from hydrarec.training.trainer import Trainer

BATCH, USERS, ITEMS, GROUP = 1024, 100_000, 100_000, 100_000


def write_file(path: Path, n: int) -> None:
    """``n`` random interactions, written 1M rows at a time (memory O(1M), not O(n))."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    writer = None
    for start in range(0, n, 1_000_000):
        m = min(1_000_000, n - start)
        rating = rng.integers(1, 6, m).astype(np.float32)
        part = pd.DataFrame(
            {
                "user_id": rng.integers(0, USERS, m),
                "item_id": rng.integers(0, ITEMS, m),
                "rating": rating,
                "click": (rating >= 4).astype(np.float32),
            }
        )
        table = pa.Table.from_pandas(part, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=GROUP)
    assert writer is not None
    writer.close()


def bench_config(path: Path, streaming: bool, buffer: int) -> Config:
    return config_from_dict(
        {
            "data": {
                "dataset": "tabular",
                "path": str(path.parent),
                "streaming": streaming,
                "buffer_rows": buffer,
                "split": {"kind": "random", "valid_ratio": 0.001, "test_ratio": 0.001},
                "tabular": {
                    "interactions": path.name,
                    "timestamp": None,
                    "labels": {"rating": "regression", "click": "binary"},
                },
            },
            "model": {"dim": 64, "sequence": {"kind": "none"}},
            "train": {"epochs": 2, "batch_size": BATCH, "device": "cpu", "sparse_embeddings": True},
            "tasks": [
                {"name": "retrieval", "kind": "retrieval"},
                {"name": "rating", "kind": "rating", "column": "rating"},
                {"name": "click", "kind": "binary", "column": "click"},
            ],
        }
    )


def child(path: Path, streaming: bool, buffer: int, steps: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    cfg = bench_config(path, streaming, buffer)
    start = time.perf_counter()
    data: TrainData = (
        make_stream_train_data(cfg) if streaming else make_train_data(cfg, load_dataset(cfg.data))
    )
    data_s = time.perf_counter() - start
    ds = data.dataset
    model = build_model(cfg, data.user_spec, data.item_spec, data.stats, ds.n_items)
    names = [t.name for t in cfg.tasks]
    objective = JointLoss(names, cfg.loss, dict.fromkeys(names, 1.0))
    trainer = Trainer(model, objective, cfg.train, device=torch.device("cpu"))

    def batches(epoch: int) -> Iterator[Batch]:
        return itertools.islice(data.epoch_batches(epoch), steps)

    result = trainer.fit(batches, steps, lambda m: {"x": 0.0}, "x", "min")
    seconds = float(result.history[-1]["seconds"])
    return {
        "mode": "streaming" if streaming else "memory",
        "rows": pq_rows(path),
        "buffer_rows": buffer if streaming else None,
        "data_s": round(data_s, 1),
        "step_s": round(seconds / steps, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def pq_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000000,10000000", help="rows, comma-separated")
    p.add_argument("--modes", default="streaming,memory", help="streaming, memory or both")
    p.add_argument("--buffer", type=int, default=200_000, help="shuffle buffer rows")
    p.add_argument("--steps", type=int, default=20, help="timed steps (after as many warm-up)")
    p.add_argument("--dir", default="/tmp/hydrarec_bench_stream", help="where the files go")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    p.add_argument("--write", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.write:  # the file, in a process of its own (its memory is not a case's)
        write_file(Path(args.child), args.write)
        return
    if args.child:
        mode, path = args.child.split(":", 1)
        print(json.dumps(child(Path(path), mode == "streaming", args.buffer, args.steps)))
        return
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in (int(float(x)) for x in args.sizes.split(",")):
        path = folder / f"interactions_{n}.parquet"
        if not path.is_file():
            run([sys.executable, __file__, "--child", str(path), "--write", str(n)])
        for mode in args.modes.split(","):
            cmd = [sys.executable, __file__, "--child", f"{mode}:{path}"]
            cmd += ["--buffer", str(args.buffer), "--steps", str(args.steps)]
            rows.append(json.loads(run(cmd).strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print("| rows | mode | buffer rows | data s | s/step | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['rows']:,} | {r['mode']} | {r['buffer_rows'] or '-'} | {r['data_s']} "
            f"| {r['step_s']} | {r['peak_rss_mib']:,} |"
        )


if __name__ == "__main__":
    main()
