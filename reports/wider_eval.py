"""WIDER FACE evaluation: easy/medium/hard AP and the 1000-point PR curves (numpy only).

Two flavours, each reproducing its tool exactly (see ``docs/evaluation_wider.md``):

* ``matlab`` (default): the official ``eval_tools`` (2017). Scores normalised once over the
  whole set in **single precision** with ``realmin``/``realmax`` single seeds; detections
  sorted per image by score (stable, descending); ``boxoverlap`` in MATLAB's **int32**
  arithmetic (the ground truth is int32: detection corners rounded half away from zero,
  integer areas, an overlap that is a rounded integer quotient), the **first** ground truth with
  the largest overlap taken; AP = ``VOCap`` summed left to right, NaN ignored by ``max``.
* ``pyport``: the wondervictor Python port. File order, double normalisation with seeds 0/1,
  float IoU with the +1 convention, ``np.argmax``, ``np.sum``.

Structure (torchmetrics style)::

    pass 1   ScoreBounds.update(scores) per image  -> merge (min/max, exact)
    pass 2   evaluate_image(gt, dets, bounds)      -> WiderEvalState (integer PR tables and
             face counts per setting)              -> merge (sums of integers, exact)
    compute  WiderEvalState.compute()              -> WiderResult (AP and PR curves)

The normalisation needs the global minimum and maximum score before any table can be built,
hence two passes; both passes are per image and their partial results merge exactly, so shards
can be evaluated anywhere and combined.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.datasets.wider import SETTINGS, WiderGroundTruth, WiderImageGT, load_wider_gt_dir
from pipeline.rundir import RunDir
from reports.wider_predictions import (
    EMPTY,
    ImageDetections,
    WiderPortCrash,
    WiderPredictions,
    check_flavour,
    read_run_predictions,
    read_txt_predictions,
)

__all__ = [
    "THRESH_NUM",
    "ScoreBounds",
    "WiderEvalState",
    "WiderPortCrash",
    "WiderResult",
    "evaluate_image",
    "evaluate_predictions",
    "evaluate_wider",
    "load_predictions",
    "thresholds",
]

THRESH_NUM = 1000
IOU_THRESH = 0.5
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_F32 = np.float32


def thresholds(thresh_num: int = THRESH_NUM) -> np.ndarray:
    """(thresh_num,) float64 score thresholds ``1 - t/thresh_num`` for t = 1..thresh_num
    (0.999, 0.998, ..., 0), computed exactly as the tools do."""
    return 1.0 - np.arange(1, thresh_num + 1, dtype=np.float64) / thresh_num


# ----------------------------------------------------------------------------------------
# Pass 1: score normalisation


@dataclass(frozen=True)
class ScoreBounds:
    """Running min/max of the raw scores (mergeable), with each flavour's seeds.

    ``matlab`` keeps float32 values seeded with ``realmax('single')`` / ``realmin('single')``;
    ``pyport`` keeps float64 values seeded with 1 / 0.
    """

    flavour: str
    lo: float
    hi: float

    @classmethod
    def initial(cls, flavour: str) -> ScoreBounds:
        """The seeds of ``flavour``'s tool."""
        if check_flavour(flavour) == "matlab":
            f32 = np.finfo(np.float32)
            return cls(flavour, float(f32.max), float(f32.tiny))
        return cls(flavour, 1.0, 0.0)

    def update(self, scores: np.ndarray) -> ScoreBounds:
        """Bounds after seeing ``scores`` ((n,) float64 raw scores of one image)."""
        scores = scores[~np.isnan(scores)] if self.flavour == "matlab" else scores
        if len(scores) == 0:  # MATLAB's max/min ignore NaN
            return self
        if self.flavour == "matlab":
            s = scores.astype(_F32)
            return ScoreBounds(
                self.flavour, min(self.lo, float(s.min())), max(self.hi, float(s.max()))
            )
        # The port: max(_max, max_score) / min(_min, min_score) with Python's max/min.
        return ScoreBounds(
            self.flavour, min(float(scores.min()), self.lo), max(float(scores.max()), self.hi)
        )

    def merge(self, other: ScoreBounds) -> ScoreBounds:
        """Bounds over both parts (exact)."""
        if other.flavour != self.flavour:
            raise ValueError(f"cannot merge {self.flavour} bounds with {other.flavour} bounds")
        return ScoreBounds(self.flavour, min(self.lo, other.lo), max(self.hi, other.hi))

    def normalise(self, scores: np.ndarray) -> np.ndarray:
        """(n,) float64 normalised scores ``(s - lo) / (hi - lo)`` (matlab: in float32)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.flavour == "matlab":
                lo, hi = _F32(self.lo), _F32(self.hi)
                return ((scores.astype(_F32) - lo) / (hi - lo)).astype(np.float64)
            return (scores - self.lo) / (self.hi - self.lo)


# ----------------------------------------------------------------------------------------
# Pass 2: per-image matching and PR tables


def round_half_away(values: np.ndarray) -> np.ndarray:
    """MATLAB's ``round`` (nearest, halves away from zero), float64 in and out."""
    a = np.abs(values)
    f = np.floor(a)
    return np.copysign(f + (a - f >= 0.5), values)


