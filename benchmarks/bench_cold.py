"""COLD protocol (DESIGN.md, issues 4 and 20) on MovieLens-100K, through the product path.

    HYDRAREC_DATA_DIR=../shared/data python benchmarks/bench_cold.py [--seeds 3] [--epochs N]
        [--diagnostic]   also the old bespoke trainer row (not the product; labelled)

Split (COLD-A): the items that have ratings, permuted by ``numpy.random.default_rng(42)``; the
first 10 % are the test items, held out with all their ratings. The next 10 % are the validation
items of the peers (LightFM's settings are chosen on them, never on test).

hydrarec's rows do what the README's cold-start section tells a user to do:

1. write the training ratings (without the test items) to ``ratings.csv`` and their items (title,
   genres) to ``items.csv``, and the test items to ``new_items.csv``;
2. ``hydrarec.train`` with the shipped ``configs/ml100k_text.toml`` and the overrides the README
   lists (``USER_SETTINGS``: these files as tabular data, ``[data.split] kind = "cold_item"``, so
   that validation ranks pseudo-cold items among themselves and chooses the checkpoint);
3. ``hydrarec.add_items`` (``hydrarec add-items RUN new_items.csv``) for the test items;
4. ``Recommender.recommend(users, k=10, allow=<test items>)``: with the config's blend (the
   default), and the same run with ``recommend.blend = {}`` (stage one alone).

Metric: for each user with a held-out rating >= 4, Recall@10 and NDCG@10 of that user's held-out
items rated >= 4 in the list ``recommend`` returns (``hydrarec.tasks.metrics``), averaged
over those users. The peers' lists are their own scores' top 10 over the test items.

Peers, same script, same machine: LightFM WARP with item features (genres, title words, year;
settings chosen on the validation items), a genre profile, a MiniLM text profile, random.
Results are printed as Markdown and appended to ``benchmarks/results/COLD.md``.
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

import hydrarec
from hydrarec.config import Config, load_config
from hydrarec.data.dataset import Dataset
from hydrarec.data.registry import load_dataset
from hydrarec.data.splits import Split, make_split
from hydrarec.features.text import TextEncoder
from hydrarec.io.progress import Progress
from hydrarec.tasks.metrics import ndcg_at_k, recall_at_k
from provenance import git_commit

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "configs" / "ml100k_text.toml"
K, LIKED, SEED = 10, 4.0, 42
Scores = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (users, items) -> (U, C) scores

# what the README's cold-start section adds to the shipped config (paths are filled in)
USER_SETTINGS = [
    "data.dataset=tabular",
    "data.tabular.interactions={folder}/ratings.csv",
    "data.tabular.items={folder}/items.csv",
    'data.tabular.labels={{rating = "regression"}}',
    'data.tabular.item_features={{title = "text", genres = "multi_hot"}}',
    "data.split.kind=cold_item",
]


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


def list_metrics(top: np.ndarray, task: ColdTask) -> dict[str, float]:
    """Recall@10 and NDCG@10 of (U, >= 10) catalogue indices, best first."""
    return {
        "recall@10": recall_at_k(top, task.relevant, K),
        "ndcg@10": ndcg_at_k(top, task.relevant, K),
    }


def evaluate(scores: np.ndarray, task: ColdTask) -> dict[str, float]:
    """Recall@10 and NDCG@10 from (U, C) scores over ``task.items``."""
    # ties in random order: catalogue order would favour low MovieLens ids, the popular movies
    perm = np.random.default_rng(0).permutation(len(task.items))
    order = perm[np.argsort(-scores[:, perm], axis=1, kind="stable")[:, :K]]
    return list_metrics(task.items[order], task)


# -- hydrarec, as a user runs it ----------------------------------------------------------------
def write_user_files(ds: Dataset, split: Split, folder: Path) -> None:
    """ratings.csv (every rating but the test items'), items.csv (the items they rate: the test
    items are unknown at training time) and new_items.csv (the test items), MovieLens ids."""
    inter = ds.interactions
    train_rows = np.setdiff1d(np.arange(len(inter)), split.test)
    rows = inter.iloc[train_rows]
    pd.DataFrame(
        {
            "user_id": ds.user_ids.raw(rows["user_idx"].to_numpy()),
            "item_id": ds.item_ids.raw(rows["item_idx"].to_numpy()),
            "rating": rows["rating"].to_numpy(),
            "timestamp": rows["timestamp"].to_numpy(),
        }
    ).to_csv(folder / "ratings.csv", index=False)
    items = pd.DataFrame(
        {
            "item_id": ds.item_ids.raw_ids,
            "title": ds.items["title"].fillna("").to_numpy(),
            "genres": ["|".join(g) for g in ds.items["genres"]],
        }
    )
    test_items = np.unique(inter["item_idx"].to_numpy()[split.test])
    known = np.unique(rows["item_idx"].to_numpy())
    items.iloc[known].to_csv(folder / "items.csv", index=False)
    items.iloc[test_items].to_csv(folder / "new_items.csv", index=False)


def user_config(folder: Path, seed: int, epochs: int | None) -> Config:
    """The shipped config with the README's settings: what ``hydrarec train --config
    configs/ml100k_text.toml --set ...`` reads."""
    sets = [s.format(folder=folder) for s in USER_SETTINGS] + [f"train.seed={seed}"]
    sets += [f"train.epochs={epochs}"] if epochs else []
    return load_config(CONFIG, overrides=sets)


@dataclass
class ProductRun:
    """One seed of the product path: the two rows' lists and what the run reported."""

    blend: dict[str, float]
    stage_one: dict[str, float]
    info: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0


