"""COLD protocol (DESIGN.md, issue 4) on MovieLens-100K: recommending movies nobody has rated yet.

    HYDRAREC_DATA_DIR=../shared/data python benchmarks/bench_cold.py [--epochs 8] [--warm-epochs 8]
        [--finetune-layers K]   also hydrarec + text with MiniLM's last K layers fine-tuned

Split: the items that have ratings, permuted by ``numpy.random.default_rng(42)``; the first 10 %
are the test items, held out with all their ratings; the next 10 % are validation items, a
pseudo-cold split of the training items on which checkpoints and peer settings are chosen (never
on test); every system learns from the ratings of the remaining 80 % of items. This is exactly
``hydrarec.data.splits.cold_item_split(valid_ratio=0.1, test_ratio=0.1, seed=42)``.

Metric: for each user with a held-out rating >= 4, every held-out item is ranked; Recall@10 and
NDCG@10 of that user's held-out items rated >= 4 (``hydrarec.evaluation.metrics``), averaged over
those users.

Systems, one script, one machine: hydrarec (``configs/ml100k_text.toml``) with text and without
(id + genres); a genre profile and a MiniLM text profile (mean vector of the user's liked training
items, cosine); LightFM WARP with item features (genres, title words, year; settings chosen on the
validation items); random. Also: text encoding throughput and the cache speed-up, and the
leave-last-out NDCG@10 on warm items with and without text (full ranking, hydrarec's evaluation).
Results are printed as Markdown and written to ``benchmarks/results/COLD.md``.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from hydrarec.build import build_model
from hydrarec.config import Config, load_config
from hydrarec.data.dataset import Dataset
from hydrarec.data.registry import load_dataset
from hydrarec.data.splits import Split, make_split
from hydrarec.encoders import text as text_mod
from hydrarec.encoders.text import TextEncoder
from hydrarec.evaluation.evaluate import encode_items, encode_users
from hydrarec.evaluation.metrics import ndcg_at_k, recall_at_k
from hydrarec.experiment import train
from hydrarec.model import MultiTaskRecommender
from hydrarec.tasks.joint import JointLoss
from hydrarec.training.data import TrainData, make_train_data
from hydrarec.training.progress import Progress
from hydrarec.training.trainer import Trainer

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "configs" / "ml100k_text.toml"
K, LIKED, SEED = 10, 4.0, 42
Scores = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (users, items) -> (U, C) scores


@dataclass
class ColdTask:
    """Users to rank for, the held-out candidate items, and each user's relevant items."""

    users: np.ndarray  # (U,) user indices with a held-out rating >= 4
    items: np.ndarray  # (C,) held-out item indices (the candidates)
    relevant: list[set[int]]  # per user: held-out items rated >= 4


def cold_task(ds: Dataset, rows: np.ndarray) -> ColdTask:
    inter = ds.interactions.iloc[rows]
    liked = inter[inter["rating"] >= LIKED]
    users = np.unique(liked["user_idx"].to_numpy())
    rel = liked.groupby("user_idx")["item_idx"].apply(set)
    return ColdTask(users, np.unique(inter["item_idx"].to_numpy()), [rel[u] for u in users])


def evaluate(scores: np.ndarray, task: ColdTask) -> dict[str, float]:
    """Recall@10 and NDCG@10 from (U, C) scores over ``task.items``."""
    # ties in random order: catalogue order would favour low MovieLens ids, the popular movies
    perm = np.random.default_rng(0).permutation(len(task.items))
    order = perm[np.argsort(-scores[:, perm], axis=1, kind="stable")[:, :K]]
    top = task.items[order]  # (U, K) item indices
    return {
        "recall@10": recall_at_k(top, task.relevant, K),
        "ndcg@10": ndcg_at_k(top, task.relevant, K),
    }


