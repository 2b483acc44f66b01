"""Scale: training time and memory from 1M to 10M (100M) synthetic interactions; 2 gloo ranks vs 1.

The model is the multi-task config at dimension 64: retrieval (in-batch sampled softmax, logQ) +
two binary tasks (click, like) + rating, MMoE, a one-block causal transformer over the last 20
items, global batch 1024. Each case runs in a fresh child process (so ``ru_maxrss`` is that
case's peak) that generates the data, splits it and fits the features, then trains through the
real ``Trainer`` for 2 epochs of ``--steps`` batches each: epoch 1 warms up, epoch 2 is timed
(its one-off start, the shuffle of all train rows, is counted once per epoch: ``extrapolate``).

Reported per case: data seconds (generate + split + features), seconds per step (wall, and
the process's CPU seconds: steadier on a machine shared with other jobs, which stretch wall
time but not CPU time) and examples per second, seconds per epoch EXTRAPOLATED from the timed
steps (steps per epoch x seconds per step: a PARTIAL-epoch measurement, since a full epoch at
10M would take hours on 2 cores), peak RSS, and the growth exponent of time against size
between the two sizes at the same catalogue
(log(t2 / t1) / log(n2 / n1); 1.0 is linear). ``--ddp`` also trains the smallest case with 2
gloo ranks (1 thread each, as torchrun sets OMP_NUM_THREADS=1) against 1 process with 2 threads
and with 1 thread: global examples per second at the same global batch. (``--threads`` sets the
single-process cases' torch threads: on a machine shared with other jobs 2 intra-op threads
can be far slower than 1, because every parallel region waits for its slowest thread.)
``--embeddings dense,sparse`` runs every case with AdamW over whole embedding tables and with
sparse tables (``train.sparse_embeddings``: SparseAdam on the rows a batch touched).

    python benchmarks/bench_scale.py                       # 1M and 10M x 100K and 1M items
    python benchmarks/bench_scale.py --embeddings sparse   # sparse tables only
    python benchmarks/bench_scale.py --sizes 1000000 --items 100000 --steps 4 --ddp
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from hydrarec.config import Config, config_from_dict
from hydrarec.data.registry import load_dataset
from hydrarec.features.batch import Batch
from hydrarec.run.build import build_model
from hydrarec.run.data import make_train_data
from hydrarec.tasks.joint import JointLoss
from hydrarec.training.distributed import process_group
from hydrarec.training.trainer import Trainer

BATCH = 1024
INTERACTIONS_PER_USER = 20


def bench_config(n: int, items: int, sparse: bool = False) -> Config:
    """The multi-task config of the benchmark (see the module doc)."""
    return config_from_dict(
        {
            "data": {
                "dataset": "synthetic",
                "synthetic": {
                    "n_users": max(n // INTERACTIONS_PER_USER, 10),
                    "n_items": items,
                    "n_interactions": n,
                    "seed": 0,
                },
                "split": {"kind": "leave_last_out"},
            },
            "model": {
                "dim": 64,
                "sequence": {"kind": "transformer", "max_len": 20, "layers": 1, "dropout": 0.0},
                "architecture": {"name": "mmoe"},
            },
            "train": {
                "epochs": 2,
                "batch_size": BATCH,
                "lr": 0.003,
                "device": "cpu",
                "sparse_embeddings": sparse,
                # a thread assembles the next 2 batches: +10-15 % examples/s here (2,951 without,
                # 3,240-3,425 with, 1M x 100K, 1 process, sparse tables)
                "prefetch": 2,
            },
            "tasks": [
                {"name": "retrieval", "kind": "retrieval"},
                {"name": "rating", "kind": "rating", "column": "rating"},
                {"name": "click", "kind": "binary", "column": "click"},
                {"name": "like", "kind": "binary", "column": "like"},
            ],
        }
    )


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def clocks() -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds)."""
    return time.perf_counter(), time.process_time()


def extrapolate(marks: list[tuple[float, float]], steps_per_epoch: int) -> dict[str, float]:
    """Per-step and per-epoch seconds (wall, CPU) from the clocks read at the timed epoch's
    start (``marks[0]``) and as each of its steps finished (``marks[1:]``).

    Steady step: the mean interval between the ends of steps 1 and k (a step, plus whatever of
    the next batch's assembly the background thread has not done by then). The epoch's start
    (the shuffle of every train row, O(n), the first batch's assembly and the first step) is
    counted once, not once per step: a per-step mean over a few steps would charge the shuffle
    to every step of the extrapolated epoch.
    """
    out = {}
    for key, c in (("", 0), ("cpu_", 1)):
        steady = (marks[-1][c] - marks[1][c]) / max(1, len(marks) - 2)
        start = marks[1][c] - marks[0][c]  # the shuffle and the first batch's assembly
        out[f"{key}step_s"] = round(steady, 3)
        out[f"{key}epoch_start_s"] = round(start, 2)
        out[f"epoch_{key}s_extrapolated"] = round(start + steady * steps_per_epoch, 1)
    return out


def train_steps(cfg: Config, steps: int) -> dict[str, Any]:
    """Data + 2 epochs of ``steps`` batches through ``Trainer`` (torchrun env: DDP)."""
    start = time.perf_counter()
    with process_group(torch.device("cpu")) as (dist, device):
        ds = load_dataset(cfg.data)
        data = make_train_data(cfg, ds, dist.rank, dist.world_size)
        data_s = time.perf_counter() - start
        model = build_model(cfg, data.user_spec, data.item_spec, data.stats, ds.n_items)
        names = [t.name for t in cfg.tasks]
        objective = JointLoss(names, cfg.loss, {n: 1.0 for n in names})
        marks: list[tuple[float, float]] = []  # the timed epoch (2)'s clocks

        class Timed(Trainer):
            """Clocks after each step of epoch 2 (not in ``batches``: with ``train.prefetch``
            a background thread runs that generator ahead of the steps)."""

            def _step(self, batch: Batch) -> tuple[dict[str, float], dict[str, float]]:
                out = super()._step(batch)
                if self.state.epoch == 1:  # epoch 2 under way
                    marks.append(clocks())
                return out

        trainer = Timed(model, objective, cfg.train, device=device, dist=dist)

        def batches(epoch: int) -> Iterator[Batch]:
            if epoch == 2:
                marks.append(clocks())  # the epoch starts (shuffle, first batch)
            yield from itertools.islice(data.epoch_batches(epoch), steps)

        trainer.fit(batches, steps, lambda m: {"x": 0.0}, "x", "min")
        timing = extrapolate(marks, data.steps_per_epoch)
        return {
            "rank": dist.rank,
            "world_size": dist.world_size,
            "threads": torch.get_num_threads(),
            "embeddings": "sparse" if cfg.train.sparse_embeddings else "dense",
            "n": len(ds.interactions),
            "items": ds.n_items,
            "train_rows": len(data.split.train),
            "data_s": round(data_s, 1),
            "examples_per_s": round(BATCH / timing["step_s"], 1),
            "steps_per_epoch": data.steps_per_epoch,
            **timing,
            "peak_rss_mib": round(peak_rss_mib()),
        }


def _rank_main(
    rank: int, world: int, port: int, n: int, items: int, steps: int, out: str, sparse: bool
) -> None:
    """One gloo rank, started by ``torch.multiprocessing`` with torchrun's variables."""
    os.environ |= {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    torch.set_num_threads(1)
    row = train_steps(bench_config(n, items, sparse), steps)
    Path(out, f"rank{rank}.json").write_text(json.dumps(row))


def child(args: argparse.Namespace) -> None:
    """One case in this process; prints one JSON line."""
    if args.world > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        out = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_scale_{os.getpid()}"
        out.mkdir(exist_ok=True)
        spawn_args = (args.world, port, args.n, args.items, args.steps, str(out), args.sparse)
        mp.spawn(_rank_main, args=spawn_args, nprocs=args.world, join=True)
        rows = [json.loads((out / f"rank{r}.json").read_text()) for r in range(args.world)]
        row = rows[0] | {"peak_rss_mib": sum(r["peak_rss_mib"] for r in rows)}  # all ranks
    else:
        torch.set_num_threads(args.threads)
        row = train_steps(bench_config(args.n, args.items, args.sparse), args.steps)
    print(json.dumps(row), flush=True)


def run_case(
    n: int, items: int, steps: int, world: int = 1, threads: int = 1, sparse: bool = False
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--n", str(n), "--items", str(items)]
    cmd += ["--steps", str(steps), "--world", str(world), "--threads", str(threads)]
    cmd += ["--sparse"] if sparse else []
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"case n={n} items={items} world={world} failed:\n{proc.stderr[-3000:]}")
    row: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(row), file=sys.stderr, flush=True)  # progress while the others run
    return row


def growth(rows: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Exponent of ``key`` against n between the smallest and largest n, per catalogue size
    and embedding update."""
    out = {}
    for items, emb in sorted({(r["items"], r["embeddings"]) for r in rows}):
        same = [r for r in rows if r["items"] == items and r["embeddings"] == emb]
        same.sort(key=lambda r: r["n"])
        if len(same) >= 2 and same[0][key] > 0:
            a, b = same[0], same[-1]
            exponent = math.log(b[key] / a[key]) / math.log(b["n"] / a["n"])
            out[f"{items:,} items, {emb}"] = round(exponent, 2)
    return out


def report(rows: list[dict[str, Any]], ddp: list[dict[str, Any]]) -> None:
    print(
        "| interactions | items | embeddings | data s | s/step | CPU s/step | examples/s "
        "| epoch start CPU s | epoch s (extrapolated) | epoch CPU s (extrapolated) "
        "| peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['n']:,} | {r['items']:,} | {r['embeddings']} | {r['data_s']} | {r['step_s']} "
            f"| {r['cpu_step_s']} | {r['examples_per_s']} | {r['cpu_epoch_start_s']} "
            f"| {r['epoch_s_extrapolated']:,} | {r['epoch_cpu_s_extrapolated']:,} "
            f"| {r['peak_rss_mib']:,} |"
        )
    print(
        f"\ngrowth exponent, epoch time vs n (per catalogue size): "
        f"{growth(rows, 'epoch_s_extrapolated')}"
    )
    print(f"growth exponent, epoch CPU time vs n: {growth(rows, 'epoch_cpu_s_extrapolated')}")
    print(f"growth exponent, data time vs n: {growth(rows, 'data_s')}")
    if ddp:
        print("\n| processes x threads | examples/s | s/step | peak RSS MiB (all ranks) |")
        print("|---|---|---|---|")
        for r in ddp:
            print(
                f"| {r['world_size']} x {r['threads']} | {r['examples_per_s']} | "
                f"{r['step_s']} | {r['peak_rss_mib']:,} |"
            )
        for r in ddp[:2]:
            ratio = ddp[-1]["examples_per_s"] / r["examples_per_s"]
            print(f"\n2 ranks x 1 thread / 1 process x {r['threads']} threads: {ratio:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000000,10000000", help="interactions, comma-separated")
    p.add_argument("--items", default="100000,1000000", help="catalogue sizes, comma-separated")
    p.add_argument("--steps", type=int, default=6, help="timed steps (after as many warm-up)")
    p.add_argument("--ddp", action="store_true", help="also 2 gloo ranks vs 1 process")
    p.add_argument(
        "--embeddings",
        default="dense,sparse",
        help="embedding updates, comma-separated: dense (AdamW on whole tables), sparse "
        "(SparseAdam on the batch's rows); --ddp uses the first",
    )
    p.add_argument("--sparse", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--world", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help="torch threads of a single process")
    args = p.parse_args()
    if args.child:
        args.items = int(args.items)
        child(args)
        return
    sizes = [int(float(x)) for x in args.sizes.split(",")]
    catalogues = [int(float(x)) for x in args.items.split(",")]
    modes = [m.strip() for m in args.embeddings.split(",")]
    if not modes or set(modes) - {"dense", "sparse"}:
        p.error(f"--embeddings {args.embeddings!r}: dense, sparse or both")
    rows = [
        run_case(n, i, args.steps, threads=args.threads, sparse=m == "sparse")
        for n in sizes
        for i in catalogues
        for m in modes
    ]
    ddp = []
    if args.ddp:  # 1 process x 2 threads, 1 x 1, 2 ranks x 1 thread
        n, i, sp = sizes[0], catalogues[0], modes[0] == "sparse"
        ddp = [run_case(n, i, args.steps, 1, t, sp) for t in (2, 1)]
        ddp.append(run_case(n, i, args.steps, 2, sparse=sp))
    report(rows, ddp)


if __name__ == "__main__":
    main()
