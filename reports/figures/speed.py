"""Accuracy against speed: one point per run, AP against images per second (matplotlib
without pyplot).

The speed is the run's recorded throughput (``run.json`` ``timing.images_per_second``: images
over the wall-clock seconds of the invocations that ran shards, start-up included), on the
hardware its ``cluster`` record names; :func:`hardware_label` spells that out ("CPU, 2
workers", "GPU x1, 1 worker") so that points measured on different machines are not read as
comparable without a note.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["SpeedPoint", "hardware_label", "plot_speed", "speed_point"]


@dataclass(frozen=True)
class SpeedPoint:
    """One run on the accuracy/speed plane.

    Attributes:
        name: the run's display name.
        ap: its accuracy (e.g. WIDER hard AP, matlab flavour).
        images_per_second: recorded throughput of the whole run (all workers).
        hardware: what it ran on (:func:`hardware_label`).
        interval: (lo, hi) of ``ap`` (a bootstrap interval), or None.
    """

    name: str
    ap: float
    images_per_second: float
    hardware: str
    interval: tuple[float, float] | None = None


def hardware_label(run_json: Mapping[str, Any]) -> str:
    """"CPU" or "GPU xG" per worker, and the worker count, from a ``run.json``'s ``cluster``
    record (``num_gpus_per_worker``: 0 is CPU, > 0 GPU, None "auto": a GPU if the cluster
    had one); "unknown hardware" when the run has no such record."""
    cluster = run_json.get("cluster")
    if not isinstance(cluster, Mapping):
        return "unknown hardware"
    gpus = cluster.get("num_gpus_per_worker")
    workers = cluster.get("num_workers")
    if gpus is None:
        device = "auto (GPU if any)"
    elif float(gpus) > 0:
        device = f"GPU x{float(gpus):g}"
    else:
        device = "CPU"
    if workers is None:
        return device
    return f"{device}, {int(workers)} worker{'s' if int(workers) != 1 else ''}"


def speed_point(name: str, run_json: Mapping[str, Any], ap: float,
                interval: tuple[float, float] | None = None) -> SpeedPoint | None:
    """The point of one run, or None when its ``run.json`` records no positive
    ``timing.images_per_second`` (an unfinished run, or one written by hand)."""
    timing = run_json.get("timing")
    rate = timing.get("images_per_second") if isinstance(timing, Mapping) else None
    if not isinstance(rate, int | float) or not rate > 0:
        return None
    return SpeedPoint(name=name, ap=float(ap), images_per_second=float(rate),
                      hardware=hardware_label(run_json), interval=interval)


def plot_speed(points: Sequence[SpeedPoint], ax: Axes | None = None,
               ylabel: str = "AP (hard, matlab)") -> tuple[Figure, Axes]:
    """AP against images/s (log axis), one marker per run, its interval as an error bar.

    Args:
        points: the runs; each legend entry reads ``name-AP (hardware)``, best AP first.
        ax: axis to draw on; a new 6x4.5 inch figure when None.
        ylabel: what ``ap`` is.

    Raises:
        ValueError: no points.
    """
    if not points:
        raise ValueError("plot_speed needs at least one run with a recorded speed")
    if ax is None:
        fig = Figure(figsize=(6, 4.5), layout="constrained")
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure  # type: ignore[assignment]
    for p in sorted(points, key=lambda q: np.inf if np.isnan(q.ap) else -q.ap):
        yerr = None
        if p.interval is not None and not np.isnan(p.interval).any():
            yerr = [[max(p.ap - p.interval[0], 0.0)], [max(p.interval[1] - p.ap, 0.0)]]
        ax.errorbar([p.images_per_second], [p.ap], yerr=yerr, fmt="o", capsize=4,
                    markersize=7, label=f"{p.name}-{p.ap:.3f} ({p.hardware})")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("images / s (recorded, whole run)")
    ax.set_ylabel(ylabel)
    ax.set_title("Accuracy against speed")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    return fig, ax
