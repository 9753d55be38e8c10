"""The histogram of detection scores of several runs (matplotlib without pyplot)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["plot_score_histograms"]


def plot_score_histograms(
    counts: Mapping[str, np.ndarray], edges: np.ndarray, ax: Axes | None = None
) -> tuple[Figure, Axes]:
    """Score histograms of several runs, one step line each (log count axis).

    Args:
        counts: run name -> (B,) int counts of its detections per bin.
        edges: (B + 1,) bin edges (scores).
        ax: axis to draw on; a new 6x3.5 inch figure when None.
    """
    if ax is None:
        fig = Figure(figsize=(6, 3.5))
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure  # type: ignore[assignment]
    for name, c in counts.items():
        ax.stairs(np.asarray(c), edges, label=f"{name} ({int(np.sum(c))} boxes)")
    ax.set_yscale("symlog")
    ax.set_xlabel("score")
    ax.set_ylabel("detections")
    ax.set_xlim(float(edges[0]), float(edges[-1]))
    ax.legend(loc="upper center", fontsize="small")
    ax.set_title("Detection scores")
    fig.tight_layout()
    return fig, ax