def _to_int32(values: np.ndarray) -> np.ndarray:
    """MATLAB's conversion of doubles to int32: round, saturate, NaN -> 0 (as int64)."""
    r = np.nan_to_num(round_half_away(values), nan=0.0, posinf=_INT32_MAX, neginf=_INT32_MIN)
    return np.clip(r, _INT32_MIN, _INT32_MAX).astype(np.int64)


def _corners(boxes_xywh: np.ndarray) -> np.ndarray:
    """(n, 4) ``x y w h`` -> ``x1 y1 x2 y2`` with x2 = x + w, y2 = y + h (same dtype)."""
    return np.concatenate([boxes_xywh[:, :2], boxes_xywh[:, :2] + boxes_xywh[:, 2:]], axis=1)


def matlab_overlaps(gt_xywh: np.ndarray, det_xywh: np.ndarray) -> np.ndarray:
    """``boxoverlap(gt, det)`` of the official tool with int32 ground truth, vectorised.

    Args:
        gt_xywh: (G, 4) int32 ground-truth boxes.
        det_xywh: (n, 4) float64 detections.

    Returns:
        (n, G) int64 overlaps: integers (0 or 1 for ordinary boxes; degenerate detections can
        give other values, e.g. intmax for a zero denominator), as MATLAB computes them.
    """
    g = _corners(gt_xywh.astype(np.int64))  # (G, 4)
    p = _corners(det_xywh.astype(np.float64))  # (n, 4)
    rp = _to_int32(p)  # rounded inside max/min
    x1 = np.maximum(g[None, :, 0], rp[:, None, 0])  # (n, G)
    y1 = np.maximum(g[None, :, 1], rp[:, None, 1])
    x2 = np.minimum(g[None, :, 2], rp[:, None, 2])
    y2 = np.minimum(g[None, :, 3], rp[:, None, 3])
    w = x2 - x1 + 1
    h = y2 - y1 + 1
    inter = w * h
    area_g = (g[:, 2] - g[:, 0] + 1) * (g[:, 3] - g[:, 1] + 1)  # (G,) int
    area_d = (p[:, 2] - p[:, 0] + 1) * (p[:, 3] - p[:, 1] + 1)  # (n,) double
    den = _to_int32(area_g[None, :] + area_d[:, None]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        quotient = _to_int32(inter / np.where(den == 0, 1, den))
    by_zero = np.where(inter > 0, _INT32_MAX, np.where(inter < 0, _INT32_MIN, 0))
    overlap = np.where(den == 0, by_zero, quotient)
    overlap[(w <= 0) | (h <= 0)] = 0
    return overlap


def pyport_overlaps(gt_xywh: np.ndarray, det_xywh: np.ndarray) -> np.ndarray:
    """The port's ``bbox_overlaps(pred, gt)`` (float64 IoU, +1 convention), vectorised with
    the same operation order. Returns (n, G) float64."""
    q = _corners(gt_xywh.astype(np.float64))  # (G, 4)
    b = _corners(det_xywh.astype(np.float64))  # (n, 4)
    box_area = (q[:, 2] - q[:, 0] + 1) * (q[:, 3] - q[:, 1] + 1)
    iw = np.minimum(b[:, None, 2], q[None, :, 2]) - np.maximum(b[:, None, 0], q[None, :, 0]) + 1
    ih = np.minimum(b[:, None, 3], q[None, :, 3]) - np.maximum(b[:, None, 1], q[None, :, 1]) + 1
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    valid = (iw > 0) & (ih > 0)
    ua = area_b[:, None] + box_area[None, :] - iw * ih
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(valid, iw * ih / np.where(valid, ua, 1.0), 0.0)


def best_matches(gt_xywh: np.ndarray, det_xywh: np.ndarray, flavour: str) -> tuple:
    """For each detection, the first ground truth of maximal overlap and whether that overlap
    passes the IoU test (``>= 0.5``). Returns ((n,) int64, (n,) bool)."""
    if flavour == "matlab":
        ov: np.ndarray = matlab_overlaps(gt_xywh, det_xywh)
    else:
        ov = pyport_overlaps(gt_xywh, det_xywh)
    best = np.argmax(ov, axis=1)
    top = ov[np.arange(len(ov)), best]
    return best, top >= IOU_THRESH


def last_index_at_threshold(scores: np.ndarray, thresh_num: int = THRESH_NUM) -> np.ndarray:
    """``r_t`` = the last detection index (in processing order) whose score is ``>= thr_t``,
    or -1, for each threshold t (0.999 .. 0). Returns (thresh_num,) int64."""
    thr_ascending = thresholds(thresh_num)[::-1]
    valid = ~np.isnan(scores)
    num_passed = np.searchsorted(thr_ascending, scores[valid], side="right")
    first_t = thresh_num - num_passed  # first threshold index (descending order) passed
    idx = np.flatnonzero(valid)
    last = np.full(thresh_num + 1, -1, dtype=np.int64)
    np.maximum.at(last, first_t, idx)
    return np.maximum.accumulate(last[:thresh_num])


def _greedy(best: np.ndarray, matched: np.ndarray, counted: np.ndarray):
    """The tool's greedy loop, vectorised: proposals, recall after each detection, and the
    detection that first found each counted face (-1 if none)."""
    hits_ignored = matched & ~counted[best]
    proposal = ~hits_ignored
    true_hit = matched & counted[best]
    first_hit = np.full(len(counted), -1, dtype=np.int64)
    hit_idx = np.flatnonzero(true_hit)
    faces, first = np.unique(best[hit_idx], return_index=True)
    first_hit[faces] = hit_idx[first]
    is_first = np.zeros(len(best), dtype=np.int64)
    is_first[hit_idx[first]] = 1
    return proposal, np.cumsum(is_first), first_hit


@dataclass
class WiderEvalState:
    """Mergeable evaluation state: integer PR tables and face counts per setting.

    Attributes:
        tables: setting -> (thresh_num, 2) int64 sums of (proposals, true positives) per
            threshold.
        count_face: setting -> number of faces that count (the recall denominator).
        num_images: ground-truth images seen.
        num_detections: detections on them.
        face_found_at: setting -> (F,) int16 per counted face: the first threshold index at
            which it is found (thresh_num = never), for breakdowns; filled only on request.
        face_ids: setting -> list of (image id, face index) aligned with ``face_found_at``.
    """

    flavour: str
    tables: dict[str, np.ndarray]
    count_face: dict[str, int]
    num_images: int = 0
    num_detections: int = 0
    face_found_at: dict[str, list[np.ndarray]] = field(default_factory=dict)
    face_ids: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)

    @classmethod
    def empty(cls, flavour: str, settings: tuple[str, ...] = SETTINGS) -> WiderEvalState:
        """The zero state."""
        return cls(
            flavour=check_flavour(flavour),
            tables={s: np.zeros((THRESH_NUM, 2), dtype=np.int64) for s in settings},
            count_face={s: 0 for s in settings},
        )

    def merge(self, other: WiderEvalState) -> WiderEvalState:
        """The state of both parts (integer sums: exact and order independent)."""
        if other.flavour != self.flavour or set(other.tables) != set(self.tables):
            raise ValueError("cannot merge states of different flavours or settings")
        found = {
            s: self.face_found_at.get(s, []) + other.face_found_at.get(s, [])
            for s in set(self.face_found_at) | set(other.face_found_at)
        }
        ids = {
            s: self.face_ids.get(s, []) + other.face_ids.get(s, [])
            for s in set(self.face_ids) | set(other.face_ids)
        }
        return WiderEvalState(
            flavour=self.flavour,
            tables={s: self.tables[s] + other.tables[s] for s in self.tables},
            count_face={s: self.count_face[s] + other.count_face[s] for s in self.count_face},
            num_images=self.num_images + other.num_images,
            num_detections=self.num_detections + other.num_detections,
            face_found_at=found,
            face_ids=ids,
        )

    def compute(self) -> WiderResult:
        """AP and PR curves per setting."""
        ap: dict[str, float] = {}
        pr: dict[str, dict[str, np.ndarray]] = {}
        for s, table in self.tables.items():
            with np.errstate(divide="ignore", invalid="ignore"):
                precision = table[:, 1] / table[:, 0]
                recall = table[:, 1] / np.float64(self.count_face[s])
            pr[s] = {"precision": precision, "recall": recall}
            ap[s] = voc_ap(recall, precision, self.flavour)
        return WiderResult(
            flavour=self.flavour,
            ap=ap,
            pr=pr,
            num_images=self.num_images,
            num_detections=self.num_detections,
        )


