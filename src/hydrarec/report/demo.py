"""``hydrarec demo`` / ``make demo`` (issue 6): the first thing a new user sees.

Finds MovieLens-100K (``$HYDRAREC_DATA_DIR``, the cache, a download with its checksum, then the
folder the Makefile passes as a last resort), trains the multi-task next-item model with a
progress bar, prints the metrics table beside the peers' figures from ``benchmarks/RESULTS.md``
and one user's top-10 with titles, writes the HTML report and prints its path. Offline with no
data it says so and runs the same pipeline on the synthetic dataset instead. Everything printed
also goes to ``RUN/log.txt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from hydrarec.config import Config, load_config
from hydrarec.errors import HydrarecError

DEFAULT_CONFIG = "ml100k_loo.toml"
FALLBACK_CONFIG = "synthetic_tiny.toml"
FALLBACK_EPOCHS = 10  # the synthetic data learns in seconds an epoch; give it a few more
# The shipped config trains 20 epochs of windows (SASRec-style); the demo runs the same schedule
# over fewer, so that `make demo` ends within 2 minutes on a quiet 2-core machine
DEMO_EPOCHS = 6
# ML100K-LOO test figures (the same split and full ranking), all from one invocation recorded in
# benchmarks/RESULTS.md: (system, HR@10, NDCG@10)
PEERS = (
    ("most popular", 0.0859, 0.0443),
    ("implicit ALS", 0.1442, 0.0757),
    ("LightFM WARP + item features", 0.1495, 0.0768),
    ("torch-rechub SASRec", 0.1835, 0.0910),
    ("hydrarec ml100k_loo_text (full schedule, 3 seeds)", 0.2001, 0.1046),
    ("hydrarec ml100k_loo_ensemble (3 seeds)", 0.2262, 0.1226),
)


@dataclass
class DemoData:
    config: Config
    source: str  # what the demo trains on, in words
    fallback_reason: str | None = None  # why it is not MovieLens-100K, when it is not


def demo_config(
    overrides: list[str] | None = None, *, quiet: bool = False, fallback: Path | None = None
) -> DemoData:
    """The default MovieLens config when the data can be found or fetched, else synthetic.

    MovieLens-100K is looked for in ``$HYDRAREC_DATA_DIR`` and the cache, then downloaded (its
    checksum verified), then looked for in ``fallback`` (the Makefile's folder beside the
    checkout). ``overrides`` (``section.key=value``) apply to either config, after the demo's own.
    """
    from hydrarec.data.fetch import fetch
    from hydrarec.data.registry import locate

    extra = [f"train.epochs={DEMO_EPOCHS}", *(overrides or [])]
    try:
        where = locate("movielens-100k")
        return DemoData(
            load_config(_config_path(DEFAULT_CONFIG), extra), f"MovieLens-100K ({where})"
        )
    except HydrarecError as missing:
        try:
            where = fetch("movielens-100k", None, progress=not quiet, timeout=20.0)
        except (HydrarecError, OSError) as offline:
            if fallback is not None:
                try:
                    where = locate("movielens-100k", fallback)
                    config = load_config(
                        _config_path(DEFAULT_CONFIG), [*extra, f"data.path={where}"]
                    )
                    return DemoData(config, f"MovieLens-100K ({where})")
                except HydrarecError:
                    offline = HydrarecError(f"{offline}\nand {fallback} does not hold it either")
            reason = f"{missing}\nand the download failed: {offline}"
            synthetic = load_config(
                _config_path(FALLBACK_CONFIG), [f"train.epochs={FALLBACK_EPOCHS}", *extra[1:]]
            )
            return DemoData(synthetic, "the synthetic dataset", reason)
    return DemoData(
        load_config(_config_path(DEFAULT_CONFIG), extra), f"MovieLens-100K (downloaded to {where})"
    )


def _config_path(name: str) -> Path:
    """Shipped configs live in the repository's configs/ folder."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "configs" / name
        if candidate.is_file():
            return candidate
    packaged = resources.files("hydrarec").joinpath("configs", name)
    return Path(str(packaged))


def run_demo(
    out: Path,
    *,
    quiet: bool = False,
    console: Console | None = None,
    overrides: list[str] | None = None,
    fallback: Path | None = None,
) -> Path | None:
    """Train, show metrics and recommendations, write the report; returns the report's path."""
    from hydrarec.io.log import log_to

    console = console or Console()
    with log_to(Path(out) / "log.txt"):
        demo = demo_config(overrides, quiet=quiet, fallback=fallback)
        _announce(console, demo)
        metrics = _train(out, demo.config, quiet, console)
        if demo.config.data.dataset == "movielens-100k":
            _compare(console, metrics, demo.config.train.epochs)
        _show_recommendations(out, console)
        report = _write_report(out, console)
        console.print(f"\nrun directory: {out}")
        if report is not None:
            console.print(f"[bold]report:[/bold] {report}")
        return report