def run_product(
    ds: Dataset, folder: Path, test: ColdTask, seed: int, epochs: int | None
) -> ProductRun:
    """train -> add_items -> recommend(allow=test items), with the blend and without."""
    cfg = user_config(folder, seed, epochs)
    out = folder / f"run-{seed}"
    start = time.perf_counter()
    run = hydrarec.train(cfg, out, progress=Progress(enabled=False), overwrite=True)
    seconds = time.perf_counter() - start
    hydrarec.add_items(out, pd.read_csv(folder / "new_items.csv"), progress=False)
    users = ds.user_ids.raw(test.users)
    allow = ds.item_ids.raw(test.items)
    rec = hydrarec.Recommender.load(out)
    lists = {}
    for name, blend in (("blend", None), ("stage one", {})):
        if blend is not None:
            rec.config.recommend.blend = blend  # the run with [recommend] blend = {}
        ids, _ = rec.recommend(list(users), k=K, allow=list(allow))
        lists[name] = list_metrics(ds.item_ids.index(ids.ravel()).reshape(ids.shape), test)
    valid = run.metrics["valid"]
    info = {
        "best epoch": run.metrics["train"]["best_epoch"],
        "valid recall@10 (run's own, held-out items ranked)": valid["retrieval/recall@10"],
    }
    return ProductRun(lists["blend"], lists["stage one"], info, seconds)


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
    words = [
        re.findall(r"[a-z0-9']+", re.sub(r"\(\d{4}\)", "", t.lower()))
        for t in ds.items["title"].fillna("")
    ]
    counts: dict[str, int] = {}
    for i in train_items:
        for w in set(words[i]):
            counts[w] = counts.get(w, 0) + 1
    years = ds.items["year"].tolist()
    tokens = [
        [f"g:{g}" for g in gs]
        + [f"w:{w}" for w in ws if counts.get(w, 0) >= 2]
        + ([f"y:{int(y)}"] if y == y else [])
        for gs, ws, y in zip(ds.items["genres"], words, years, strict=True)
    ]
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
            m = sp.coo_matrix(
                (np.ones(len(sub), np.float32), (sub["user_idx"], sub["item_idx"])),
                (ds.n_users, ds.n_items),
            )
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