def evaluate_image(
    image: WiderImageGT,
    det: ImageDetections,
    bounds: ScoreBounds,
    settings: tuple[str, ...] = SETTINGS,
    track_faces: bool = False,
) -> WiderEvalState:
    """Pass 2 for one image: its PR tables per setting.

    Args:
        image: ground truth (boxes and 0-based keep lists).
        det: the image's detections in processing order (matlab: already sorted).
        bounds: the global score bounds from pass 1.
        settings: which settings to tabulate.
        track_faces: also record, per counted face, the threshold index at which it is found.
    """
    state = WiderEvalState.empty(bounds.flavour, settings)
    state.num_images = 1
    state.num_detections = len(det)
    for s in settings:
        state.count_face[s] = len(image.keep[s])
    num_gt = len(image.boxes_xywh)
    if num_gt == 0 or len(det) == 0:
        if track_faces:
            for s in settings:
                state.face_found_at[s] = [np.full(len(image.keep[s]), THRESH_NUM, np.int16)]
                state.face_ids[s] = [(image.image_id, image.keep[s])]
        return state
    scores = bounds.normalise(det.scores)
    if det.threshold_scores is not None:  # the port thresholds its 5th column, unnormalised
        scores = det.threshold_scores
    last = last_index_at_threshold(scores)
    has = last >= 0
    best, matched = best_matches(image.boxes_xywh, det.boxes_xywh, bounds.flavour)
    for s in settings:
        counted = np.zeros(num_gt, dtype=bool)
        counted[image.keep[s]] = True
        proposal, pred_recall, first_hit = _greedy(best, matched, counted)
        prop_cum = np.cumsum(proposal)
        safe = np.where(has, last, 0)
        table = state.tables[s]
        table[:, 0] = np.where(has, prop_cum[safe], 0)
        table[:, 1] = np.where(has, pred_recall[safe], 0)
        if track_faces:
            hit = first_hit[image.keep[s]]
            at = np.searchsorted(last, np.where(hit < 0, len(det), hit), side="left")
            state.face_found_at[s] = [np.where(hit < 0, THRESH_NUM, at).astype(np.int16)]
            state.face_ids[s] = [(image.image_id, image.keep[s])]
    return state