# -- hydrarec -----------------------------------------------------------------------------------
def cold_config(base: Config, text: bool, epochs: int, seed: int = 0, tuned: int = 0) -> Config:
    cfg = copy.deepcopy(base)
    cfg.train.seed = seed
    cfg.data.split.kind = "cold_item"
    cfg.data.split.valid_ratio, cfg.data.split.test_ratio, cfg.data.split.seed = 0.1, 0.1, SEED
    cfg.model.text.enabled = text
    cfg.model.text.finetune_layers = tuned  # MiniLM's last layers trained (0: frozen)
    cfg.train.epochs = epochs
    return cfg


def hydrarec_scores(model: MultiTaskRecommender, data: TrainData) -> Scores:
    """Dot products of user vectors (features + history of training items) and item vectors."""

    def scores(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        dev = torch.device("cpu")
        item_vecs = encode_items(model, data.items, dev)  # (I, D)
        hist, mask = data.histories(("train",)).last_n(users, data.cfg.model.sequence.max_len)
        uv = encode_users(model, data.users, users, hist, mask, item_vecs, dev)  # (U, D)
        return (uv @ item_vecs[torch.as_tensor(items)].T).numpy()  # (U, C)

    return scores


def run_hydrarec(cfg: Config, ds: Dataset) -> tuple[Scores, dict[str, float], float]:
    """Train on the training items; keep the epoch with the best Recall@10 on the valid items."""
    torch.manual_seed(cfg.train.seed)  # as experiment.train: the initial weights follow the seed
    data = make_train_data(cfg, ds)
    model = build_model(cfg, data.user_spec, data.item_spec, data.stats, ds.n_items)
    objective = JointLoss(
        [t.name for t in cfg.tasks], cfg.loss, {t.name: t.weight for t in cfg.tasks}
    )
    valid = cold_task(ds, data.split.valid)
    best: dict[str, torch.Tensor] = {}

    def validate(m: torch.nn.Module) -> dict[str, float]:
        assert isinstance(m, MultiTaskRecommender)
        return evaluate(hydrarec_scores(m, data)(valid.users, valid.items), valid)

    def keep(m: torch.nn.Module, epoch: int) -> None:
        best.update({k: v.detach().clone() for k, v in m.state_dict().items()})

    trainer = Trainer(model, objective, cfg.train, device=torch.device("cpu"), on_best=keep,
                      progress=Progress())  # fmt: skip
    start = time.perf_counter()
    result = trainer.fit(data.epoch_batches, data.steps_per_epoch, validate, "recall@10", "max")
    seconds = time.perf_counter() - start
    model.load_state_dict(best)
    model.eval()
    curve = [round(r["valid"]["recall@10"], 3) for r in result.history if "valid" in r]
    per_epoch = float(np.mean([r["seconds"] for r in result.history]))
    info = {"valid recall@10": float(result.best or 0.0), "best epoch": result.best_epoch,
            "valid curve": curve, "s/epoch": round(per_epoch)}  # fmt: skip
    return hydrarec_scores(model, data), info, seconds


# -- profile baselines --------------------------------------------------------------------------
def profile_scores(ds: Dataset, train_rows: np.ndarray, vectors: np.ndarray) -> Scores:
    """Cosine of each item's vector with the mean vector of the user's liked training items
    (all the user's training items when none is liked)."""
    inter = ds.interactions.iloc[train_rows]
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    weight = np.where(inter["rating"].to_numpy() >= LIKED, 1.0, 1e-3)  # liked, else a fallback
    m = sp.csr_matrix((weight, (inter["user_idx"], inter["item_idx"])), (ds.n_users, ds.n_items))
    profiles = m @ v  # (users, d)
    profiles /= np.maximum(np.linalg.norm(profiles, axis=1, keepdims=True), 1e-12)
    return lambda users, items: profiles[users] @ v[items].T


def genre_matrix(ds: Dataset) -> np.ndarray:
    genres = ds.items["genres"].tolist()
    vocab = sorted({g for gs in genres for g in gs})
    out = np.zeros((ds.n_items, len(vocab)))
    for i, gs in enumerate(genres):
        out[i, [vocab.index(g) for g in gs]] = 1.0
    return out


# -- LightFM ------------------------------------------------------------------------------------
def lightfm_features(ds: Dataset, train_items: np.ndarray, identity: bool) -> sp.csr_matrix:
    """Genres, title words (seen in >= 2 training titles) and release year per item; with
    ``identity``, also each training item's own indicator (LightFM's hybrid model)."""
    words = [re.findall(r"[a-z0-9']+", re.sub(r"\(\d{4}\)", "", t.lower()))
             for t in ds.items["title"].fillna("")]  # fmt: skip
    counts: dict[str, int] = {}
    for i in train_items:
        for w in set(words[i]):
            counts[w] = counts.get(w, 0) + 1
    years = ds.items["year"].tolist()
    tokens = [
        [f"g:{g}" for g in gs] + [f"w:{w}" for w in ws if counts.get(w, 0) >= 2]
        + ([f"y:{int(y)}"] if y == y else [])
        for gs, ws, y in zip(ds.items["genres"], words, years, strict=True)
    ]  # fmt: skip
    if identity:
        train = set(train_items.tolist())
        tokens = [t + ([f"id:{i}"] if i in train else []) for i, t in enumerate(tokens)]
    vocab = {t: j for j, t in enumerate(sorted({t for ts in tokens for t in ts}))}
    rows = [i for i, ts in enumerate(tokens) for _ in ts]
    cols = [vocab[t] for ts in tokens for t in ts]
    m = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), (ds.n_items, len(vocab)))
    norms = np.maximum(np.asarray(m.sum(axis=1)).ravel(), 1.0)
    return sp.csr_matrix(sp.diags(1.0 / norms) @ m, dtype=np.float32)


