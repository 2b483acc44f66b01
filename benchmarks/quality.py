"""Quality against the field (issue 8): hydrarec and its peers, same split, same process tree.

    python benchmarks/quality.py ML100K-U1 [--seeds 3] [--quick] [--systems a,b] [--set k=v]

Protocols (../shared/DESIGN.md): ML100K-U1, ML100K-LOO, ML100K-MT, TFRS-MT, MMOE-SYN, SPEED.
Every system runs in a child process of this script (``--child``), so its peak memory is its own
and a peer that fails is reported as failed, not dropped. hydrarec runs its shipped config with
seeds 0..N-1 (mean ± std; checkpoints chosen on valid, test read once per run); peers are tuned on
valid (see each adapter in ``benchmarks/peers/``). Rows are printed as Markdown and appended to
``benchmarks/results/<protocol>.md``. ``--quick``: one seed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, replace
from datetime import date
from pathlib import Path
from typing import Any

from peers.common import Result, peak_mib

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
U1, LOO, MT, TFRS = "ML100K-U1", "ML100K-LOO", "ML100K-MT", "TFRS-MT"
BEAUTY = "BEAUTY-LOO"  # Amazon Beauty, S3-Rec's files (issue 19)
BEAUTY_FILES = {
    "file": "amazon-beauty/Beauty.txt",
    "item_attributes": "amazon-beauty/Beauty_item2attributes.json",
}

# protocol -> system -> adapter spec: ("hydrarec", config) or (peer, args)
SYSTEMS: dict[str, dict[str, tuple[str, ...]]] = {
    U1: {
        # the best config on valid: the rating head + the I-AutoRec path, blended (issue 8)
        "hydrarec": ("hydrarec", "configs/ml100k_u1_autorec.toml"),
        "hydrarec-head": ("hydrarec", "configs/ml100k_u1_best.toml"),  # without the AutoRec path
        "svd": ("surprise", "svd"),
        "svdpp": ("surprise", "svdpp"),
        "svd-default": ("surprise-default", "svd"),
        "svdpp-default": ("surprise-default", "svdpp"),
    },
    LOO: {
        # the shipped best for this protocol on validation (3 seeds): window (SASRec-style)
        # training with item text through MiniLM; without the text, "hydrarec-notext" (issue 8)
        "hydrarec": ("hydrarec", "configs/ml100k_loo_text.toml"),
        "hydrarec-notext": ("hydrarec", "configs/ml100k_loo.toml"),
        "hydrarec-mmoe": ("hydrarec", "configs/ml100k_mmoe.toml"),
        "hydrarec-retrieval": ("hydrarec", "configs/ml100k_single_retrieval.toml"),
        # "hydrarec" as a deep ensemble of 3 (model.ensemble; 3x the training work)
        "hydrarec-ensemble": ("hydrarec", "configs/ml100k_loo_ensemble.toml"),
        "popular": ("popular",),
        "als": ("implicit", "als"),
        "bpr": ("implicit", "bpr"),
        "lightfm": ("lightfm", "plain"),
        "lightfm-features": ("lightfm", "features"),
        "sasrec": ("sasrec",),
        # every system refit on train + valid after selection, as the implicit and LightFM rows
        # already are (train.refit; SASRec's adapter retrains for its best epochs)
        "hydrarec-refit": ("hydrarec", "configs/ml100k_loo_text.toml", "train.refit=true"),
        "sasrec-refit": ("sasrec", "refit"),
        "hydrarec-ensemble-refit": (
            "hydrarec",
            "configs/ml100k_loo_ensemble.toml",
            "train.refit=true",
        ),
    },
    MT: {
        "single-rating": ("hydrarec", "configs/ml100k_single_rating.toml"),
        "single-like": ("hydrarec", "configs/ml100k_single_like.toml"),
        "single-retrieval": ("hydrarec", "configs/ml100k_single_retrieval.toml"),
        "shared_bottom": ("hydrarec", "configs/ml100k_shared_bottom.toml"),
        "mmoe": ("hydrarec", "configs/ml100k_mmoe.toml"),
        "ple": ("hydrarec", "configs/ml100k_ple.toml"),
    },
    TFRS: {"hydrarec": ("hydrarec-tfrs", "configs/tfrs_mt.toml")},
    BEAUTY: {
        # the shipped config (issue 19), and its single-task / multi-task variants
        "hydrarec": ("hydrarec", "configs/beauty.toml"),
        # the next-item config hydrarec had before issue 19 (ml100k_loo.toml's model and
        # schedule; its MovieLens-only tasks cut), adapted only in its data section
        "hydrarec-before": ("hydrarec", "benchmarks/configs/beauty_before.toml"),
        "hydrarec-hstu": ("hydrarec", "configs/beauty.toml", "model.sequence.kind=hstu"),
        # the shipped config under its own name: the single-task row beside the variants when
        # they run with other --set overrides (a shorter schedule) than the headline
        "hydrarec-single": ("hydrarec", "configs/beauty.toml"),
        # multi-task: + the reconstruction of the item attributes (kept only if valid says so)
        "hydrarec-attributes": ("hydrarec", "benchmarks/configs/beauty_attributes.toml"),
        # after validation chose the epochs, a fresh model trained on train + valid (train.refit)
        "hydrarec-refit": ("hydrarec", "configs/beauty.toml", "train.refit=true"),
        "popular": ("popular",),
        "lightfm-features": ("lightfm", "features"),
        "sasrec": ("sasrec",),
    },
}
COLUMNS = {
    U1: ["rmse", "mae"],
    LOO: ["hr@10", "ndcg@10", "hr@20", "ndcg@20"],
    MT: ["rating/rmse", "like/auc", "retrieval/ndcg@10"],
    TFRS: ["top100", "rating/rmse"],
    BEAUTY: ["hr@10", "ndcg@10", "hr@20", "ndcg@20", "with_known/hr@10", "with_known/ndcg@10"],
}
PREFIXES = ("", "retrieval/", "rating/")


def split_of(protocol: str) -> Any:
    from hydrarec.config import SplitConfig

    if protocol == U1:
        return SplitConfig(kind="given", given="u1")
    return SplitConfig(kind="leave_last_out")


def data_of(protocol: str) -> Any:
    """The protocol's ``[data]`` section (its split aside): MovieLens-100K, or Beauty."""
    from hydrarec.config import DataConfig, SequencesConfig

    if protocol == BEAUTY:
        return DataConfig(dataset="sequences", sequences=SequencesConfig(**BEAUTY_FILES))
    return DataConfig(dataset="movielens-100k")


def run_system(protocol: str, system: str, args: argparse.Namespace) -> Result:
    """Run one system in this process (the child's job)."""
    kind, *rest = SYSTEMS[protocol][system]
    if kind.startswith("hydrarec"):
        from peers import hydrarec_runs

        seeds = 1 if args.quick else args.seeds
        return hydrarec_runs.run(  # the spec's own overrides, then the command line's
            system,
            rest[0],
            seeds,
            [*rest[1:], *args.set],
            protocol,
            tfrs=kind == "hydrarec-tfrs",
            reuse=args.reuse,
        )
    from peers.common import load_split

    data = load_split(split_of(protocol), data_of(protocol))
    if kind == "surprise":
        from peers import surprise_peers

        return surprise_peers.run(rest[0], data)
    if kind == "surprise-default":
        from peers import surprise_peers

        return surprise_peers.run_default(rest[0], data)
    if kind == "popular":
        from peers import popularity

        return popularity.run(data)
    if kind == "implicit":
        from peers import implicit_peers

        return implicit_peers.run(rest[0], data)
    if kind == "lightfm":
        from peers import lightfm_peer

        return lightfm_peer.run(data, with_features=rest[0] == "features")
    if kind == "sasrec":
        from peers import rechub_sasrec

        params = rechub_sasrec.Params(budget_s=args.budget_s, refit=rest == ["refit"])
        if protocol == BEAUTY:  # SASRec's own setting for the sparse Amazon data (paper, 4.3)
            params = replace(params, dropout=0.5)
        return rechub_sasrec.run(data, p=params)
    raise ValueError(f"unknown adapter {kind!r}")


def child(protocol: str, system: str, out: Path, args: argparse.Namespace) -> None:
    try:
        res = run_system(protocol, system, args)
    except Exception as e:  # a peer that fails is reported, not dropped
        traceback.print_exc()
        res = Result(system, {}, 0.0, {}, note=f"FAILED: {type(e).__name__}: {e}"[:300])
    res.peak_mib = peak_mib()
    out.write_text(json.dumps(asdict(res)))