# ----------------------------------------------------------------------------------------
# AP


def voc_ap(recall: np.ndarray, precision: np.ndarray, flavour: str = "matlab") -> float:
    """All-point VOC AP as ``VOCap.m`` (matlab: NaN-ignoring running max, sum left to right)
    or the port's ``voc_ap`` (NaN-propagating ``np.maximum``, ``np.sum``).

    Args:
        recall: (T,) float64, non-decreasing.
        precision: (T,) float64, NaN where there is no proposal.
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    if flavour == "matlab":
        mpre = np.fmax.accumulate(mpre[::-1])[::-1]
        i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
        terms = (mrec[i] - mrec[i - 1]) * mpre[i]
        return float(np.cumsum(terms)[-1]) if len(terms) else 0.0
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


# ----------------------------------------------------------------------------------------
# Results and the top-level entry points


def _json_float(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


@dataclass(frozen=True)
class WiderResult:
    """AP per setting and the PR curves (thresholds 0.999 .. 0).

    Attributes:
        flavour: which tool's semantics produced it.
        ap: setting -> AP.
        pr: setting -> {"precision": (1000,) float64 (NaN = no proposal), "recall": (1000,)}.
        num_images: ground-truth images evaluated.
        num_detections: detections on them.
        messages: what the official tool would print (missing files, invalid formats).
        images_without_prediction: ground-truth images with no prediction file or run row
            (evaluated as images without detections: their faces are missed).
        warnings: inputs the tool accepts silently but that deserve a look (boxes of zero or
            negative width or height), one line per file.
    """

    flavour: str
    ap: dict[str, float]
    pr: dict[str, dict[str, np.ndarray]]
    num_images: int
    num_detections: int
    messages: tuple[str, ...] = ()
    images_without_prediction: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def num_images_without_prediction(self) -> int:
        """How many ground-truth images have no prediction file or run row."""
        return len(self.images_without_prediction)

    def to_json(self, with_pr: bool = True) -> dict[str, Any]:
        """The ``dsfd eval wider --json`` document (NaN written as null)."""
        doc: dict[str, Any] = {
            "flavour": self.flavour,
            "ap": {s: _json_float(v) for s, v in self.ap.items()},
        }
        if with_pr:
            doc["pr"] = {
                s: {k: [_json_float(x) for x in v.tolist()] for k, v in curves.items()}
                for s, curves in self.pr.items()
            }
        doc["num_images"] = self.num_images
        doc["num_detections"] = self.num_detections
        doc["messages"] = list(self.messages)
        doc["num_images_without_prediction"] = self.num_images_without_prediction
        doc["images_without_prediction"] = list(self.images_without_prediction)
        doc["warnings"] = list(self.warnings)
        return doc


def compute_bounds(pred: WiderPredictions) -> ScoreBounds:
    """Pass 1 over every image the tool normalises (pyport: including non-GT files)."""
    bounds = ScoreBounds.initial(pred.flavour)
    for det in pred.images.values():
        bounds = bounds.update(det.scores)
    if pred.flavour == "pyport":
        for det in pred.extra.values():
            bounds = bounds.update(det.scores)
    return bounds


def evaluate_predictions(
    pred: WiderPredictions, gt: WiderGroundTruth, track_faces: bool = False
) -> tuple[WiderResult, WiderEvalState]:
    """Both passes over predictions already read; returns the result and the merged state.

    The result carries the predictions' messages, warnings and missing images."""
    missing_settings = [s for s in SETTINGS if s not in gt.settings]
    if missing_settings:
        raise ValueError(f"{gt.source}: ground truth has no keep lists for {missing_settings}")
    bounds = compute_bounds(pred)
    state = WiderEvalState.empty(pred.flavour)
    for image in gt:
        det = pred.images.get(image.image_id, EMPTY)
        state = _merge_into(state, evaluate_image(image, det, bounds, track_faces=track_faces))
    result = replace(
        state.compute(),
        messages=tuple(pred.messages),
        images_without_prediction=tuple(pred.missing),
        warnings=tuple(pred.warnings),
    )
    return result, state


