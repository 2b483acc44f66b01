"""Issue 25's measurements: what events and ``hydrarec update`` buy over a stale run, how fast
``POST /events`` ingests, and what ``/recommend`` pays to read a user's events. Everything goes
through the product as a user runs it (``hydrarec train / update / serve`` subprocesses and the
HTTP API); the script only computes metrics from the top-10 lists the service returns.

    # the temporal protocol, four systems (MovieLens-100K; --dataset beauty for Amazon Beauty)
    python benchmarks/bench_online.py temporal --dataset ml100k --seeds 3
    python benchmarks/bench_online.py temporal --dataset beauty --seeds 3 [--set train.epochs=20]
    python benchmarks/bench_online.py temporal --quick   # smoke: 1 epoch (train, update), 1 seed
    # ingestion: concurrent clients POST /events batches to a served run's SQLite log
    python benchmarks/bench_online.py ingest --seconds 20 --clients 8 --batch 200
    python benchmarks/bench_online.py ingest --postgres          # a throwaway PostgreSQL 15 log
    # /recommend latency for users with 0 events vs 10 / 50 events (interleaved requests)
    python benchmarks/bench_online.py latency --requests 500

Environment: ``HYDRAREC_DATA_DIR`` (the data folder), ``OMP_NUM_THREADS`` (passed to every
subprocess). Derived files, runs and server logs go under ``--work`` (default
``runs/bench/online``, git-ignored); the Markdown report is printed and appended to ``--out``.

**temporal** (``online_data.py`` cuts the data): T1 and T2 are timestamp quantiles (MovieLens;
``--t1 0.8 --t2 0.9``) or positions (Beauty: per user last item after T2, the one before it the
event). The base config is the shipped one (``configs/ml100k_loo.toml``, ``configs/beauty.toml``)
with its ``[data]`` pointed at the derived files by ``--set`` (model and schedule kept; ``--set``
adds more, e.g. ``train.epochs=3``). Systems:

(a) stale: ``hydrarec train`` on before T1, served as it is;
(b) the same run served with ``--events`` (a fresh SQLite log) after ``POST /events`` of every
    T1..T2 interaction, in time order by one client (equal timestamps keep the data's order):
    ``/recommend`` reads them as history and excludes them;
(c) ``hydrarec update RUN_a --interactions between.parquet --items NEW_ITEMS --out RUN_c``
    (timed; NEW_ITEMS: the features of the items first seen between T1 and T2, as the retrain's
    items table has them; skipped with a message while this hydrarec has no ``update`` command;
    ``--update-arg`` passes more options);
(d) full retrain: ``hydrarec train`` on before T2 (timed).

Evaluation, the same for all four, through ``POST /recommend`` (k = 10, ``exclude_seen``, the
run's own two stages and blend): every user with an interaction after T2 (``--max-users`` takes a
random subset, for smoke runs); target = the user's first interaction after T2 (NDCG@10, HR@10),
and all their interactions after T2 as a set (Recall@10). A user the service does not know (404)
and a target item it does not know (``GET /items/{id}/similar`` 404) are misses; both are
counted. Each table is given twice: for every evaluated user, and for those with an interaction
before T2 (on MovieLens about half the users active after T2 are new then: no system knows
them; the users table holds the users of the training interactions, ``--all-users-table``
gives every user's features, as if known at sign-up). Ratios: the share of the (a) -> (d)
NDCG@10 gap that (b) closes, (c)/(d) NDCG@10 (issue target >= 0.97) and (c)/(d) training time
(target <= 0.25).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hydrarec.tasks.metrics import ndcg_at_k, recall_at_k
from online_data import Protocol, beauty, movielens
from online_http import (
    Lists,
    has_command,
    has_option,
    post_events,
    recommend_all,
    serve,
    train,
    unknown_items,
    update,
)
from online_service import ingest_command, latency_command
from provenance import git_commit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
K = 10
POPULATIONS = {
    "all": "Every evaluated user (an interaction after T2)",
    "with history": "Those with an interaction before T2 (whom a retrain on before T2 knows)",
}
ITEMS_NOTE = " and --items (the features of the items first seen between T1 and T2)"
SYSTEMS = {
    "a": "(a) stale: trained before T1",
    "b": "(b) stale + T1..T2 as events (POST /events)",
    "c": "(c) hydrarec update with T1..T2",
    "d": "(d) full retrain before T2",
}


@dataclass
class Measured:
    """One system on one seed."""

    ndcg: float
    hr: float
    recall: float
    unknown_users: int
    unknown_targets: int
    seconds: float | None = None  # training wall time: (a), (c), (d)
    events_used: int = 0
    note: str = ""  # what the training command said: best epoch, new users / items


def trained_note(run: Path, log: Path) -> str:
    """The run's best epoch (metrics.json) and, for ``hydrarec update``, its summary line."""
    note = ""
    metrics = run / "metrics.json"
    if metrics.is_file():
        done = json.loads(metrics.read_text()).get("train", {})
        if "best_epoch" in done:
            note = f"best epoch {done['best_epoch']} of {done.get('epochs', '?')}"
    said = re.search(r"([\d,]+ new interactions.*?new items)", " ".join(log.read_text().split()))
    return f"{said.group(1)}; {note}" if said else note


