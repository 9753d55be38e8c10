"""Figures (drawing only): WIDER FACE PR curves (:mod:`~reports.figures.wider_pr`), FDDB ROC
curves (:mod:`~reports.figures.fddb_roc`), score histograms
(:mod:`~reports.figures.score_histogram`), matched-anchor statistics
(:mod:`~reports.figures.anchors`) and galleries of a run's worst mistakes
(:mod:`~reports.figures.gallery`). Plot helpers take an optional axis and return
``(fig, ax)``; :func:`save_figure` writes a figure as PNG and PDF.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["save_figure"]


def save_figure(fig: Figure, prefix: str | os.PathLike[str]) -> list[Path]:
    """Write ``PREFIX.png`` (150 dpi) and ``PREFIX.pdf``; returns the paths."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = [prefix.with_name(prefix.name + ext) for ext in (".png", ".pdf")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths
