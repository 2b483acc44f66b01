"""``RUN/report.html``: one self-contained page (CSS inline, PNGs base64-embedded, no script, no
network) that explains a run in pictures. The PNGs are also written to ``RUN/plots/``."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from hydrarec.io.atomic import write_text
from hydrarec.report.collect import ReportData, SampleUser, collect
from hydrarec.report.tables import Table, frame_table, metric_table

# section id -> heading, in page order (tests check that every one is present)
SECTIONS = {
    "summary": "Run",
    "metrics": "Metrics",
    "learning-curves": "Learning curves",
    "loss-weights": "Joint-loss weights",
    "item-map": "Item representations",
    "sample-users": "Sample users",
}

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0;
       color: #1d232a; background: #f4f6f8; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 32px 48px; background: white; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #e3e7eb; }
h3 { font-size: 16px; margin: 20px 0 6px; }
p.note { color: #5b6670; font-size: 13px; margin: 4px 0 10px; }
nav a { margin-right: 14px; color: #1f6fb2; text-decoration: none; font-size: 14px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; }
th, td { padding: 4px 10px; text-align: left; border-bottom: 1px solid #e3e7eb; }
th { background: #eef2f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfc; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; }
.pair { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
.pair > div { flex: 1 1 420px; min-width: 0; }
.summary th { width: 130px; }
"""


def write_report(run_dir: str | Path) -> Path:
    """Write ``RUN/report.html`` and ``RUN/plots/*.png``; returns the HTML path."""
    from hydrarec.report.plots import write_plots  # matplotlib: the `report` extra

    data = collect(run_dir)
    pngs = write_plots(data, data.path / "plots")
    out = data.path / "report.html"
    write_text(out, render(data, pngs))
    return out


def render(data: ReportData, pngs: dict[str, Path]) -> str:
    """The whole page."""
    body = [
        f"<h1>hydrarec run report</h1><p class='note'>{escape(data.title)} — "
        f"{escape(str(data.path))}</p>",
        "<nav>" + "".join(f"<a href='#{k}'>{v}</a>" for k, v in SECTIONS.items()) + "</nav>",
        _section("summary", _table(([], [[k, v] for k, v in data.summary.items()]), "summary")),
        _section("metrics", _metrics(data)),
        _section(
            "learning-curves",
            _figure(
                pngs["learning_curves"],
                "learning curves",
                "Train loss per epoch (left axis) and the validation metric (right axis).",
            ),
        ),
        _section(
            "loss-weights",
            _figure(
                pngs["loss_weights"],
                "joint-loss weights",
                "The weight of each task's loss in the joint objective, per epoch.",
            ),
        ),
        _section("item-map", _figure(pngs["item_map"], "item map", _map_note(data))),
        _section(
            "sample-users",
            f"<p class='note'>{escape(data.score_note)}</p>"
            + "".join(_user(u, data.tasks) for u in data.users),
        ),
    ]
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>hydrarec report: {escape(data.title)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def _section(key: str, content: str) -> str:
    return f"<section id='{key}'><h2>{SECTIONS[key]}</h2>{content}</section>"


def _figure(png: Path, alt: str, note: str) -> str:
    encoded = base64.b64encode(png.read_bytes()).decode("ascii")
    return (
        f"<p class='note'>{escape(note)}</p>"
        f"<img alt='{escape(alt)}' src='data:image/png;base64,{encoded}'>"
    )


def _table(table: Table, cls: str = "") -> str:
    """An HTML table; the first column of a header-less table is shown as row headings."""
    header, rows = table
    head = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join(
        "<tr>" + "".join(_cell(c, i, bool(header)) for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table class='{cls}'>{head}{body}</table>"


def _cell(value: str, column: int, has_header: bool) -> str:
    if column == 0 and not has_header:
        return f"<th>{escape(value)}</th>"
    numeric = value.replace(".", "", 1).replace("-", "", 1).isdigit() or value == "–"
    return f"<td class='num'>{escape(value)}</td>" if numeric else f"<td>{escape(value)}</td>"


def _metrics(data: ReportData) -> str:
    note = (
        "Each task's metrics on the validation split (which chose the model) and the test "
        "split (read once). ↑: higher is better, ↓: lower is better. Popularity ranks items "
        "by their training interactions (rating: the training mean) under the same "
        "full-ranking protocol."
    )
    if not data.metrics:
        return "<p class='note'>metrics.json is missing: run <code>hydrarec evaluate</code>.</p>"
    return f"<p class='note'>{escape(note)}</p>" + _table(metric_table(data), "metrics")


def _map_note(data: ReportData) -> str:
    m = data.item_map
    colour = (
        f"coloured by the first value of {m.category_name!r}"
        if m.category_name
        else ("one colour (the items have no categorical feature)")
    )
    return (
        f"Each dot is an item's learned vector projected to 2-D by PCA, {colour}; "
        f"circled and named: {len(m.labelled)} of the items with the most training "
        "interactions, taken in order of popularity but kept apart so that their names stay "
        "readable."
    )


def _user(user: SampleUser, tasks: dict[str, str]) -> str:
    history = frame_table(user.history, tasks, predictions=False)
    recs = frame_table(user.recommendations, tasks, predictions=True)
    return (
        f"<h3>user {escape(str(user.user_id))}</h3><div class='pair'>"
        f"<div><p class='note'>{len(user.history)} most recent interactions, newest first "
        f"(labels)</p>{_table(history)}</div>"
        f"<div><p class='note'>top-{len(user.recommendations)} recommendations (seen items "
        f"excluded) with each task's prediction</p>{_table(recs)}</div></div>"
    )