def _announce(console: Console, demo: DemoData) -> None:
    if demo.fallback_reason is not None:
        console.print(
            "[yellow]MovieLens-100K could not be found or downloaded:[/yellow]\n"
            f"{demo.fallback_reason}\n"
            "[yellow]Running the same pipeline on the synthetic dataset instead.[/yellow]"
        )
    cfg = demo.config
    console.print(f"[bold]hydrarec demo[/bold] on {demo.source}")
    console.print(
        f"tasks: {', '.join(f'{t.name} ({t.kind})' for t in cfg.tasks)}; "
        f"architecture: {cfg.model.architecture.name}; up to {cfg.train.epochs} epochs"
    )


def _train(out: Path, cfg: Config, quiet: bool, console: Console) -> dict[str, float]:
    from hydrarec.io.progress import Progress
    from hydrarec.run.train import train

    # the demo's run is remade each time (swapped in when complete, as every training)
    run = train(cfg, out, overwrite=True, progress=Progress(enabled=False if quiet else None))
    table = Table("metric", "valid", "test", title="metrics (model chosen on valid)")
    for k in sorted(run.metrics["test"]):
        valid = run.metrics["valid"].get(k, float("nan"))
        table.add_row(k, f"{valid:.4f}", f"{run.metrics['test'][k]:.4f}")
    console.print(table)
    return run.metrics["test"]


def _compare(console: Console, test: dict[str, float], epochs: int) -> None:
    """The demo's test HR@10 / NDCG@10 beside the peers' on the same split (issue 22)."""
    table = Table("system", "HR@10", "NDCG@10", title="ML100K-LOO test, full ranking")
    for name, hr, ndcg in PEERS:
        table.add_row(name, f"{hr:.4f}", f"{ndcg:.4f}")
    hr, ndcg = (
        test.get("retrieval/hr@10", float("nan")),
        test.get("retrieval/ndcg@10", float("nan")),
    )
    table.add_row(f"[bold]this demo ({epochs} epochs, 1 seed)[/bold]", f"{hr:.4f}", f"{ndcg:.4f}")
    console.print(table)
    console.print(
        "Peers from benchmarks/RESULTS.md (tuned on valid). The demo trains a short schedule; "
        "the full configs do better: configs/ml100k_loo_text.toml (0.1046), "
        "configs/ml100k_loo_ensemble.toml (0.1226)."
    )


def _show_recommendations(out: Path, console: Console) -> None:
    """The top-10 of the most active user who has 10 items left to discover (on the synthetic
    data the most active users have seen every item), beside what that user watched last."""
    from hydrarec.recommend.recommender import Recommender

    rec = Recommender.load(out)
    inter = rec.run.interactions
    users = inter["user_idx"].to_numpy()
    counts = np.bincount(users, minlength=len(rec.run.user_ids)).astype(np.float64)
    distinct = np.bincount(
        inter.drop_duplicates(["user_idx", "item_idx"])["user_idx"].to_numpy(),
        minlength=len(counts),
    )
    left = rec.n_items - distinct >= 10
    u = int(np.argmax(np.where(left, counts, -1.0) if left.any() else counts))
    user = rec.run.user_ids.raw([u])[0]
    recent = inter[inter["user_idx"] == u].nlargest(5, "order")
    seen = rec.title(recent["item_idx"].to_numpy())
    console.print(f"\nuser {user} recently: " + "; ".join(seen))
    recs = rec.recommend([user], 10)
    index, scores = recs.items, recs.scores
    items, score = index[0][index[0] >= 0], scores[0][index[0] >= 0]  # -1: no item left
    top = Table("rank", "item", "title", "score", title=f"top-10 for user {user}")
    rows = zip(rec.run.item_ids.raw(items), rec.title(items), score, strict=True)
    for r, (i, t, s) in enumerate(rows, 1):
        top.add_row(str(r), str(i), t, f"{s:.4f}")
    console.print(top)


def _write_report(out: Path, console: Console) -> Path | None:
    from hydrarec.report import ReportUnavailable, write_report

    try:
        return write_report(out)
    except ReportUnavailable as e:  # the report extra is missing: say so, the run is fine
        console.print(f"[yellow]report not written:[/yellow] {e}")
        return None
