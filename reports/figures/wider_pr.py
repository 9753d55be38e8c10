"""PR-curve figures for WIDER FACE (matplotlib without pyplot: no GUI backend, thread safe).

Each helper takes an optional axis (or axes) and returns ``(fig, ax)``;
:func:`reports.figures.save_figure` writes PNG and PDF. Results are
:class:`reports.wider.WiderResult` objects or their JSON form (``dsfd eval wider --json``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pipeline.datasets.wider import SETTINGS
from reports.wider.result import WiderResult, result_from_json


def _as_result(result: WiderResult | Mapping[str, Any]) -> WiderResult:
    return result if isinstance(result, WiderResult) else result_from_json(result)


def _sort_key(ap: float) -> float:
    """Best AP first, NaN last (the legend order of the official plots)."""
    return np.inf if np.isnan(ap) else -ap


def plot_pr_curve(
    precision: np.ndarray,
    recall: np.ndarray,
    label: str | None = None,
    ax: Axes | None = None,
    **line_kwargs: Any,
) -> tuple[Figure, Axes]:
    """Draw one precision-recall curve (points with NaN precision are left out).

    Args:
        precision: (T,) float64.
        recall: (T,) float64, same length.
        label: legend entry.
        ax: axis to draw on; a new 5x5 inch figure when None.
    """
    precision = np.asarray(precision, dtype=np.float64)
    recall = np.asarray(recall, dtype=np.float64)
    if precision.shape != recall.shape:
        raise ValueError(f"precision {precision.shape} and recall {recall.shape} differ")
    if ax is None:
        fig = Figure(figsize=(5, 5))
        ax = fig.add_subplot(1, 1, 1)
    keep = ~np.isnan(precision)
    ax.plot(recall[keep], precision[keep], label=label, linewidth=1.5, **line_kwargs)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.grid(True, alpha=0.3)
    return ax.get_figure(), ax  # type: ignore[return-value]


def plot_wider_pr(
    methods: Mapping[str, WiderResult | Mapping[str, Any]],
    axes: Sequence[Axes] | None = None,
    settings: Sequence[str] = SETTINGS,
    bands: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]] | None = None,
) -> tuple[Figure, Sequence[Axes]]:
    """Three panels (easy, medium, hard), one curve per method, with the official tools' legend:
    ``Method-AP`` (three decimals), sorted by the panel's AP, best first.

    Args:
        methods: legend name -> result (one flavour each; it is named in the panel titles).
        axes: one axis per setting; a new 15x5 inch figure when None.
        settings: which panels.
        bands: legend name -> setting -> (lo, hi) precision per threshold
            (:func:`reports.wider.bootstrap.pr_bands`), shaded in the curve's colour against
            its recall; methods without one get none.
    """
    if not methods:
        raise ValueError("plot_wider_pr needs at least one method")
    if axes is None:
        fig = Figure(figsize=(5 * len(settings), 5), layout="constrained")
        axes = [fig.add_subplot(1, len(settings), i + 1) for i in range(len(settings))]
    if len(axes) != len(settings):
        raise ValueError(f"need {len(settings)} axes, got {len(axes)}")
    results = {name: _as_result(res) for name, res in methods.items()}
    flavours = sorted({r.flavour for r in results.values()})
    for ax, setting in zip(axes, settings, strict=True):
        for name, r in sorted(results.items(), key=lambda kv: _sort_key(kv[1].ap[setting])):
            curve = r.pr[setting]
            label = f"{name}-{r.ap[setting]:.3f}"
            plot_pr_curve(curve["precision"], curve["recall"], label=label, ax=ax)
            band = (bands or {}).get(name, {}).get(setting)
            if band is not None:
                _fill_band(ax, np.asarray(curve["recall"], np.float64), band)
        ax.set_title(f"WIDER FACE val: {setting} ({', '.join(flavours)})")
        ax.legend(loc="lower left", fontsize="small")
    return axes[0].get_figure(), axes  # type: ignore[return-value]


def _fill_band(ax: Axes, x: np.ndarray, band: tuple[np.ndarray, np.ndarray]) -> None:
    """Shade ``band`` (lo, hi) along ``x`` in the colour of the axis' last line (the
    ``gid`` ``"band"`` marks it; NaN points are left out)."""
    lo, hi = (np.asarray(b, np.float64) for b in band)
    keep = ~(np.isnan(x) | np.isnan(lo) | np.isnan(hi))
    color = ax.get_lines()[-1].get_color()
    ax.fill_between(x[keep], lo[keep], hi[keep], color=color, alpha=0.2, linewidth=0,
                    gid="band")
