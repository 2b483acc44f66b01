"""The report's figures, drawn with matplotlib (Agg backend: no display needed) into PNG files.

learning_curves.png   one panel per task: train loss and the validation headline metric
loss_weights.png      each task's joint-loss weight per epoch
item_map.png          2-D PCA of the item vectors, coloured by an item category
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: headless, and the same pixels everywhere

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hydrarec.report.collect import ItemMap, ReportData
from hydrarec.report.tables import direction

DPI = 110
TRAIN_COLOUR = "#1f77b4"
VALID_COLOUR = "#d62728"
# the validation metric plotted for each task kind; the first one present is used
HEADLINE = {
    "retrieval": ("ndcg@10", "ndcg@20", "hr@10"),
    "rating": ("rmse", "mae"),
    "binary": ("auc", "logloss"),
    "reconstruction": ("loss",),
}


def write_plots(data: ReportData, folder: Path) -> dict[str, Path]:
    """Draw every figure into ``folder``; returns {name: png path} in report order."""
    folder.mkdir(parents=True, exist_ok=True)
    figures = {
        "learning_curves": learning_curves(data),
        "loss_weights": loss_weights(data),
        "item_map": item_map(data.item_map),
    }
    out = {}
    for name, fig in figures.items():
        out[name] = folder / f"{name}.png"
        fig.savefig(out[name], dpi=DPI, bbox_inches="tight", facecolor="white")
        plt.close(fig)
    return out


def headline(kind: str, task: str, valid: dict[str, float]) -> str | None:
    """The validation metric plotted for ``task`` (e.g. ``retrieval/ndcg@10``), if any."""
    for metric in HEADLINE.get(kind, ()):
        if f"{task}/{metric}" in valid:
            return f"{task}/{metric}"
    return next((k for k in valid if k.startswith(f"{task}/")), None)


def _grid(n: int, width: float = 5.2, height: float = 3.3) -> tuple[Figure, list[Axes]]:
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def learning_curves(data: ReportData) -> Figure:
    """One panel per task: train loss (left axis) and validation metric (right axis)."""
    fig, axes = _grid(max(len(data.tasks), 1))
    best = data.best_epoch
    for ax, (task, kind) in zip(axes, data.tasks.items(), strict=False):
        _task_panel(ax, task, kind, data.history, best)
    handles = [
        Line2D([], [], color=TRAIN_COLOUR, marker="o", label="train loss (left axis)"),
        Line2D(
            [],
            [],
            color=VALID_COLOUR,
            marker="s",
            linestyle="--",
            label="validation metric (right axis)",
        ),
        Line2D([], [], color="grey", linestyle=":", label="epoch kept (best on validation)"),
    ]
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.legend(handles=handles, loc="upper center", ncol=3, frameon=False, fontsize=9)
    return fig


def _task_panel(
    ax: Axes, task: str, kind: str, history: list[dict[str, Any]], best: int | None
) -> None:
    epochs = [h["epoch"] for h in history if task in h.get("train_loss", {})]
    losses = [h["train_loss"][task] for h in history if task in h.get("train_loss", {})]
    ax.plot(epochs, losses, "o-", color=TRAIN_COLOUR, label="train loss", markersize=4)
    ax.set_title(task if task == kind else f"{task} ({kind})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color=TRAIN_COLOUR)
    ax.grid(alpha=0.3)
    valid = [h for h in history if h.get("valid")]
    metric = headline(kind, task, valid[-1]["valid"]) if valid else None
    if metric is not None:
        twin = ax.twinx()
        points = [(h["epoch"], h["valid"][metric]) for h in valid if metric in h["valid"]]
        twin.plot(*zip(*points, strict=True), "s--", color=VALID_COLOUR, markersize=4)
        twin.set_ylabel(f"valid {metric.split('/', 1)[1]} {direction(metric)}", color=VALID_COLOUR)
    if best is not None:
        ax.axvline(best, color="grey", linestyle=":", linewidth=1)
    if epochs:
        ax.set_xticks(_ticks(epochs))


def _ticks(epochs: list[int]) -> list[int]:
    step = max(1, len(epochs) // 10)
    return list(range(min(epochs), max(epochs) + 1, step))


def loss_weights(data: ReportData) -> Figure:
    """Each task's weight in the joint loss per epoch (flat lines for static weights)."""
    fig, ax = plt.subplots(figsize=(7.0, 3.4))
    epochs = [h["epoch"] for h in data.history]
    markers = "osD^vP*X"
    for k, task in enumerate(data.tasks):
        values = [h.get("weights", {}).get(task, np.nan) for h in data.history]
        last = f" ({values[-1]:.3g})" if values else ""
        # equal weights overlap: shrinking hollow markers keep every task visible
        ax.plot(
            epochs,
            values,
            marker=markers[k % len(markers)],
            markersize=11 - 2 * (k % 4),
            markerfacecolor="none",
            linewidth=2.2 - 0.4 * (k % 4),
            label=task + last,
        )
    weighting = data.summary.get("joint loss", "?")
    ax.set_title(f"Joint-loss weight of each task ({weighting} weighting)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("weight")
    ax.grid(alpha=0.3)
    if epochs:
        ax.set_xticks(_ticks(epochs))
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def item_map(m: ItemMap) -> Figure:
    """The item vectors in 2-D (PCA), one colour per category, the most popular items named."""
    fig, ax = plt.subplots(figsize=(8.0, 6.0))
    x, y = m.coords[:, 0], m.coords[:, 1]
    if m.category is None:
        ax.scatter(x, y, s=10, alpha=0.6, color=TRAIN_COLOUR, linewidths=0)
    else:
        _scatter_categories(ax, m)
    for i, name in zip(m.labelled, m.names, strict=True):
        short = name if len(name) <= 30 else name[:29] + "…"
        ax.scatter(x[i], y[i], s=40, facecolors="none", edgecolors="black", linewidths=1)
        ax.annotate(
            short,
            (x[i], y[i]),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.75, "lw": 0},
        )
    ax.set_xlabel(f"PC 1 ({m.explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({m.explained[1]:.0%} of variance)")
    coloured = f", coloured by {m.category_name} (first value)" if m.category_name else ""
    ax.set_title(f"Item representations (PCA){coloured}; circled: most popular items")
    ax.grid(alpha=0.2)
    fig.tight_layout()
    return fig


def _scatter_categories(ax: Axes, m: ItemMap) -> None:
    assert m.category is not None
    names, counts = np.unique(m.category, return_counts=True)
    order = [n for n in names[np.argsort(-counts, kind="stable")] if n != "other"]
    palette = plt.get_cmap("tab10")
    for k, name in enumerate(order):
        sel = m.category == name
        ax.scatter(
            m.coords[sel, 0],
            m.coords[sel, 1],
            s=12,
            alpha=0.7,
            linewidths=0,
            color=palette(k % 10),
            label=f"{name} ({sel.sum()})",
        )
    if "other" in names:
        sel = m.category == "other"
        ax.scatter(
            m.coords[sel, 0],
            m.coords[sel, 1],
            s=10,
            alpha=0.4,
            linewidths=0,
            color="#aaaaaa",
            label=f"other ({sel.sum()})",
        )
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