def run_lightfm(
    ds: Dataset, train_rows: np.ndarray, valid: ColdTask, seed: int
) -> tuple[Scores, dict, float]:
    """WARP; identity features yes/no, positives all / liked, epochs: chosen on valid items."""
    from lightfm import LightFM

    inter = ds.interactions.iloc[train_rows]
    train_items = np.unique(inter["item_idx"].to_numpy())
    best: tuple[float, dict, Scores | None, float] = (-1.0, {}, None, 0.0)
    for identity in (False, True):
        feats = lightfm_features(ds, train_items, identity)
        for positives in ("all", "liked"):
            sub = inter if positives == "all" else inter[inter["rating"] >= LIKED]
            m = sp.coo_matrix((np.ones(len(sub), np.float32), (sub["user_idx"], sub["item_idx"])),
                              (ds.n_users, ds.n_items))  # fmt: skip
            model = LightFM(loss="warp", no_components=64, learning_rate=0.05, random_state=seed)
            start = time.perf_counter()
            for epoch in range(5, 31, 5):
                model.fit_partial(m, item_features=feats, epochs=5, num_threads=1)
                score = _lightfm_scores(model, feats)
                r = evaluate(score(valid.users, valid.items), valid)["recall@10"]
                if r > best[0]:
                    params = {"identity": identity, "positives": positives, "epochs": epoch}
                    best = (r, params, score, time.perf_counter() - start)
    params = {**best[1], "valid recall@10": round(best[0], 4)}
    assert best[2] is not None
    return best[2], params, best[3]


def _lightfm_scores(model: object, feats: sp.csr_matrix) -> Scores:
    ib, ie = model.get_item_representations(feats)  # type: ignore[attr-defined]
    _, ue = model.get_user_representations()  # type: ignore[attr-defined]
    return lambda users, items: ue[users] @ ie[items].T + ib[items][None, :]


def random_metrics(task: ColdTask, draws: int = 20) -> dict[str, float]:
    """Mean of ``draws`` uniformly random rankings."""
    rng = np.random.default_rng(0)
    runs = [evaluate(rng.random((len(task.users), len(task.items))), task) for _ in range(draws)]
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}


