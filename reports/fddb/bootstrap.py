"""Bootstrap confidence intervals for the FDDB TPR at a false-positive budget, and a paired
bootstrap of two runs.

A replicate resamples the annotated images with replacement (a uniform multinomial draw of
``num_images`` images from a seeded ``numpy.random.Generator``) and recomputes the discrete and
continuous TPR at the budget. Each image is evaluated once (overlaps and the official matching,
:func:`reports.fddb.roc.evaluate_image`); its entries are then stored as *differences* on the
global threshold grid: at global point g an image contributes its entry at its smallest own
threshold >= g (:func:`reports.fddb.roc.merge_image_rocs`), so its contribution is the
reverse cumulative sum of (entry k - entry k+1) placed at entry k's grid position. A resampled
curve is one weighted ``bincount`` per column plus a reverse cumulative sum, and the TPR at the
budget is read by the face-eval rule (:func:`reports.fddb.roc.tpr_at_fp`, in linear time).

What is held fixed: the global threshold grid is the point estimate's (every distinct score of
the whole set); an image drawn 0 times leaves its grid points in place, where the curve just
repeats a neighbouring value. Discrete TP and FP are integers, so the all-ones replicate equals
the official curve exactly; the continuous TP is summed in another order than the official
program's (differences instead of image order), so it matches to floating-point rounding
(relative 1e-12), not bit for bit. The reported point estimates always come from
:func:`reports.fddb.evaluate_run`, never from the bootstrap.

Intervals are percentile intervals; the paired bootstrap uses the same weights for both runs
(same annotated images, in the same order) and reports the two-sided bootstrap p-value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.datasets.fddb import FddbImage
from reports.fddb.evaluate import FddbResult, RectToEllipse, evaluate_images
from reports.fddb.inputs import Detections, Sizes
from reports.fddb.overlap import RegionKind
from reports.fddb.roc import DEFAULT_FP_BUDGET, ImageRoc
from reports.wider.bootstrap import (
    check_num_replicates,
    first_difference,
    multinomial_weights,
    paired_summary,
    percentile_interval,
)

__all__ = [
    "METRICS",
    "FddbBootstrapState",
    "bootstrap_interval",
    "bootstrap_replicates",
    "bootstrap_state",
    "bootstrap_state_from_result",
    "bootstrap_state_from_rocs",
    "image_rocs",
    "paired_bootstrap",
    "roc_bands",
]

METRICS = ("tpr_disc", "tpr_cont")
_TP_DISC, _FP, _TP_CONT = 0, 1, 2  # columns of FddbBootstrapState.deltas


@dataclass(frozen=True, eq=False)
class FddbBootstrapState:
    """Per-image ROC entries of one run, as differences on the global threshold grid.

    Attributes:
        image_ids: the annotated images in list order (I of them).
        num_points: G, the points of the global curve (the point estimate's thresholds).
        entry_image: int64 (E,) the image of each own entry.
        entry_point: int64 (E,) the global point of each own entry (its threshold's index).
        deltas: float64 (E, 3) entry k minus entry k+1 of its image (0 after the last) for
            tp_disc, fp and tp_cont.
        num_faces: float64 (I,) annotated faces per image.
        fp_budget: the false-positive budget of the TPR.
    """

    image_ids: tuple[str, ...]
    num_points: int
    entry_image: np.ndarray
    entry_point: np.ndarray
    deltas: np.ndarray
    num_faces: np.ndarray
    fp_budget: float

    @property
    def num_images(self) -> int:
        """Annotated images I."""
        return len(self.image_ids)

    def curve(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(tp_disc, fp, tp_cont, num_faces) of the merged curve with image ``weights`` ((I,)
        counts; all ones = the official curve): three (G,) float64 and the weighted face
        count."""
        w = np.asarray(weights, dtype=np.float64)[self.entry_image]  # (E,)
        cols = []
        for c in (_TP_DISC, _FP, _TP_CONT):
            per_point = np.bincount(
                self.entry_point, weights=w * self.deltas[:, c], minlength=self.num_points
            )
            cols.append(np.cumsum(per_point[::-1])[::-1])  # value at g: sum over points >= g
        return cols[0], cols[1], cols[2], float(np.asarray(weights, np.float64) @ self.num_faces)

    def replicate(self, weights: np.ndarray) -> dict[str, float]:
        """Discrete and continuous TPR at the budget for one weight vector ((I,))."""
        tp_disc, fp, tp_cont, faces = self.curve(weights)
        if faces:
            tpr_disc, tpr_cont = tp_disc / faces, tp_cont / faces
        else:
            tpr_disc = tpr_cont = np.zeros(self.num_points)
        k = int(np.count_nonzero(fp >= self.fp_budget))  # the face-eval rule's position
        return {
            "tpr_disc": _kth_largest(tpr_disc, k),
            "tpr_cont": _kth_largest(tpr_cont, k),
        }

    def point_estimate(self) -> dict[str, float]:
        """TPRs with every image weighted 1 (the official values; continuous to rounding)."""
        return self.replicate(np.ones(self.num_images))


def _kth_largest(values: np.ndarray, k: int) -> float:
    """``sort(values)[::-1][k]`` in linear time (NaN when k is past the end), which is what
    :func:`reports.fddb.roc.tpr_at_fp` reads."""
    if k >= len(values):
        return math.nan
    pos = len(values) - 1 - k
    return float(np.partition(values, pos)[pos])


def bootstrap_state_from_rocs(
    image_ids: Sequence[str], rocs: Sequence[ImageRoc], fp_budget: float = DEFAULT_FP_BUDGET
) -> FddbBootstrapState:
    """The bootstrap state of per-image entries (list order, as merged officially)."""
    if len(image_ids) != len(rocs):
        raise ValueError(f"{len(image_ids)} image ids for {len(rocs)} image ROCs")
    if not rocs:
        raise ValueError("no images to resample")
    thresholds = np.unique(np.concatenate([r.thresholds for r in rocs]))
    images, points, deltas = [], [], []
    for i, roc in enumerate(rocs):
        values = np.stack([roc.tp_disc, roc.fp, roc.tp_cont], axis=1).astype(np.float64)
        nxt = np.concatenate([values[1:], np.zeros((1, 3))])  # (T, 3): entry k+1, 0 after
        points.append(np.searchsorted(thresholds, roc.thresholds))
        images.append(np.full(len(roc.thresholds), i, dtype=np.int64))
        deltas.append(values - nxt)
    return FddbBootstrapState(
        image_ids=tuple(image_ids),
        num_points=len(thresholds),
        entry_image=np.concatenate(images),
        entry_point=np.concatenate(points).astype(np.int64),
        deltas=np.concatenate(deltas),
        num_faces=np.asarray([r.num_faces for r in rocs], dtype=np.float64),
        fp_budget=float(fp_budget),
    )


def image_rocs(
    annotations: Sequence[FddbImage],
    detections: Detections,
    sizes: Sizes,
    det_kind: RegionKind,
    to_ellipse: RectToEllipse | None = None,
) -> list[ImageRoc]:
    """Each annotated image's entries, read as :func:`reports.fddb.evaluate_fddb` reads them
    (same arguments; an image missing from a ``detections`` mapping has no detections)."""
    return evaluate_images(annotations, detections, sizes, det_kind, to_ellipse)[0]


def bootstrap_state_from_result(result: FddbResult) -> FddbBootstrapState:
    """The bootstrap state of an evaluation's own per-image entries (no image evaluated
    again)."""
    return bootstrap_state_from_rocs(result.image_ids, result.image_rocs, result.fp_budget)


def bootstrap_state(
    annotations: Sequence[FddbImage],
    detections: Detections,
    sizes: Sizes,
    det_kind: RegionKind,
    to_ellipse: RectToEllipse | None = None,
    fp_budget: float = DEFAULT_FP_BUDGET,
) -> FddbBootstrapState:
    """Evaluate every image once (:func:`image_rocs`) and keep its entries for resampling."""
    rocs = image_rocs(annotations, detections, sizes, det_kind, to_ellipse)
    return bootstrap_state_from_rocs([a.image_id for a in annotations], rocs, fp_budget)


def bootstrap_replicates(
    state: FddbBootstrapState, n: int, seed: int | None = 0
) -> dict[str, np.ndarray]:
    """Discrete and continuous TPR of ``n`` resampled image sets: metric -> (n,) float64."""
    check_num_replicates(n)
    out: dict[str, list[float]] = {m: [] for m in METRICS}
    for weights in multinomial_weights(state.num_images, n, seed):
        for w in weights:
            for m, v in state.replicate(w).items():
                out[m].append(v)
    return {m: np.asarray(v, dtype=np.float64) for m, v in out.items()}


def bootstrap_interval(
    state: FddbBootstrapState, n: int, seed: int | None = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of ``tpr_disc`` and ``tpr_cont`` at the budget.

    Raises:
        ValueError: ``n`` < 1 or ``level`` outside (0, 1).
    """
    check_num_replicates(n, level)
    reps = bootstrap_replicates(state, n, seed)
    return {m: percentile_interval(v, level) for m, v in reps.items()}


def paired_bootstrap(
    state_a: FddbBootstrapState,
    state_b: FddbBootstrapState,
    n: int,
    seed: int | None = 0,
    level: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Paired bootstrap of ``TPR_A - TPR_B`` (same weights for both runs).

    Returns:
        metric -> {"diff", "interval": (lo, hi), "p_value"}.

    Raises:
        ValueError: ``n`` < 1, different budgets, or different image lists (naming the first
            image that differs).
    """
    check_num_replicates(n, level)
    differs = first_difference(state_a.image_ids, state_b.image_ids)
    if differs is not None:
        raise ValueError(
            f"paired bootstrap needs the same images in the same order: the runs differ at "
            f"{differs!r} ({state_a.num_images} vs {state_b.num_images} images)"
        )
    if state_a.fp_budget != state_b.fp_budget:
        raise ValueError(f"different FP budgets: {state_a.fp_budget} vs {state_b.fp_budget}")
    point_a, point_b = state_a.point_estimate(), state_b.point_estimate()
    diffs: dict[str, list[float]] = {m: [] for m in METRICS}
    for weights in multinomial_weights(state_a.num_images, n, seed):
        for w in weights:
            a, b = state_a.replicate(w), state_b.replicate(w)
            for m in METRICS:
                diffs[m].append(a[m] - b[m])
    return {
        m: paired_summary(point_a[m] - point_b[m], np.asarray(diffs[m]), level) for m in METRICS
    }


def roc_bands(
    state: FddbBootstrapState, n: int, seed: int | None = 0, level: float = 0.95
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pointwise percentile band of the discrete and continuous ROC.

    At each point of the global threshold grid (the point curve's points, same order as
    :class:`reports.fddb.FddbRoc`'s arrays), the central ``level`` interval of the TPR over
    ``n`` replicates (the draws of :func:`bootstrap_interval` with the same seed); drawn
    against the point curve's false-positive count there.

    Returns:
        ``tpr_disc`` / ``tpr_cont`` -> (lo, hi), each (G,) float64.
    """
    check_num_replicates(n, level)
    disc = np.empty((n, state.num_points))
    cont = np.empty((n, state.num_points))
    r = 0
    for weights in multinomial_weights(state.num_images, n, seed):
        for w in weights:
            tp_disc, _, tp_cont, faces = state.curve(w)
            scale = 1.0 / faces if faces else 0.0
            disc[r], cont[r] = tp_disc * scale, tp_cont * scale
            r += 1
    alpha = (1.0 - level) / 2.0
    return {m: tuple(np.quantile(v, [alpha, 1.0 - alpha], axis=0))  # type: ignore[misc]
            for m, v in (("tpr_disc", disc), ("tpr_cont", cont))}