def spawn(protocol: str, system: str, args: argparse.Namespace) -> Result:
    """Run ``system`` in a child process; its Result (or the failure) comes back as JSON."""
    out = HERE / ".cache" / f"{protocol}-{system}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, protocol, "--child", system, "--child-out", str(out)]
    cmd += [f"--seeds={args.seeds}", f"--budget-s={args.budget_s}"]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--reuse"] if args.reuse else []
    cmd += [x for s in args.set for x in ("--set", s)]
    print(f"== {protocol} / {system}", flush=True)
    proc = subprocess.run(cmd, check=False)
    if not out.exists():
        return Result(system, {}, 0.0, {}, note=f"FAILED: child exited {proc.returncode}")
    return Result(**json.loads(out.read_text()))


def commit() -> str:
    cmd = ["git", "rev-parse", "--short", "HEAD"]
    head = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True)
    return head + ("+dirty" if dirty.stdout.strip() else "")


def cell(metrics: dict[str, float], name: str) -> str:
    for p in PREFIXES:
        if p + name in metrics:
            v, s = metrics[p + name], metrics.get(p + name + "_std")
            return f"{v:.4f}" if s is None else f"{v:.4f} ± {s:.4f}"
    return "-"


def header(protocol: str) -> list[str]:
    cols = COLUMNS[protocol]
    names = [
        "protocol",
        "system",
        *cols,
        "train s",
        "peak MiB",
        "hyper-parameters",
        "commit",
        "date",
    ]
    return ["| " + " | ".join(names) + " |", "|---" * len(names) + "|"]


def row(protocol: str, r: Result, rev: str) -> str:
    cells = [cell(r.metrics, c) for c in COLUMNS[protocol]]
    params = json.dumps(r.params, separators=(",", ":")).replace("|", "/")
    note = f" ({r.note})" if r.note else ""
    return (
        f"| {protocol} | {r.system} | {' | '.join(cells)} | {r.seconds:.1f} | "
        f"{r.peak_mib:.0f} | `{params}`{note} | {rev} | {date.today().isoformat()} |"
    )


def write(protocol: str, lines: list[str], head: list[str] | None = None) -> None:
    """Append ``lines`` to results/<protocol>.md (the header first when the file is new)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{protocol}.md"
    new = not path.exists()
    with path.open("a", encoding="utf-8") as f:
        if new:
            f.write("\n".join(head if head is not None else header(protocol)) + "\n")
        f.write("\n".join(lines) + "\n")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("protocol", choices=[*SYSTEMS, "MMOE-SYN", "SPEED"])
    p.add_argument("--seeds", type=int, default=3, help="hydrarec seeds (mean ± std)")
    p.add_argument("--quick", action="store_true", help="one hydrarec seed")
    p.add_argument(
        "--reuse",
        action="store_true",
        help="hydrarec: read back a seed's finished run of the same config instead of retraining",
    )
    p.add_argument("--systems", default="", help="comma-separated subset of the protocol's systems")
    p.add_argument("--set", action="append", default=[], help="override for hydrarec configs")
    p.add_argument("--budget-s", type=float, default=0.0, help="SASRec: training seconds cap")
    p.add_argument("--threads", type=int, default=1, help="SPEED: torch threads of both models")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    os.environ.setdefault("HYDRAREC_DATA_DIR", str((HERE.parent.parent / "shared/data").resolve()))
    if args.protocol == "MMOE-SYN":
        import mmoe_syn

        lines = mmoe_syn.main(["--seeds", str(args.seeds)])
        write(args.protocol, lines[2:], lines[:2])
        return
    if args.protocol == "SPEED":
        from peers import speed

        # --systems throughput: the throughput rows alone (no time-to-quality run)
        ttq = "" if args.systems == "throughput" else speed.TTQ_CONFIG
        stamp = f"; commit {commit()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} |"
        lines = speed.main(threads=args.threads, ttq_config=ttq)
        lines = lines[:2] + [line.removesuffix(" |") + stamp for line in lines[2:]]
        write(args.protocol, lines[2:], lines[:2])
        return
    if args.child:
        child(args.protocol, args.child, args.child_out, args)
        return
    systems = args.systems.split(",") if args.systems else list(SYSTEMS[args.protocol])
    rev = commit()
    lines = [row(args.protocol, spawn(args.protocol, s, args), rev) for s in systems]
    print("\n".join([*header(args.protocol), *lines]))
    write(args.protocol, lines)


if __name__ == "__main__":
    main()
