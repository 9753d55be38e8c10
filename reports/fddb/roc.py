"""FDDB discrete and continuous ROC, computed as the official FDDB program computes them.

Protocol (``../shared/specs/evaluation_protocols.md`` part B), per image in annotation order:

1. overlaps: pixel-mask IoU of every (annotation ellipse, detection) pair, drawn with OpenCV
   and clipped to the image (:mod:`reports.fddb.overlap`), computed once and cached;
2. for each distinct detection score t, ascending: the valid detections are those with
   score >= t; annotation rows and valid detection columns whose overlaps sum to 0 are dropped;
   if more rows than columns remain the matrix is transposed (rows = detections); the FDDB
   Hungarian solver (:mod:`reports.fddb.hungarian`, not always optimal) assigns rows to columns;
   every assigned pair with overlap > 0 is a match;
3. TPCont = sum of matched overlaps (in row order), TPDisc = matches with overlap > 0.5
   (strictly), FP = valid detections - TPDisc; an image without detections gives one entry at
   threshold DBL_MAX with TP = FP = 0.

The per-image lists are merged in list order: the global curve has one point per distinct score
in the whole set (plus DBL_MAX if some image has no detections); at threshold T each image
contributes its entry at its smallest own threshold >= T, or nothing but its face count. The
sums run over images in list order, so the floating-point totals equal the C program's.
The files the program writes are in :mod:`reports.fddb.roc_files`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reports.fddb.hungarian import fddb_hungarian
from reports.fddb.overlap import RegionKind, overlap_matrix

__all__ = [
    "DBL_MAX",
    "DEFAULT_FP_BUDGET",
    "FddbRoc",
    "ImageRoc",
    "evaluate_image",
    "image_roc_from_overlaps",
    "merge_image_rocs",
    "tpr_at_fp",
]

DBL_MAX = sys.float_info.max
DEFAULT_FP_BUDGET = 1000


@dataclass(frozen=True, eq=False)
class ImageRoc:
    """One image's statistics per own threshold (ascending).

    Attributes:
        thresholds: float64 (T,) distinct detection scores, ascending ([DBL_MAX] if none).
        tp_cont: float64 (T,) sum of matched overlaps.
        tp_disc: int64 (T,) matches with overlap > 0.5.
        fp: int64 (T,) valid detections that are not discrete true positives.
        num_faces: number of annotated faces N.
    """

    thresholds: np.ndarray
    tp_cont: np.ndarray
    tp_disc: np.ndarray
    fp: np.ndarray
    num_faces: int


@dataclass(frozen=True, eq=False)
class FddbRoc:
    """The merged curve over the image list, ascending in threshold (FP decreasing).

    Attributes:
        thresholds: float64 (G,) global thresholds.
        tp_cont: float64 (G,) summed continuous true positives.
        tp_disc: int64 (G,) summed discrete true positives.
        fp: int64 (G,) summed false positives (an absolute count, not a rate).
        num_faces: total annotated faces N.
        images_without_prediction: annotated images, in list order, that the predictions do
            not mention at all (evaluated as images without detections: their faces are
            missed); an image listed with zero detections counts as predicted.
    """

    thresholds: np.ndarray
    tp_cont: np.ndarray
    tp_disc: np.ndarray
    fp: np.ndarray
    num_faces: int
    images_without_prediction: tuple[str, ...] = ()

    @property
    def num_images_without_prediction(self) -> int:
        """How many annotated images the predictions do not mention."""
        return len(self.images_without_prediction)

    @property
    def tpr_disc(self) -> np.ndarray:
        """float64 (G,) discrete true positive rate TPDisc / N (zeros when N = 0)."""
        return self.tp_disc / self.num_faces if self.num_faces else np.zeros(len(self.fp))

    @property
    def tpr_cont(self) -> np.ndarray:
        """float64 (G,) continuous true positive rate TPCont / N (zeros when N = 0)."""
        return self.tp_cont / self.num_faces if self.num_faces else np.zeros(len(self.fp))


def _solve_matches(sub: np.ndarray) -> tuple[float, int]:
    """TPCont and TPDisc of one (rows kept x cols kept) overlap matrix, as the C code sums them."""
    transpose = sub.shape[0] > sub.shape[1]
    ratings = sub.T if transpose else sub
    assignment = fddb_hungarian(ratings)
    tp_cont, tp_disc = 0.0, 0
    for i, j in enumerate(assignment):
        score = float(ratings[i, j])
        if score > 0:
            tp_cont += score
            if score > 0.5:
                tp_disc += 1
    return tp_cont, tp_disc


def image_roc_from_overlaps(overlaps: np.ndarray, scores: np.ndarray) -> ImageRoc:
    """One image's ROC entries from its cached overlap matrix.

    Args:
        overlaps: float64 (A, D) pixel-mask overlaps, annotations x detections.
        scores: float64 (D,) detection scores in the same column order.
    """
    num_faces, num_det = overlaps.shape
    if num_det == 0:
        zero = np.zeros(1, dtype=np.int64)
        return ImageRoc(np.array([DBL_MAX]), np.zeros(1), zero, zero.copy(), num_faces)
    thresholds = np.unique(scores)
    tp_cont = np.zeros(len(thresholds))
    tp_disc = np.zeros(len(thresholds), dtype=np.int64)
    fp = np.zeros(len(thresholds), dtype=np.int64)
    # a column whose overlaps sum to 0 never enters the problem; the problem at a threshold is
    # fixed by the valid columns that touch a face, so equal problems are solved once.
    touching = overlaps.sum(axis=0) != 0
    cache: dict[tuple[int, ...], tuple[float, int]] = {}
    for k, t in enumerate(thresholds.tolist()):
        valid = scores >= t
        cols = np.flatnonzero(valid & touching)
        key = tuple(cols.tolist())
        if key not in cache:
            sub = overlaps[:, cols]
            rows = np.flatnonzero(sub.sum(axis=1) != 0)
            cache[key] = _solve_matches(sub[rows]) if rows.size else (0.0, 0)
        tp_cont[k], tp_disc[k] = cache[key]
        fp[k] = int(valid.sum()) - tp_disc[k]
    return ImageRoc(thresholds, tp_cont, tp_disc, fp, num_faces)


def evaluate_image(
    ellipses: np.ndarray,
    regions: np.ndarray,
    scores: np.ndarray,
    det_kind: RegionKind,
    width: int,
    height: int,
) -> ImageRoc:
    """ROC entries of one image: overlaps (cropped masks), then the per-threshold matching.

    Args:
        ellipses: float (A, 5) annotation ellipses ``ra rb angle cx cy``.
        regions: float (D, 4) ``x y w h`` rectangles or (D, 5) ellipses (det_kind).
        scores: float (D,) detection scores.
        det_kind: "rect" or "ellipse".
        width: image width in pixels.
        height: image height in pixels.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    overlaps = overlap_matrix(ellipses, regions, det_kind, width, height)
    return image_roc_from_overlaps(overlaps, scores)


