"""The mergeable WIDER FACE evaluation state (numpy only), torchmetrics style::

    pass 1   ScoreBounds.update(scores) per image  -> merge (min/max, exact)
    pass 2   evaluate_image(gt, dets, bounds)      -> WiderEvalState (integer PR tables and
             face counts per setting)              -> merge (sums of integers, exact)
    compute  WiderEvalState.compute()              -> WiderResult (AP and PR curves)

The normalisation needs the global minimum and maximum score before any table can be built,
hence two passes; both passes are per image and their partial results merge exactly, so shards
can be evaluated anywhere and combined. What differs between the tools (seeds, precision,
overlaps, AP) is asked of the flavour (:mod:`reports.wider.flavours`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.datasets.wider import SETTINGS, WiderImageGT
from reports.wider import flavours
from reports.wider.flavours import Flavour
from reports.wider.predictions import ImageDetections
from reports.wider.result import WiderResult

__all__ = [
    "IOU_THRESH",
    "THRESH_NUM",
    "ScoreBounds",
    "WiderEvalState",
    "best_matches",
    "evaluate_image",
    "last_index_at_threshold",
    "thresholds",
]

THRESH_NUM = 1000
IOU_THRESH = 0.5


def thresholds(thresh_num: int = THRESH_NUM) -> np.ndarray:
    """(thresh_num,) float64 score thresholds ``1 - t/thresh_num`` for t = 1..thresh_num
    (0.999, 0.998, ..., 0), computed exactly as the tools do."""
    return 1.0 - np.arange(1, thresh_num + 1, dtype=np.float64) / thresh_num


# ----------------------------------------------------------------------------------------
# Pass 1: score normalisation


@dataclass(frozen=True)
class ScoreBounds:
    """Running min/max of the raw scores (mergeable), seeded, widened and applied as the
    flavour's tool does it (matlab: float32 values seeded with ``realmax('single')`` /
    ``realmin('single')``; pyport: float64 values seeded with 1 / 0)."""

    flavour: Flavour
    lo: float
    hi: float

    @classmethod
    def initial(cls, flavour: str | Flavour) -> ScoreBounds:
        """The seeds of ``flavour``'s tool (a flavour or its name)."""
        fl = flavours.flavour(flavour)
        return cls(fl, *fl.initial_bounds())

    def update(self, scores: np.ndarray) -> ScoreBounds:
        """Bounds after seeing ``scores`` ((n,) float64 raw scores of one image)."""
        return ScoreBounds(self.flavour, *self.flavour.widen_bounds(self.lo, self.hi, scores))

    def merge(self, other: ScoreBounds) -> ScoreBounds:
        """Bounds over both parts (exact)."""
        if other.flavour != self.flavour:
            raise ValueError(f"cannot merge {self.flavour} bounds with {other.flavour} bounds")
        return ScoreBounds(self.flavour, min(self.lo, other.lo), max(self.hi, other.hi))

    def normalise(self, scores: np.ndarray) -> np.ndarray:
        """(n,) float64 normalised scores ``(s - lo) / (hi - lo)`` (matlab: in float32)."""
        return self.flavour.normalise(scores, self.lo, self.hi)


# ----------------------------------------------------------------------------------------
# Pass 2: per-image matching and PR tables


def best_matches(
    gt_xywh: np.ndarray, det_xywh: np.ndarray, flavour: Flavour
) -> tuple[np.ndarray, np.ndarray]:
    """For each detection, the first ground truth of maximal overlap (``flavour``'s overlaps)
    and whether that overlap passes the IoU test (``>= 0.5``). Returns ((n,) int64, (n,) bool).
    """
    ov = flavour.overlaps(gt_xywh, det_xywh)
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


def _greedy(
    best: np.ndarray, matched: np.ndarray, counted: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        flavour: whose semantics built the tables.
        tables: setting -> (thresh_num, 2) int64 sums of (proposals, true positives) per
            threshold.
        count_face: setting -> number of faces that count (the recall denominator).
        num_images: ground-truth images seen.
        num_detections: detections on them.
        face_found_at: setting -> (F,) int16 per counted face: the first threshold index at
            which it is found (thresh_num = never), for breakdowns; filled only on request.
        face_ids: setting -> list of (image id, face index) aligned with ``face_found_at``.
    """

    flavour: Flavour
    tables: dict[str, np.ndarray]
    count_face: dict[str, int]
    num_images: int = 0
    num_detections: int = 0
    face_found_at: dict[str, list[np.ndarray]] = field(default_factory=dict)
    face_ids: dict[str, list[tuple[str, np.ndarray]]] = field(default_factory=dict)

    @classmethod
    def empty(
        cls, flavour: str | Flavour, settings: tuple[str, ...] = SETTINGS
    ) -> WiderEvalState:
        """The zero state of ``flavour`` (a flavour or its name)."""
        return cls(
            flavour=flavours.flavour(flavour),
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

    def merge_in_place(self, part: WiderEvalState) -> WiderEvalState:
        """``merge`` into this state, in place, for a sequential loop (the same integer sums);
        returns this state."""
        for s in self.tables:
            self.tables[s] += part.tables[s]
            self.count_face[s] += part.count_face[s]
        self.num_images += part.num_images
        self.num_detections += part.num_detections
        for s, found in part.face_found_at.items():
            self.face_found_at.setdefault(s, []).extend(found)
            self.face_ids.setdefault(s, []).extend(part.face_ids[s])
        return self

    def compute(self) -> WiderResult:
        """AP and PR curves per setting."""
        ap: dict[str, float] = {}
        pr: dict[str, dict[str, np.ndarray]] = {}
        for s, table in self.tables.items():
            with np.errstate(divide="ignore", invalid="ignore"):
                precision = table[:, 1] / table[:, 0]
                recall = table[:, 1] / np.float64(self.count_face[s])
            pr[s] = {"precision": precision, "recall": recall}
            ap[s] = self.flavour.voc_ap(recall, precision)
        return WiderResult(
            flavour=self.flavour.name,
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
