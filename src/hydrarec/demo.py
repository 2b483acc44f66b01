"""``hydrarec demo`` / ``make demo``: train the default multi-task model on MovieLens-100K,
print its metrics, and show one user's top-10 with titles. Without MovieLens on disk (and no
network to fetch it) it says so and runs the same pipeline on the synthetic dataset."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hydrarec.config import Config, config_from_dict, load_config
from hydrarec.errors import DataError

DEFAULT_CONFIG = "ml100k_mmoe.toml"


def demo_config() -> tuple[Config, str]:
    """The default MovieLens config when the data can be found, else the synthetic one."""
    from hydrarec.data.registry import locate

    path = _config_path(DEFAULT_CONFIG)
    try:
        locate("movielens-100k")
        return load_config(path), "MovieLens-100K"
    except DataError as e:
        try:
            from hydrarec.data.fetch import fetch

            fetch("movielens-100k", None)
            return load_config(path), "MovieLens-100K (downloaded)"
        except Exception as fetch_error:  # offline: say so, then run on synthetic data
            reason = f"{e}\nfetch failed: {fetch_error}"
    cfg = load_config(_config_path("synthetic_tiny.toml"))
    raw = cfg.model_dump()
    raw["train"]["epochs"] = 10
    return config_from_dict(raw), f"synthetic data (MovieLens-100K unavailable: {reason})"


def _config_path(name: str) -> Path:
    """Shipped configs live in the repository's configs/ folder."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "configs" / name
        if candidate.is_file():
            return candidate
    packaged = resources.files("hydrarec").joinpath("configs", name)
    return Path(str(packaged))


def run_demo(out: Path, *, quiet: bool = False, console: Console | None = None) -> None:
    from hydrarec.experiment import train
    from hydrarec.recommender import Recommender
    from hydrarec.training.progress import Progress

    console = console or Console()
    cfg, what = demo_config()
    console.print(f"[bold]hydrarec demo[/bold] on {what}")
    console.print(
        f"tasks: {', '.join(f'{t.name} ({t.kind})' for t in cfg.tasks)}; "
        f"architecture: {cfg.model.architecture.name}"
    )
    run = train(cfg, out, progress=Progress(enabled=False if quiet else None))
    table = Table("metric", "valid", "test", title="metrics (model chosen on valid)")
    for k in sorted(run.metrics["test"]):
        table.add_row(k, f"{run.metrics['valid'].get(k, float('nan')):.4f}",
                      f"{run.metrics['test'][k]:.4f}")
    console.print(table)
    rec = Recommender.load(out)
    user = rec.run.user_ids.raw_ids[0]
    ids, scores = rec.recommend([user], k=10)
    top = Table("rank", "item", "title", "score", title=f"top-10 for user {user}")
    for r, (i, s, t) in enumerate(
        zip(ids[0], scores[0], rec.title(rec.item_index(list(ids[0]))), strict=True), 1
    ):
        top.add_row(str(r), str(i), t, f"{s:.4f}")
    console.print(top)
    report = _write_report(out)
    console.print(f"run directory: {out}" + (f"; report: {report}" if report else ""))


def _write_report(out: Path) -> Path | None:
    try:
        from hydrarec.report.html import write_report
    except ImportError:
        return None
    return write_report(out)