# -- text encoding speed and the warm check -----------------------------------------------------
def text_speed(cfg: Config, ds: Dataset) -> dict[str, float]:
    """Encode the catalogue with an empty cache (model load timed apart), then again (cache hit)."""
    with tempfile.TemporaryDirectory() as cache:
        tcfg = cfg.model.text.model_copy(update={"cache_dir": cache, "enabled": True})
        text_mod.load_sentence_model.cache_clear()
        start = time.perf_counter()
        first = TextEncoder(tcfg, device="cpu")
        text_mod.load_sentence_model(str(first.path), "cpu")
        load = time.perf_counter() - start
        start = time.perf_counter()
        first.encode_items(ds.items)
        encode = time.perf_counter() - start
        start = time.perf_counter()
        second = TextEncoder(tcfg, device="cpu")
        second.encode_items(ds.items)
        hit = time.perf_counter() - start
        assert second.texts_encoded == 0
    n = len(ds.items)
    return {"items": n, "load s": load, "encode s": encode, "items/s": n / encode,
            "cache hit s": hit, "speed-up": encode / hit,
            "speed-up incl. load": (load + encode) / hit}  # fmt: skip


def warm_ndcg(base: Config, ds: Dataset, text: bool, epochs: int) -> dict[str, float]:
    """Leave-last-out test NDCG@10 on warm items (full ranking; checkpoint chosen on valid)."""
    cfg = copy.deepcopy(base)
    cfg.model.text.enabled, cfg.train.epochs = text, epochs
    with tempfile.TemporaryDirectory() as out:
        run = train(cfg, out, progress=Progress(), dataset=ds)
    m = run.metrics
    return {"ndcg@10": m["test"]["retrieval/ndcg@10"], "hr@10": m["test"]["retrieval/hr@10"],
            "seconds": m["train"]["seconds"], "best epoch": m["train"]["best_epoch"]}  # fmt: skip


# -- the report ---------------------------------------------------------------------------------
@dataclass
class Row:
    """One system: test metrics and valid Recall@10 per seed, training seconds, notes."""

    name: str
    test: list[dict[str, float]]
    valid: list[float]
    seconds: float
    note: str

    def mean(self, key: str) -> float:
        return float(np.mean([t[key] for t in self.test]))

    def cell(self, values: list[float]) -> str:
        if not values:
            return "-"
        sd = f" ± {np.std(values):.4f}" if len(values) > 1 else ""
        return f"{np.mean(values):.4f}{sd}"


