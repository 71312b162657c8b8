"""PNG plots of an evaluation: precision-recall curves and the confusion matrix (needs matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from training.evaluate import ViolationSweep


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)  # draw without pyplot, so no global figure state or GUI backend is involved
    figure.savefig(path, dpi=120)
    return path


def plot_pr_curves(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], ap50: dict[str, float], path: Path
) -> Path:
    """Plot one precision-recall curve per class at IoU 0.5, labelled with its AP50."""
    figure = Figure(figsize=(7, 5), layout="constrained")
    ax = figure.add_subplot()
    for name, (recall, precision) in curves.items():
        ax.plot(
            np.r_[0.0, recall],
            np.r_[1.0 if len(precision) else 0.0, precision],
            label=f"{name} {ap50[name]:.3f}",
        )
    ax.set(
        xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02), title="Precision-recall (IoU 0.5)"
    )
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(title="class  AP50", loc="lower left")
    return _save(figure, Path(path))


def plot_confusion_matrix(matrix: np.ndarray, names: Sequence[str], path: Path) -> Path:
    """Plot predicted (rows) against true (columns) class counts, background last, at operating thresholds."""
    labels = [*names, "background"]
    figure = Figure(figsize=(7, 6), layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=ax)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="True", ylabel="Predicted", title="Confusion matrix (operating thresholds, IoU 0.5)")
    peak = matrix.max() if matrix.size else 0
    for (row, col), value in np.ndenumerate(matrix):
        if value:
            ax.text(
                col, row, str(value), ha="center", va="center", color="white" if value > peak / 2 else "black"
            )
    return _save(figure, Path(path))


def plot_violation_sweeps(sweeps: Sequence[ViolationSweep], path: Path) -> Path:
    """Plot each rule's best precision/recall trade-offs over the threshold sweep, the pick starred."""
    figure = Figure(figsize=(7, 5), layout="constrained")
    ax = figure.add_subplot()
    for sweep in sweeps:
        ax.scatter([p.recall for p in sweep.points], [p.precision for p in sweep.points], s=6, alpha=0.25)
        frontier = sweep.frontier()
        (line,) = ax.plot([p.recall for p in frontier], [p.precision for p in frontier], marker="o",
                          markersize=3, label=sweep.rule)  # fmt: skip
        for p in frontier:
            ax.annotate(f"{p.person_threshold:g}/{p.threshold:g}", (p.recall, p.precision), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
        pick = sweep.best or sweep.balanced
        if pick is not None:
            ax.plot([pick.recall], [pick.precision], marker="*", markersize=14, color=line.get_color())
    if sweeps:
        ax.axhline(sweeps[0].target_precision, color="grey", linestyle="--", linewidth=1)
        ax.legend(title="violation (labels: person/PPE threshold)", loc="lower left")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1.02), ylim=(0, 1.02),
           title="Violations per labelled person: threshold sweep")  # fmt: skip
    ax.grid(alpha=0.3)
    return _save(figure, Path(path))