def merge_image_rocs(rocs: Sequence[ImageRoc]) -> FddbRoc:
    """Merge per-image entries in list order into the global curve (see module docstring)."""
    if not rocs:
        empty = np.zeros(0, dtype=np.int64)
        return FddbRoc(np.zeros(0), np.zeros(0), empty, empty.copy(), 0)
    thresholds = np.unique(np.concatenate([r.thresholds for r in rocs]))
    tp_cont = np.zeros(len(thresholds))
    tp_disc = np.zeros(len(thresholds), dtype=np.int64)
    fp = np.zeros(len(thresholds), dtype=np.int64)
    for roc in rocs:
        # global points (previous own threshold, own threshold] take this entry
        last = np.searchsorted(thresholds, roc.thresholds)
        reps = np.diff(np.concatenate([[-1], last]))
        end = int(last[-1]) + 1
        tp_cont[:end] += np.repeat(roc.tp_cont, reps)  # one addition per point, image order
        tp_disc[:end] += np.repeat(roc.tp_disc, reps)
        fp[:end] += np.repeat(roc.fp, reps)
    num_faces = sum(r.num_faces for r in rocs)
    return FddbRoc(thresholds, tp_cont, tp_disc, fp, num_faces)


def tpr_at_fp(tpr: np.ndarray, fp: np.ndarray, budget: float = DEFAULT_FP_BUDGET) -> float:
    """TPR at a false-positive budget, by the rule of the ``face-eval`` plotting script.

    face-eval sorts the TPR and FP columns (each on its own, descending) and reads the TPR at
    the first position whose FP is strictly below the budget; for a curve whose TPR never
    drops as FP grows this is the TPR of the point with the largest FP below the budget.

    Args:
        tpr: float (G,) true positive rates.
        fp: float (G,) absolute false-positive counts, same order.
        budget: the false-positive budget (papers quote 1000 for "TPR at 1000 FP").

    Returns:
        The TPR, or NaN when no point has fewer false positives than the budget.
    """
    tpr_sorted = np.sort(np.asarray(tpr, dtype=np.float64))[::-1]
    fp_sorted = np.sort(np.asarray(fp, dtype=np.float64))[::-1]
    below = np.flatnonzero(fp_sorted < budget)
    return float(tpr_sorted[below[0]]) if below.size else math.nan
