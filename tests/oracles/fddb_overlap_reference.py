"""FDDB pixel-mask overlaps computed the straightforward way: one whole-image mask per region.

The oracle of the cropped masks of ``reports.fddb.overlap`` (``tests/reports/test_fddb_eval.py``)
and the baseline of ``benchmarks/bench_fddb_eval.py``. Regions are drawn with the same rounded
OpenCV arguments as the official program (``reports.fddb.overlap.rect_draw_args_array`` and
``ellipse_draw_args_array``), each on its own zeroed canvas of the image's size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from reports.fddb.overlap import (
    MASK_VALUE,
    RegionKind,
    ellipse_draw_args_array,
    rect_draw_args_array,
)


def ellipse_draw_args(region: Sequence[float]) -> tuple[tuple[int, int], tuple[int, int], float]:
    """OpenCV arguments (center, axes, angle in degrees) for one ``ra rb angle cx cy`` ellipse."""
    ints, angles = ellipse_draw_args_array(np.asarray(region[:5], dtype=np.float64))
    cx, cy, a, b = ints[0].tolist()
    return (cx, cy), (a, b), float(angles[0])


def rect_draw_args(region: Sequence[float]) -> tuple[tuple[int, int], tuple[int, int]]:
    """OpenCV corner arguments for one ``x y w h`` rectangle (both corners inclusive)."""
    x1, y1, x2, y2 = rect_draw_args_array(np.asarray(region[:4], dtype=np.float64))[0].tolist()
    return (x1, y1), (x2, y2)


def draw_region(canvas: np.ndarray, region: Sequence[float], kind: RegionKind) -> None:
    """Fill one region on ``canvas`` (uint8 (H, W)) with ``MASK_VALUE``, as the C code does."""
    if kind == "ellipse":
        center, axes, angle = ellipse_draw_args(region)
        cv2.ellipse(canvas, center, axes, angle, 0, 360, MASK_VALUE, -1)
    elif kind == "rect":
        p1, p2 = rect_draw_args(region)
        cv2.rectangle(canvas, p1, p2, MASK_VALUE, -1)
    else:
        raise ValueError(f"region kind must be 'rect' or 'ellipse', got {kind!r}")


def overlap_matrix_reference(
    annotations: np.ndarray,
    detections: np.ndarray,
    det_kind: RegionKind,
    width: int,
    height: int,
) -> np.ndarray:
    """The matrix of ``reports.fddb.overlap.overlap_matrix``, one whole-image mask per region.

    Args:
        annotations: float (A, 5) ellipses ``ra rb angle cx cy``.
        detections: float (D, 4) rectangles ``x y w h`` (det_kind "rect") or (D, 5) ellipses.
        det_kind: "rect" or "ellipse".
        width: image width in pixels.
        height: image height in pixels.

    Returns:
        float64 (A, D) popcount(A AND D) / popcount(A OR D) (NaN where both masks are empty).
    """
    ann = np.asarray(annotations).tolist()
    det = np.asarray(detections).tolist()
    out = np.zeros((len(ann), len(det)), dtype=np.float64)
    for i, a in enumerate(ann):
        mask_a = np.zeros((height, width), dtype=np.uint8)
        draw_region(mask_a, a, "ellipse")
        for j, d in enumerate(det):
            mask_d = np.zeros((height, width), dtype=np.uint8)
            draw_region(mask_d, d, det_kind)
            inter = int(np.count_nonzero((mask_a != 0) & (mask_d != 0)))
            union = int(np.count_nonzero((mask_a != 0) | (mask_d != 0)))
            out[i, j] = inter / union if union else math.nan
    return out