def _merge_into(state: WiderEvalState, part: WiderEvalState) -> WiderEvalState:
    """In-place variant of ``merge`` for the sequential loop (same integer sums)."""
    for s in state.tables:
        state.tables[s] += part.tables[s]
        state.count_face[s] += part.count_face[s]
    state.num_images += part.num_images
    state.num_detections += part.num_detections
    for s, found in part.face_found_at.items():
        state.face_found_at.setdefault(s, []).extend(found)
        state.face_ids.setdefault(s, []).extend(part.face_ids[s])
    return state


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like a run directory (``run.json``, ``detections/`` or
    ``images/``) rather than a folder of txt files; reading it then insists on a whole run
    (:class:`pipeline.rundir.RunDir`)."""
    p = Path(path)
    return RunDir.is_run_dir(p) or (p / "detections").is_dir() or (p / "images").is_dir()


def load_ground_truth(gt: str | os.PathLike[str] | WiderGroundTruth) -> WiderGroundTruth:
    """A :class:`WiderGroundTruth`, or load one from a folder with the four ``.mat`` files (or
    a dataset root holding ``eval_tools/ground_truth``)."""
    if isinstance(gt, WiderGroundTruth):
        return gt
    root = Path(gt)
    nested = root / "eval_tools" / "ground_truth"
    return load_wider_gt_dir(nested if nested.is_dir() else root)


def load_predictions(
    pred: str | os.PathLike[str], gt: WiderGroundTruth, flavour: str = "matlab"
) -> WiderPredictions:
    """Read a run directory or a txt folder as ``flavour``'s tool would."""
    if is_run_dir(pred):
        return read_run_predictions(pred, gt, flavour)
    return read_txt_predictions(pred, gt, flavour)


