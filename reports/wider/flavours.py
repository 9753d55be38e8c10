"""The two WIDER FACE evaluators this package reproduces, one frozen object each (numpy only).

A :class:`Flavour` holds what differs between the tools, so the evaluator asks the flavour
instead of testing its name (see ``docs/evaluation_wider.md``):

* :data:`MATLAB` (``"matlab"``, the default): the official ``eval_tools`` (2017). Scores
  normalised once over the whole set in **single precision** with ``realmin``/``realmax``
  single seeds; detections sorted per image by score (stable, descending); ``boxoverlap`` in
  MATLAB's **int32** arithmetic (the ground truth is int32: detection corners rounded half away
  from zero, integer areas, an overlap that is a rounded integer quotient), the **first** ground
  truth with the largest overlap taken; AP = ``VOCap`` summed left to right, NaN ignored by
  ``max``. A ground-truth image without a prediction file has no detections.
* :data:`PYPORT` (``"pyport"``): the wondervictor Python port. File order, double normalisation
  with seeds 0/1 over every file it reads (ground-truth image or not), float IoU with the +1
  convention, ``np.argmax``, ``np.sum``. It crashes where the port crashes
  (:class:`WiderPortCrash`), for example on a ground-truth image without a prediction file.

How each tool parses its txt files is in :mod:`reports.wider.predictions`. Public functions
take a flavour or its name; :func:`flavour` turns a name into the object.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from pipeline.boxes import xywh_to_xyxy

__all__ = [
    "FLAVOURS",
    "FLAVOUR_NAMES",
    "MATLAB",
    "PYPORT",
    "Flavour",
    "MatlabFlavour",
    "PyportFlavour",
    "WiderPortCrash",
    "flavour",
    "matlab_overlaps",
    "pyport_overlaps",
    "round_half_away",
]

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_F32 = np.float32


class WiderPortCrash(ValueError):
    """The wondervictor port would crash on this input; it produces no number."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"flavour 'pyport': the wondervictor port crashes here ({what}) and reports no AP; "
            "use flavour='matlab' (the official eval_tools), which tolerates this input"
        )


@dataclass(frozen=True)
class Flavour(ABC):
    """One WIDER FACE evaluator's semantics.

    Attributes:
        name: ``matlab`` or ``pyport``: the ``--flavour`` value and the result's ``flavour``.
        tool: the program reproduced, in words.
        sorts_detections: an image's detections are processed by score, descending, with a
            stable sort (MATLAB's ``sort``); otherwise in file (table row) order.
        reads_every_file: scores are normalised over every prediction file (run row) found,
            ground-truth image or not; otherwise over the ground-truth images only.
        crashes_on_missing_image: a ground-truth image without predictions crashes the tool
            (:class:`WiderPortCrash`); otherwise its faces count as missed.
    """

    name: str
    tool: str
    sorts_detections: bool
    reads_every_file: bool
    crashes_on_missing_image: bool

    def __str__(self) -> str:
        return self.name

    @abstractmethod
    def initial_bounds(self) -> tuple[float, float]:
        """The tool's seeds ``(lo, hi)`` of the running score minimum and maximum."""

    @abstractmethod
    def widen_bounds(self, lo: float, hi: float, scores: np.ndarray) -> tuple[float, float]:
        """``(lo, hi)`` after seeing ``scores`` ((n,) float64 raw scores of one image)."""

    @abstractmethod
    def normalise(self, scores: np.ndarray, lo: float, hi: float) -> np.ndarray:
        """(n,) float64 normalised scores ``(s - lo) / (hi - lo)``, in the tool's precision."""

    @abstractmethod
    def overlaps(self, gt_xywh: np.ndarray, det_xywh: np.ndarray) -> np.ndarray:
        """(n, G) overlaps of n detections ((n, 4) float64 ``x y w h``) with G ground-truth
        boxes ((G, 4) int32 ``x y w h``), as the tool computes them."""

    @abstractmethod
    def voc_ap(self, recall: np.ndarray, precision: np.ndarray) -> float:
        """All-point VOC AP of a PR curve ((T,) float64 recall, non-decreasing; (T,) float64
        precision, NaN where there is no proposal)."""


@dataclass(frozen=True)
class MatlabFlavour(Flavour):
    """The official ``eval_tools`` (see the module docstring)."""

    def initial_bounds(self) -> tuple[float, float]:
        """``realmax('single')`` and ``realmin('single')``."""
        f32 = np.finfo(np.float32)
        return float(f32.max), float(f32.tiny)

    def widen_bounds(self, lo: float, hi: float, scores: np.ndarray) -> tuple[float, float]:
        """float32 minimum and maximum; NaN ignored, as MATLAB's ``min``/``max`` ignore it."""
        scores = scores[~np.isnan(scores)]
        if len(scores) == 0:
            return lo, hi
        s = scores.astype(_F32)
        return min(lo, float(s.min())), max(hi, float(s.max()))

    def normalise(self, scores: np.ndarray, lo: float, hi: float) -> np.ndarray:
        """Computed in float32, returned as float64."""
        with np.errstate(divide="ignore", invalid="ignore"):
            lo32, hi32 = _F32(lo), _F32(hi)
            return ((scores.astype(_F32) - lo32) / (hi32 - lo32)).astype(np.float64)

    def overlaps(self, gt_xywh: np.ndarray, det_xywh: np.ndarray) -> np.ndarray:
        """:func:`matlab_overlaps` ((n, G) int64)."""
        return matlab_overlaps(gt_xywh, det_xywh)

    def voc_ap(self, recall: np.ndarray, precision: np.ndarray) -> float:
        """``VOCap.m``: NaN-ignoring running maximum, terms summed left to right."""
        mrec = np.concatenate(([0.0], recall, [1.0]))
        mpre = np.concatenate(([0.0], precision, [0.0]))
        mpre = np.fmax.accumulate(mpre[::-1])[::-1]
        i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
        terms = (mrec[i] - mrec[i - 1]) * mpre[i]
        return float(np.cumsum(terms)[-1]) if len(terms) else 0.0