def table(rows: list[Row]) -> str:
    best_peer = max(r.mean("recall@10") for r in rows if not r.name.startswith("hydrarec"))
    out = ["| system | Recall@10 | NDCG@10 | valid Recall@10 | Recall vs best peer | train s | "
           "notes |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        recall, ndcg = ([t[k] for t in r.test] for k in ("recall@10", "ndcg@10"))
        ratio = r.mean("recall@10") / best_peer
        out.append(f"| {r.name} | {r.cell(recall)} | {r.cell(ndcg)} | {r.cell(r.valid)} | "
                   f"{ratio:.2f}x | {r.seconds:.0f} | {r.note} |")  # fmt: skip
    return "\n".join(out)


def baseline_rows(ds: Dataset, split: Split, test: ColdTask, valid: ColdTask, text: np.ndarray,
                  seeds: int) -> list[Row]:  # fmt: skip
    """Random, the two profiles, and LightFM (one per seed)."""
    rows = [Row("random", [random_metrics(test)], [random_metrics(valid)["recall@10"]], 0.0,
                "mean of 20 draws")]  # fmt: skip
    for name, vecs in (("genre profile", genre_matrix(ds)), ("MiniLM text profile", text)):
        s = profile_scores(ds, split.train, vecs)
        rows.append(Row(name, [evaluate(s(test.users, test.items), test)],
                        [evaluate(s(valid.users, valid.items), valid)["recall@10"]], 0.0,
                        "cosine to the mean of the user's liked training items"))  # fmt: skip
    fm = Row("LightFM WARP + item features", [], [], 0.0, "")
    for seed in range(seeds):
        try:
            s, params, secs = run_lightfm(ds, split.train, valid, seed)
        except ImportError as e:  # reported, not dropped
            nan = {"recall@10": float("nan"), "ndcg@10": float("nan")}
            return [*rows, Row(fm.name, [nan], [], 0.0, f"FAILED: {e}")]
        fm.test.append(evaluate(s(test.users, test.items), test))
        fm.valid.append(params.pop("valid recall@10"))
        fm.seconds += secs / seeds
        fm.note += f"seed {seed}: {_note(params)}; "
    return [*rows, fm]


def cold_rows(base: Config, ds: Dataset, epochs: int, seeds: int, tuned: int = 0) -> list[Row]:
    cfg = cold_config(base, True, epochs)
    split = make_split(ds, cfg.data.split)
    test, valid = cold_task(ds, split.test), cold_task(ds, split.valid)
    print(f"COLD: {len(test.items)} test items, {len(test.users)} users; "
          f"{len(valid.items)} valid items, {len(valid.users)} users", flush=True)  # fmt: skip
    text_vecs = TextEncoder(cfg.model.text).encode_items(ds.items).numpy()
    rows = baseline_rows(ds, split, test, valid, text_vecs, seeds)
    systems = [("hydrarec + text", True, 0), ("hydrarec, no text (id + genres)", False, 0)]
    if tuned:
        systems.insert(1, (f"hydrarec + text, last {tuned} MiniLM layer(s) tuned", True, tuned))
    for name, text, k in systems:
        row = Row(name, [], [], 0, "")
        for seed in range(seeds):
            scores, info, secs = run_hydrarec(cold_config(base, text, epochs, seed, k), ds)
            row.test.append(evaluate(scores(test.users, test.items), test))
            row.valid.append(float(info.pop("valid recall@10")))
            row.seconds += secs / seeds
            row.note += f"seed {seed}: {_note(info)}; "
            print(row, flush=True)
        rows.append(row)
    return rows


def _note(d: dict) -> str:
    return ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=8, help="max epochs of the COLD hydrarec runs")
    p.add_argument("--warm-epochs", type=int, default=8, help="max epochs of the LOO runs")
    p.add_argument("--part", choices=("all", "cold", "warm"), default="all", help="what to run")
    p.add_argument("--seeds", type=int, default=1, help="seeds of hydrarec and LightFM (COLD)")
    p.add_argument(
        "--finetune-layers",
        type=int,
        default=0,
        help="also run hydrarec + text fine-tuning MiniLM's last K layers (COLD)",
    )
    p.add_argument("--out", type=Path, default=HERE / "results" / "COLD.md")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    base = load_config(CONFIG)
    ds = load_dataset(base.data)
    cmd = " ".join(["python benchmarks/bench_cold.py", *sys.argv[1:]])
    report = [f"## COLD on MovieLens-100K ({time.strftime('%Y-%m-%d')}): {args.part}", "",
              f"`{cmd}`, {torch.get_num_threads()} CPU thread(s), shared machine", ""]  # fmt: skip
    if args.part in ("all", "cold"):
        speed = text_speed(base, ds)
        print("text encoding:", _note(speed), flush=True)
        rows = cold_rows(base, ds, args.epochs, args.seeds, args.finetune_layers)
        report += [table(rows), "",
                   f"Text encoding (MiniLM, CPU): {_note(speed)}"]  # fmt: skip
    if args.part in ("all", "warm"):
        warm = {t: warm_ndcg(base, ds, t, args.warm_epochs) for t in (True, False)}
        drop = 1 - warm[True]["ndcg@10"] / warm[False]["ndcg@10"]
        report += ["", f"Warm items, leave-last-out test: with text {_note(warm[True])}; "
                   f"without {_note(warm[False])}; NDCG@10 change {-drop:+.1%}"]  # fmt: skip
    text = "\n".join(report) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", encoding="utf-8") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