# -- diagnostic: the old bespoke path (not the product) -----------------------------------------
def bespoke_scores(base: Config, ds: Dataset, valid: ColdTask) -> tuple[Scores, float]:
    """The pre-issue-20 benchmark's own loop: the model and trainer built here, checkpoints kept
    by a Recall@10 callback on the validation items, items ranked by the raw dot product, the
    catalogue's test items present (OOV) during training. Kept to compare, not to report."""
    from hydrarec.evaluation.evaluate import encode_items, encode_users
    from hydrarec.model.multitask import MultiTaskRecommender
    from hydrarec.run.build import build_model
    from hydrarec.run.data import make_train_data
    from hydrarec.tasks.joint import JointLoss
    from hydrarec.training.trainer import Trainer

    cfg = copy.deepcopy(base)
    cfg.data.split.kind = "cold_item"
    cfg.data.split.valid_ratio, cfg.data.split.test_ratio, cfg.data.split.seed = 0.1, 0.1, SEED
    torch.manual_seed(cfg.train.seed)
    data = make_train_data(cfg, ds)
    model = build_model(cfg, data.user_spec, data.item_spec, data.stats, ds.n_items)
    assert isinstance(model, MultiTaskRecommender)
    objective = JointLoss(
        [t.name for t in cfg.tasks], cfg.loss, {t.name: t.weight for t in cfg.tasks}
    )

    def scores(m: MultiTaskRecommender) -> Scores:
        cpu = torch.device("cpu")
        item_vecs = encode_items(m, data.items, cpu)  # (I, D)

        def f(users: np.ndarray, items: np.ndarray) -> np.ndarray:
            hist, mask = data.histories(("train",)).last_n(users, cfg.model.sequence.max_len)
            uv = encode_users(m, data.users, users, hist, mask, item_vecs, cpu)  # (U, D)
            return (uv @ item_vecs[torch.as_tensor(items)].T).numpy()  # (U, C)

        return f

    best: dict[str, torch.Tensor] = {}
    trainer = Trainer(
        model,
        objective,
        cfg.train,
        device=torch.device("cpu"),
        on_best=lambda m, e: best.update(
            {k: v.detach().clone() for k, v in m.state_dict().items()}
        ),
        progress=Progress(enabled=False),
    )
    start = time.perf_counter()
    trainer.fit(
        data.epoch_batches,
        data.steps_per_epoch,
        lambda m: evaluate(scores(m)(valid.users, valid.items), valid),
        "recall@10",
        "max",
    )  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    model.load_state_dict(best)
    return scores(model), seconds


# -- the report ---------------------------------------------------------------------------------
@dataclass
class Row:
    """One system: test metrics per seed, training seconds, notes."""

    name: str
    test: list[dict[str, float]]
    seconds: float
    note: str

    def mean(self, key: str) -> float:
        return float(np.mean([t[key] for t in self.test]))

    def cell(self, key: str) -> str:
        values = [t[key] for t in self.test]
        sd = f" ± {np.std(values):.4f}" if len(values) > 1 else ""
        return f"{np.mean(values):.4f}{sd}"