def evaluate_wider(
    pred: str | os.PathLike[str] | WiderPredictions,
    gt: str | os.PathLike[str] | WiderGroundTruth,
    flavour: str = "matlab",
) -> WiderResult:
    """Evaluate WIDER FACE val predictions.

    Args:
        pred: a run directory, a folder of official-format txt files, or predictions read with
            :func:`load_predictions`.
        gt: the ground truth or a folder holding the four official ``.mat`` files.
        flavour: ``matlab`` (official eval_tools) or ``pyport`` (wondervictor port).

    Raises:
        WiderPortCrash: flavour ``pyport`` on an input where the port crashes.
        ValueError: a ``nan``/``inf`` score or box coordinate in the predictions (file and
            line, or run table row and image).
    """
    check_flavour(flavour)
    gt = load_ground_truth(gt)
    if not isinstance(pred, WiderPredictions):
        pred = load_predictions(pred, gt, flavour)
    elif pred.flavour != flavour:
        raise ValueError(f"predictions were read for {pred.flavour!r}, not {flavour!r}")
    return evaluate_predictions(pred, gt)[0]


def result_from_json(doc: Mapping[str, Any]) -> WiderResult:
    """Rebuild a :class:`WiderResult` from ``to_json`` output (null -> NaN)."""
    pr = {
        s: {
            k: np.asarray([np.nan if x is None else x for x in v], dtype=np.float64)
            for k, v in curves.items()
        }
        for s, curves in doc.get("pr", {}).items()
    }
    ap = {s: float("nan") if v is None else float(v) for s, v in doc["ap"].items()}
    return WiderResult(
        flavour=str(doc.get("flavour", "matlab")),
        ap=ap,
        pr=pr,
        num_images=int(doc.get("num_images", 0)),
        num_detections=int(doc.get("num_detections", 0)),
        messages=tuple(doc.get("messages", ())),
        images_without_prediction=tuple(doc.get("images_without_prediction", ())),
        warnings=tuple(doc.get("warnings", ())),
    )
