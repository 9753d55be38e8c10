"""ROC figures for FDDB (matplotlib, Agg): TPR against the absolute false-positive count.

Each helper takes an optional axis and returns ``(fig, ax)``; several methods are overlaid,
each labelled with its TPR at the false-positive budget (1000 by default, face-eval rule).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from reports.fddb.roc import DEFAULT_FP_BUDGET, FddbRoc, tpr_at_fp

Curve = Literal["disc", "cont"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fddb_roc(
    curves: Mapping[str, FddbRoc],
    kind: Curve = "disc",
    ax: Any | None = None,
    fp_budget: float = DEFAULT_FP_BUDGET,
    max_fp: float | None = None,
    bands: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]] | None = None,
) -> tuple[Any, Any]:
    """Draw discrete or continuous ROC curves of several methods on one axis.

    Args:
        curves: method name -> merged ROC.
        kind: "disc" (TPDisc / N) or "cont" (TPCont / N).
        ax: an existing axis to draw on; a new figure is made when None.
        fp_budget: the budget whose TPR goes into the legend.
        max_fp: right end of the x axis (default: 2 x budget).
        bands: method name -> ``tpr_disc``/``tpr_cont`` -> (lo, hi) per curve point
            (:func:`reports.fddb.bootstrap.roc_bands`), shaded in the curve's colour (``gid``
            ``"band"``); methods without one get none.

    Returns:
        (figure, axis).
    """
    if kind not in ("disc", "cont"):
        raise ValueError(f"kind must be 'disc' or 'cont', got {kind!r}")
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
    else:
        fig = ax.figure
    for name, roc in curves.items():
        tpr = roc.tpr_disc if kind == "disc" else roc.tpr_cont
        fp = roc.fp.astype(np.float64)
        at_budget = tpr_at_fp(tpr, fp, fp_budget)
        (line,) = ax.plot(fp, tpr, linewidth=1.8,
                          label=f"{name} ({at_budget:.4f} @ {fp_budget:g} FP)")
        band = (bands or {}).get(name, {}).get("tpr_disc" if kind == "disc" else "tpr_cont")
        if band is not None:
            ax.fill_between(fp, band[0], band[1], color=line.get_color(), alpha=0.2,
                            linewidth=0, gid="band")
    ax.set_xlim(0, max_fp if max_fp is not None else 2 * fp_budget)
    ax.set_ylim(0, 1)
    ax.axvline(fp_budget, color="0.6", linestyle=":", linewidth=1)
    ax.set_xlabel("false positives (count)")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"FDDB {'discrete' if kind == 'disc' else 'continuous'} ROC")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return fig, ax


def save_fddb_roc_figures(
    curves: Mapping[str, FddbRoc],
    out_dir: str | os.PathLike[str],
    fp_budget: float = DEFAULT_FP_BUDGET,
    stem: str = "fddb",
    bands: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]] | None = None,
) -> list[Path]:
    """Write ``{stem}_disc_roc`` and ``{stem}_cont_roc`` as PNG and PDF into ``out_dir``.

    Returns:
        The four written paths.
    """
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in ("disc", "cont"):
        fig, _ = plot_fddb_roc(curves, kind, fp_budget=fp_budget,  # type: ignore[arg-type]
                               bands=bands)
        for ext in ("png", "pdf"):
            path = out / f"{stem}_{kind}_roc.{ext}"
            fig.savefig(path, dpi=120, bbox_inches="tight")
            written.append(path)
        plt.close(fig)
    return written