def table(rows: list[Row]) -> str:
    best_peer = max(r.mean("recall@10") for r in rows if not r.name.startswith("hydrarec"))
    out = [
        "| system | Recall@10 | NDCG@10 | Recall vs best peer | train s | notes |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r.mean("recall@10") / best_peer
        out.append(
            f"| {r.name} | {r.cell('recall@10')} | {r.cell('ndcg@10')} | {ratio:.2f}x | "
            f"{r.seconds:.0f} | {r.note} |"
        )
    return "\n".join(out)


def peer_rows(ds: Dataset, split: Split, test: ColdTask, valid: ColdTask, seeds: int) -> list[Row]:
    """Random, the genre and MiniLM text profiles, and LightFM (one per seed)."""
    rows = [Row("random", [random_metrics(test)], 0.0, "mean of 20 draws")]
    text = TextEncoder(load_config(CONFIG).model.text).encode_items(ds.items).numpy()
    for name, vecs in (("genre profile", genre_matrix(ds)), ("MiniLM text profile", text)):
        s = profile_scores(ds, split.train, vecs)
        rows.append(
            Row(
                name,
                [evaluate(s(test.users, test.items), test)],
                0.0,
                "cosine to the mean of the user's liked training items",
            )
        )
    fm = Row("LightFM WARP + item features", [], 0.0, "")
    for seed in range(seeds):
        s, params, secs = run_lightfm(ds, split.train, valid, seed)
        fm.test.append(evaluate(s(test.users, test.items), test))
        fm.seconds += secs / seeds
        fm.note += f"seed {seed}: {_note(params)}; "
    return [*rows, fm]


def hydrarec_rows(
    ds: Dataset, split: Split, test: ColdTask, seeds: int, epochs: int | None
) -> list[Row]:
    blend = Row("hydrarec + text, recommend (blend on, the default)", [], 0.0, "")
    stage_one = Row(
        "hydrarec + text, recommend with recommend.blend = {} (stage one)", [], 0.0, "the same runs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_user_files(ds, split, folder)
        for seed in range(seeds):
            got = run_product(ds, folder, test, seed, epochs)
            blend.test.append(got.blend)
            stage_one.test.append(got.stage_one)
            blend.seconds += got.seconds / seeds
            blend.note += f"seed {seed}: {_note(got.info)}; "
            print(blend, stage_one, flush=True)
    return [blend, stage_one]


def _note(d: dict) -> str:
    return ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds", type=int, default=1, help="training seeds of hydrarec and LightFM")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="cap on hydrarec's epochs (default: the shipped config's)",
    )
    p.add_argument(
        "--diagnostic",
        action="store_true",
        help="also the old bespoke trainer row (not the product path)",
    )
    p.add_argument("--out", type=Path, default=HERE / "results" / "COLD.md")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    base = load_config(CONFIG)
    ds = load_dataset(base.data)
    split = make_split(
        ds,
        base.data.split.model_copy(
            update={"kind": "cold_item", "valid_ratio": 0.1, "test_ratio": 0.1, "seed": SEED}
        ),
    )
    test, valid = cold_task(ds, split.test), cold_task(ds, split.valid)
    # users the run knows: those with a training rating (every user, on MovieLens-100K)
    trained = np.isin(test.users, ds.interactions["user_idx"].to_numpy()[split.train])
    trained |= np.isin(test.users, ds.interactions["user_idx"].to_numpy()[split.valid])
    test = ColdTask(
        test.users[trained],
        test.items,
        [r for r, t in zip(test.relevant, trained, strict=True) if t],
    )
    print(
        f"COLD: {len(test.items)} test items, {len(test.users)} users; "
        f"{len(valid.items)} valid items (peers' settings)",
        flush=True,
    )
    rows = peer_rows(ds, split, test, valid, args.seeds)
    rows += hydrarec_rows(ds, split, test, args.seeds, args.epochs)
    if args.diagnostic:
        scores, secs = bespoke_scores(base, ds, valid)
        rows.append(
            Row(
                "diagnostic, not the product: the old bespoke loop (dot product)",
                [evaluate(scores(test.users, test.items), test)],
                secs,
                "own trainer, own selection callback, own scoring",
            )
        )
    cmd = " ".join(["python benchmarks/bench_cold.py", *sys.argv[1:]])
    report = [
        f"## COLD-A through the product path ({time.strftime('%Y-%m-%d')}, commit {git_commit()})",
        "",
        f"`{cmd}`, {torch.get_num_threads()} CPU thread(s), shared "
        f"machine; hydrarec: `configs/ml100k_text.toml` with the README's settings "
        f"({', '.join(USER_SETTINGS)})",
        "",
        table(rows),
    ]
    text = "\n".join(report) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a", encoding="utf-8") as f:
        f.write("\n" + text)


if __name__ == "__main__":
    main()