@dataclass
class Results:
    per_system: dict[str, list[Measured]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def add(self, system: str, m: Measured) -> None:
        self.per_system.setdefault(system, []).append(m)


def evaluate(lists: Lists, proto: Protocol, users: list[Any], missing_items: set[Any]) -> Measured:
    """NDCG@10 / HR@10 of the first item after T2, Recall@10 of all, from the service's lists."""
    top = np.empty((len(users), K), dtype=object)
    for r, u in enumerate(users):
        row = lists.items.get(u, [])
        top[r] = row[:K] + [None] * (K - len(row[:K]))
    first = [{proto.targets[u]} for u in users]
    every = [proto.after[u] for u in users]
    return Measured(
        ndcg=ndcg_at_k(top, first, K),
        hr=recall_at_k(top, first, K),
        recall=recall_at_k(top, every, K),
        unknown_users=len(set(users) & set(lists.unknown_users)),
        unknown_targets=sum(proto.targets[u] in missing_items for u in users),
        events_used=sum(lists.events_used.get(u, 0) for u in users),
    )


def measure_served(
    run: Path,
    proto: Protocol,
    users: list[Any],
    log: Path,
    args: argparse.Namespace,
    events: Path | None = None,
) -> tuple[Lists, set[Any]]:
    """Serve ``run`` (with a fresh event log holding the T1..T2 events when ``events``), ask
    ``/recommend`` for every user; the lists and the targets the run does not know."""
    target = None
    if events is not None:
        events.unlink(missing_ok=True)
        for extra in ("-wal", "-shm"):
            Path(f"{events}{extra}").unlink(missing_ok=True)
        target = str(events)
    with serve(run, log, events=target, model_processes=args.model_processes) as service:
        if events is not None:
            t = time.perf_counter()
            sums = asyncio.run(
                post_events(service, proto.events, batch=args.event_batch, clients=1)
            )
            print(f"    POST /events: {sums} in {time.perf_counter() - t:.1f} s", flush=True)
            if sums["stored"] != len(proto.events):
                raise RuntimeError(f"stored {sums['stored']} of {len(proto.events)} events")
        t = time.perf_counter()
        lists = asyncio.run(recommend_all(service, users, K, clients=args.clients))
        targets = sorted({proto.targets[u] for u in users})
        missing = asyncio.run(unknown_items(service, targets, clients=args.clients))
        print(f"    /recommend for {len(users)} users: {time.perf_counter() - t:.1f} s", flush=True)
    return lists, missing


def run_seed(
    proto: Protocol,
    seed: int,
    populations: dict[str, list[Any]],
    work: Path,
    args: argparse.Namespace,
    results: dict[str, Results],
) -> None:
    sets = [*args.set, f"train.seed={seed}"]
    run_a, run_c, run_d = (work / f"run-{s}-seed{seed}" for s in "acd")
    logs = work / "logs"

    users = populations["all"]

    def report(
        system: str, got: tuple[Lists, set[Any]], secs: float | None = None, note: str = ""
    ) -> None:
        said = [f"trained in {secs:.0f} s"] if secs else []
        print(f"  {SYSTEMS[system]}" + "".join(f"; {x}" for x in [*said, note] if x), flush=True)
        for name, group in populations.items():
            m = evaluate(got[0], proto, group, got[1])
            m.seconds, m.note = secs, note
            results[name].add(system, m)
            print(
                f"    {name} ({len(group)} users): NDCG@10 {m.ndcg:.4f}, HR@10 {m.hr:.4f}, "
                f"Recall@10 {m.recall:.4f}; unknown users {m.unknown_users}, targets "
                f"{m.unknown_targets}",
                flush=True,
            )

    print(f"seed {seed}: training (a) on before T1 ...", flush=True)
    secs = train(proto.config, run_a, proto.sets_t1 + sets, logs / f"train-a-{seed}.log")
    got = measure_served(run_a, proto, users, logs / f"serve-a-{seed}.log", args)
    report("a", got, secs, trained_note(run_a, logs / f"train-a-{seed}.log"))
    print(f"seed {seed}: (b) serving (a) with the T1..T2 events ...", flush=True)
    events = work / f"events-seed{seed}.db"
    report("b", measure_served(run_a, proto, users, logs / f"serve-b-{seed}.log", args, events))
    if args.update:
        print(f"seed {seed}: (c) hydrarec update ...", flush=True)
        extra = [*args.update_arg, "--seed", str(seed), "-q"]
        if args.update_items:  # the new items' features, as the retrain's items table has them
            extra += ["--items", str(proto.new_items)]
        secs = update(run_a, proto.between, run_c, extra, logs / f"update-c-{seed}.log")
        got = measure_served(run_c, proto, users, logs / f"serve-c-{seed}.log", args)
        report("c", got, secs, trained_note(run_c, logs / f"update-c-{seed}.log"))
    print(f"seed {seed}: (d) training on before T2 ...", flush=True)
    secs = train(proto.config, run_d, proto.sets_t2 + sets, logs / f"train-d-{seed}.log")
    got = measure_served(run_d, proto, users, logs / f"serve-d-{seed}.log", args)
    report("d", got, secs, trained_note(run_d, logs / f"train-d-{seed}.log"))


# -- the report ------------------------------------------------------------------------------------
def cell(values: list[float], digits: int = 4) -> str:
    if not values:
        return "-"
    sd = f" ± {np.std(values):.{digits}f}" if len(values) > 1 else ""
    return f"{np.mean(values):.{digits}f}{sd}"


def temporal_table(results: Results) -> str:
    out = [
        "| system | NDCG@10 | HR@10 | Recall@10 (all after T2) | train s | unknown users / "
        "targets | events used | per seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s, name in SYSTEMS.items():
        ms = results.per_system.get(s)
        if not ms:
            out.append(f"| {name} | skipped: {results.skipped.get(s, '')} | | | | | | |")
            continue
        secs = [m.seconds for m in ms if m.seconds is not None]
        out.append(
            f"| {name} | {cell([m.ndcg for m in ms])} | {cell([m.hr for m in ms])} | "
            f"{cell([m.recall for m in ms])} | {cell(secs, 0) if secs else '-'} | "
            f"{ms[0].unknown_users} / {ms[0].unknown_targets} | {ms[0].events_used:,} | "
            f"{'; '.join(f'seed {j}: {m.note}' for j, m in enumerate(ms) if m.note) or '-'} |"
        )
    return "\n".join(out)


def ratios(results: Results) -> list[str]:
    """Per seed, then mean ± std: (b)'s share of the (a) -> (d) gap, (c)/(d) quality and time."""
    got = results.per_system
    a, b, d = got.get("a", []), got.get("b", []), got.get("d", [])
    lines = []
    gap = [
        (mb.ndcg - ma.ndcg) / (md.ndcg - ma.ndcg)
        for ma, mb, md in zip(a, b, d, strict=True)
        if md.ndcg != ma.ndcg
    ]
    lines.append(f"- (b) closes {cell(gap, 2)} of the (a) -> (d) NDCG@10 gap (per seed)")
    if a and b and d:
        mean = {s: float(np.mean([m.ndcg for m in got[s]])) for s in "abd"}
        if mean["d"] != mean["a"]:
            share = (mean["b"] - mean["a"]) / (mean["d"] - mean["a"])
            lines.append(f"- of the seeds' means: {share:.2f}")
    c = got.get("c", [])
    if c:
        q = [mc.ndcg / md.ndcg for mc, md in zip(c, d, strict=True) if md.ndcg > 0]
        t = [
            mc.seconds / md.seconds
            for mc, md in zip(c, d, strict=True)
            if mc.seconds and md.seconds
        ]
        lines.append(f"- (c)/(d) NDCG@10: {cell(q, 3)} (target >= 0.97)")
        lines.append(f"- (c)/(d) training wall time: {cell(t, 3)} (target <= 0.25)")
    else:
        lines.append(f"- (c): {results.skipped.get('c', 'not run')}")
    return lines


def temporal_command(args: argparse.Namespace) -> str:
    work = args.work / args.dataset
    (work / "logs").mkdir(parents=True, exist_ok=True)
    data_dir = Path(os.environ.get("HYDRAREC_DATA_DIR", ROOT.parent / "shared" / "data"))
    if args.quick:
        args.set = ["train.epochs=1", *args.set]
        args.seeds = 1
        if not any(a.startswith("--epochs") for a in args.update_arg):
            args.update_arg = ["--epochs", "1", *args.update_arg]
    print(f"cutting {args.dataset} into {work} ...", flush=True)
    proto = (
        movielens(work, args.t1, args.t2, args.all_users_table)
        if args.dataset == "ml100k"
        else beauty(work, data_dir)
    )
    print(f"  {proto.note}\n  {proto.counts}", flush=True)
    users = sorted(proto.targets)
    if args.max_users and args.max_users < len(users):
        pick = np.random.default_rng(0).choice(len(users), args.max_users, replace=False)
        users = [users[i] for i in sorted(pick)]
    populations = {
        "all": users,
        "with history": [u for u in users if u in proto.history_users],
    }
    results = {name: Results() for name in populations}
    args.update = has_command("update")
    args.update_items = args.update and has_option("update", "--items")
    if not args.update:
        for r in results.values():
            r.skipped["c"] = "this hydrarec has no `update` command yet"
        print("(c) skipped: `hydrarec update --help` fails: no update command yet", flush=True)
    for seed in range(args.seeds):
        run_seed(proto, seed, populations, work, args, results)
    if not args.keep_runs:
        for run in work.glob("run-*"):
            shutil.rmtree(run, ignore_errors=True)
    cmd = " ".join(["python benchmarks/bench_online.py", *sys.argv[1:]])
    lines = [
        f"## Online, temporal protocol: {args.dataset} ({time.strftime('%Y-%m-%d')}, commit "
        f"{git_commit()})",
        "",
        f"`{cmd}`, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"{args.seeds} seed(s){' (QUICK: a smoke run, not a measurement)' if args.quick else ''}",
        "",
        f"{proto.note}. {proto.counts}; evaluated: {len(users):,} users. Base config "
        f"`{proto.config.relative_to(ROOT)}`, `[data]` replaced by the derived files; extra "
        f"`--set`: {', '.join(args.set) or 'none'}; update options: "
        f"{' '.join(args.update_arg) or 'none'}"
        f"{ITEMS_NOTE if args.update_items else ''}. Every list "
        f"is the service's `POST /recommend` "
        f"(k = 10, exclude_seen, the run's blend); unknown users / targets: counted as misses.",
    ]
    for name, group in populations.items():
        lines += ["", f"### {POPULATIONS[name]}: {len(group):,} users", "",
                  temporal_table(results[name]), "", *ratios(results[name])]  # fmt: skip
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench" / "online")
    p.add_argument("--out", type=Path, default=HERE / "results" / "ONLINE.md")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("temporal", help="stale / events / update / retrain on a temporal cut")
    t.add_argument("--dataset", choices=["ml100k", "beauty"], default="ml100k")
    t.add_argument("--seeds", type=int, default=1)
    t.add_argument("--t1", type=float, default=0.8, help="MovieLens: T1's timestamp quantile")
    t.add_argument("--t2", type=float, default=0.9, help="MovieLens: T2's timestamp quantile")
    t.add_argument(
        "--all-users-table",
        action="store_true",
        help="MovieLens: every user's features in each users table (default: trained users')",
    )
    t.add_argument("--set", action="append", default=[], help="passed to hydrarec train --set")
    t.add_argument(
        "--update-arg",
        action="append",
        default=[],
        help="passed to hydrarec update, e.g. --update-arg=--epochs --update-arg=3",
    )
    t.add_argument(
        "--quick", action="store_true", help="smoke: train.epochs=1, update --epochs 1, one seed"
    )
    t.add_argument("--max-users", type=int, default=0, help="evaluate a random subset (smoke)")
    t.add_argument("--clients", type=int, default=4, help="concurrent /recommend clients")
    t.add_argument("--event-batch", type=int, default=1000, help="events per POST /events")
    t.add_argument("--model-processes", type=int, default=0, help="hydrarec serve's option")
    t.add_argument("--keep-runs", action="store_true", help="keep the trained runs")
    i = sub.add_parser("ingest", help="POST /events throughput and latency")
    i.add_argument("--seconds", type=float, default=20.0)
    i.add_argument("--max-events", type=int, default=0, help="stop after this many (0: none)")
    i.add_argument("--clients", type=int, default=8)
    i.add_argument("--batch", type=int, default=200, help="events per request")
    i.add_argument("--events", default=None, help="log: SQLite path or postgresql:// URL")
    i.add_argument("--postgres", action="store_true", help="start a throwaway PostgreSQL log")
    i.add_argument("--run", type=Path, default=None, help="run to serve (default: train one)")
    lat = sub.add_parser("latency", help="/recommend p50 / p99 with 0 vs 10 / 50 events")
    lat.add_argument("--requests", type=int, default=500, help="per condition")
    lat.add_argument("--users", type=int, default=100, help="users per group")
    lat.add_argument("--counts", default="10,50", help="events per user of the event group")
    lat.add_argument(
        "--model-processes", type=int, default=None, help="hydrarec serve's (default: its own)"
    )
    lat.add_argument("--run", type=Path, default=None, help="run to serve (default: train one)")
    return p


def main() -> None:
    args = parser().parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    commands = {"temporal": temporal_command, "ingest": ingest_command, "latency": latency_command}
    text = commands[args.command](args) + "\n"
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", encoding="utf-8") as f:
        f.write("\n" + text)
    print(f"appended to {args.out}")


if __name__ == "__main__":
    main()
