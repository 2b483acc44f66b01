"""``DIR/report.html``: a study in the plots people expect from a tuner, drawn by Optuna's
matplotlib visualisations and laid out in the style of the run report (``report/html.py``):
one self-contained page, PNGs embedded and also written to ``DIR/plots/``."""

from __future__ import annotations

import warnings
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from hydrarec.io.atomic import write_text
from hydrarec.report.html import CSS, _figure, _table
from hydrarec.report.tables import number
from hydrarec.tuning.outputs import best_trial, summary
from hydrarec.tuning.storage import shown_url

MAIN_PARAMS = 3  # the slice and contour plots show this many parameters, the most important
TOP_TRIALS = 10


def write_study_report(study: optuna.Study, out: Path, monitor: str, url: str) -> Path:
    """Write the report and its PNGs; returns the HTML path."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed on a server
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    params = _main_params(study, complete)
    sections = [_section("Study", _table(([], _summary_rows(study, monitor, url)), "summary"))]
    for title, key, note, draw in _plots(study, complete, params):
        with warnings.catch_warnings():  # Optuna marks these plots experimental: not our news
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            png = _save(draw(), out / "plots" / f"{key}.png")
        sections.append(_section(title, _figure(png, title, note)))
    sections.append(_section("Best trials", _table(_top_trials(study, complete), "metrics")))
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>hydrarec tune: {escape(study.study_name)}</title><style>{CSS}</style></head>"
        f"<body><main><h1>hydrarec tune report</h1><p class='note'>study "
        f"{escape(study.study_name)} — {escape(str(out))}</p>{''.join(sections)}</main></body>"
        "</html>\n"
    )
    path = out / "report.html"
    write_text(path, page)
    return path


def _plots(study: optuna.Study, complete: list[Any], params: list[str]) -> list[tuple]:
    """(title, file name, note, drawing function) of each plot the study has the trials for."""
    vis = optuna.visualization.matplotlib
    plots: list[tuple] = [
        (
            "Optimisation history",
            "history",
            "Each completed trial's validation value and the best so far.",
            lambda: vis.plot_optimization_history(study),
        ),
        (
            "Learning curves",
            "intermediate_values",
            "The validation value each trial reported per epoch; pruned trials stop early.",
            lambda: vis.plot_intermediate_values(study),
        ),
    ]
    if len(complete) >= 2:
        plots.append(
            (
                "Parameter importances",
                "importances",
                "How much of the objective's variation each parameter explains (fANOVA).",
                lambda: vis.plot_param_importances(study),
            )
        )
    if complete and params:
        plots.append(
            (
                "Slices",
                "slice",
                f"The objective against each of the main parameters ({', '.join(params)}).",
                lambda: vis.plot_slice(study, params=params),
            )
        )
    if len(complete) >= 2 and len(params) >= 2:
        plots.append(
            (
                "Contours",
                "contour",
                "The objective over pairs of the main parameters, interpolated.",
                lambda: vis.plot_contour(study, params=params),
            )
        )
    return plots


def _main_params(study: optuna.Study, complete: list[Any]) -> list[str]:
    """The parameters to slice and contour: the most important ones once importances can be
    computed (two completed trials), else the first of the space."""
    names = list(dict.fromkeys(k for t in complete for k in t.params))
    if len(complete) >= 2 and len(names) > MAIN_PARAMS:
        importances = optuna.importance.get_param_importances(study)
        names = list(importances)
    return names[:MAIN_PARAMS]


def _save(axes: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure = np.ravel(axes)[0].figure
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def _section(title: str, content: str) -> str:
    return f"<section><h2>{escape(title)}</h2>{content}</section>"


def _summary_rows(study: optuna.Study, monitor: str, url: str) -> list[list[str]]:
    best = best_trial(study)
    counts = ", ".join(f"{n} {state}" for state, n in summary(study).items())
    rows = [
        ["study", study.study_name],
        ["storage", shown_url(url)],
        ["objective", f"valid {monitor} ({study.direction.name.lower()})"],
        ["trials", counts or "none"],
    ]
    if best is not None:
        rows.append(["best", f"{number(best.value)} (trial {best.number})"])
        rows.extend([f"  {k}", number(v)] for k, v in best.params.items())
    return rows


def _top_trials(study: optuna.Study, complete: list[Any]) -> tuple[list[str], list[list[str]]]:
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    ranked = sorted(complete, key=lambda t: t.value, reverse=reverse)[:TOP_TRIALS]
    keys = list(dict.fromkeys(k for t in ranked for k in t.params))
    rows = [
        [str(t.number), number(t.value), str(t.user_attrs.get("epochs", "–"))]
        + [number(t.params.get(k)) for k in keys]
        for t in ranked
    ]
    return ["trial", "valid", "epochs", *keys], rows
