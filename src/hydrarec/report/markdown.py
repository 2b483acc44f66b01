"""``RUN/report.md``: the report as Markdown beside the PNGs it links (``plots/*.png``)."""

from __future__ import annotations

from pathlib import Path

from hydrarec.io.atomic import write_text
from hydrarec.report.collect import ReportData, SampleUser, collect
from hydrarec.report.tables import Table, frame_table, metric_table


def write_markdown(run_dir: str | Path) -> Path:
    """Write ``RUN/report.md`` and ``RUN/plots/*.png``; returns the Markdown path."""
    from hydrarec.report.plots import write_plots  # matplotlib: the `report` extra

    data = collect(run_dir)
    pngs = write_plots(data, data.path / "plots")
    out = data.path / "report.md"
    write_text(out, render(data, {k: p.relative_to(data.path) for k, p in pngs.items()}))
    return out


def render(data: ReportData, pngs: dict[str, Path]) -> str:
    """The whole document; ``pngs`` are paths relative to the report."""
    parts = [
        f"# hydrarec run report\n\n{data.title}\n",
        "## Run\n\n" + table(([], [[k, v] for k, v in data.summary.items()])),
        "## Metrics\n\nValidation chose the model; test was read once. ↑ higher is better, "
        "↓ lower is better. Popularity: items ranked by training interactions (rating: the "
        "training mean), same full-ranking protocol.\n\n" + table(metric_table(data)),
        f"## Learning curves\n\n![learning curves]({pngs['learning_curves'].as_posix()})\n",
        f"## Joint-loss weights\n\n![joint-loss weights]({pngs['loss_weights'].as_posix()})\n",
        "## Item representations\n\n"
        f"PCA of the item vectors. ![item map]({pngs['item_map'].as_posix()})\n",
        f"## Sample users\n\n{data.score_note}\n\n"
        + "\n".join(_user(u, data.tasks) for u in data.users),
    ]
    return "\n".join(parts)


def table(t: Table) -> str:
    """A pipe table; a header-less table gets an empty header row.

    >>> print(table((["a", "b"], [["1", "x|y"]])), end="")
    | a | b |
    |---|---|
    | 1 | x\\|y |
    """
    header, rows = t
    width = max([len(header), *(len(r) for r in rows)])
    head = header or [""] * width
    lines = [_row(head), "|" + "---|" * width, *(_row(r) for r in rows)]
    return "\n".join(lines) + "\n"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _user(user: SampleUser, tasks: dict[str, str]) -> str:
    history = frame_table(user.history, tasks, predictions=False)
    recs = frame_table(user.recommendations, tasks, predictions=True)
    return (
        f"### user {user.user_id}\n\nMost recent interactions, newest first:\n\n{table(history)}\n"
        f"Top-{len(user.recommendations)} recommendations (seen items excluded), each task's "
        f"prediction:\n\n{table(recs)}"
    )