@dataclass(frozen=True)
class PyportFlavour(Flavour):
    """The wondervictor Python port (see the module docstring)."""

    def initial_bounds(self) -> tuple[float, float]:
        """1 and 0."""
        return 1.0, 0.0

    def widen_bounds(self, lo: float, hi: float, scores: np.ndarray) -> tuple[float, float]:
        """``max(_max, max_score)`` / ``min(_min, min_score)`` with Python's max/min."""
        if len(scores) == 0:
            return lo, hi
        return min(float(scores.min()), lo), max(float(scores.max()), hi)

    def normalise(self, scores: np.ndarray, lo: float, hi: float) -> np.ndarray:
        """Computed in float64."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return (scores - lo) / (hi - lo)

    def overlaps(self, gt_xywh: np.ndarray, det_xywh: np.ndarray) -> np.ndarray:
        """:func:`pyport_overlaps` ((n, G) float64)."""
        return pyport_overlaps(gt_xywh, det_xywh)

    def voc_ap(self, recall: np.ndarray, precision: np.ndarray) -> float:
        """The port's ``voc_ap``: NaN-propagating ``np.maximum``, ``np.sum``."""
        mrec = np.concatenate(([0.0], recall, [1.0]))
        mpre = np.concatenate(([0.0], precision, [0.0]))
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        i = np.where(mrec[1:] != mrec[:-1])[0]
        return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


MATLAB = MatlabFlavour(
    name="matlab",
    tool="the official WIDER FACE eval_tools (MATLAB, 2017)",
    sorts_detections=True,
    reads_every_file=False,
    crashes_on_missing_image=False,
)
PYPORT = PyportFlavour(
    name="pyport",
    tool="the wondervictor WiderFace-Evaluation Python port",
    sorts_detections=False,
    reads_every_file=True,
    crashes_on_missing_image=True,
)
FLAVOURS: tuple[Flavour, ...] = (MATLAB, PYPORT)
FLAVOUR_NAMES: tuple[str, ...] = tuple(f.name for f in FLAVOURS)


def flavour(name: str | Flavour) -> Flavour:
    """The flavour called ``name`` (a :class:`Flavour` is returned as it is).

    Raises:
        ValueError: ``name`` is neither ``matlab`` nor ``pyport``.
    """
    if isinstance(name, Flavour):
        return name
    for f in FLAVOURS:
        if f.name == name:
            return f
    raise ValueError(f"flavour must be one of {FLAVOUR_NAMES}, got {name!r}")


# ----------------------------------------------------------------------------------------
# The tools' overlaps


def round_half_away(values: np.ndarray) -> np.ndarray:
    """MATLAB's ``round`` (nearest, halves away from zero), float64 in and out."""
    a = np.abs(values)
    f = np.floor(a)
    return np.copysign(f + (a - f >= 0.5), values)


def _to_int32(values: np.ndarray) -> np.ndarray:
    """MATLAB's conversion of doubles to int32: round, saturate, NaN -> 0 (as int64)."""
    r = np.nan_to_num(round_half_away(values), nan=0.0, posinf=_INT32_MAX, neginf=_INT32_MIN)
    return np.clip(r, _INT32_MIN, _INT32_MAX).astype(np.int64)


def matlab_overlaps(gt_xywh: np.ndarray, det_xywh: np.ndarray) -> np.ndarray:
    """``boxoverlap(gt, det)`` of the official tool with int32 ground truth, vectorised.

    Args:
        gt_xywh: (G, 4) int32 ground-truth boxes.
        det_xywh: (n, 4) float64 detections.

    Returns:
        (n, G) int64 overlaps: integers (0 or 1 for ordinary boxes; degenerate detections can
        give other values, e.g. intmax for a zero denominator), as MATLAB computes them.
    """
    g = xywh_to_xyxy(gt_xywh, dtype=np.int64)  # (G, 4) integer corners x + w, y + h
    p = xywh_to_xyxy(det_xywh, dtype=np.float64)  # (n, 4)
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
    q = xywh_to_xyxy(gt_xywh, dtype=np.float64)  # (G, 4)
    b = xywh_to_xyxy(det_xywh, dtype=np.float64)  # (n, 4)
    box_area = (q[:, 2] - q[:, 0] + 1) * (q[:, 3] - q[:, 1] + 1)
    iw = np.minimum(b[:, None, 2], q[None, :, 2]) - np.maximum(b[:, None, 0], q[None, :, 0]) + 1
    ih = np.minimum(b[:, None, 3], q[None, :, 3]) - np.maximum(b[:, None, 1], q[None, :, 1]) + 1
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    valid = (iw > 0) & (ih > 0)
    ua = area_b[:, None] + box_area[None, :] - iw * ih
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(valid, iw * ih / np.where(valid, ua, 1.0), 0.0)
