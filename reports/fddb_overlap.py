"""Pixel-mask overlap of FDDB regions, drawn exactly as the official program draws them.

The official program fills every region with OpenCV on a zeroed 8-bit canvas of the image's
size and scores a pair by popcount(A AND D) / popcount(A OR D). The drawing arguments are
rounded as the C code rounds them (``../shared/specs/evaluation_protocols.md`` section B.3):

- ellipse ``ra rb angle cx cy``: centre ``(rint(float32(cx)), rint(float32(cy)))`` (half to
  even), axes ``(trunc(ra), trunc(rb))``, drawing angle ``180 - (pi - angle) * 180 / pi``
  degrees (OpenCV rounds it to a whole degree), filled;
- rectangle ``x y w h``: corners ``(rint(float32(x)), rint(float32(y)))`` and
  ``(rint(float32(x + w)), rint(float32(y + h)))``, both inclusive, filled.

Everything is clipped to the image. For speed each region is drawn once per image at its true
coordinates on one reused canvas, and only the small crop around it (a box that surely holds
all drawn pixels) is kept; the canvas is cleared again inside that box. Pixel counts are then
identical to those of whole-image masks, which ``overlap_matrix_reference`` computes the
straightforward way for tests and benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

RegionKind = Literal["rect", "ellipse"]
MASK_VALUE = 10  # the value the official program draws with (any nonzero value counts)
_COORD_LIMIT = 1 << 28  # drawing coordinates beyond this are refused (OpenCV's int range)


def _rint32(value: float) -> int:
    """Round like ``cvPointFrom32f(cvPoint2D32f(v))``: cast to float32, round half to even."""
    return int(np.rint(np.float32(value)))


def ellipse_draw_args(region: Sequence[float]) -> tuple[tuple[int, int], tuple[int, int], float]:
    """OpenCV arguments (center, axes, angle in degrees) for one ``ra rb angle cx cy`` ellipse.

    Raises:
        ValueError: negative axes or coordinates out of OpenCV's range.
    """
    ra, rb, theta, cx, cy = (float(v) for v in region[:5])
    center = (_rint32(cx), _rint32(cy))
    axes = (int(ra), int(rb))  # C cast: truncation toward zero
    if axes[0] < 0 or axes[1] < 0:
        raise ValueError(f"ellipse axes must be >= 0 pixels, got ra={ra!r} rb={rb!r}")
    if max(abs(center[0]), abs(center[1]), axes[0], axes[1]) > _COORD_LIMIT:
        raise ValueError(f"ellipse out of drawable range: {list(region)!r}")
    angle = 180 - (math.pi - theta) * 180 / math.pi  # same double operations as the C code
    return center, axes, angle


def rect_draw_args(region: Sequence[float]) -> tuple[tuple[int, int], tuple[int, int]]:
    """OpenCV corner arguments for one ``x y w h`` rectangle (both corners inclusive)."""
    x, y, w, h = (float(v) for v in region[:4])
    p1 = (_rint32(x), _rint32(y))
    p2 = (_rint32(x + w), _rint32(y + h))
    if max(abs(p1[0]), abs(p1[1]), abs(p2[0]), abs(p2[1])) > _COORD_LIMIT:
        raise ValueError(f"rectangle out of drawable range: {list(region)!r}")
    return p1, p2


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


def _bounds(region: Sequence[float], kind: RegionKind) -> tuple[int, int, int, int]:
    """A box ``x0, y0, x1, y1`` (x1/y1 exclusive) that holds every pixel the region fills."""
    if kind == "ellipse":
        (cx, cy), (a, b), _ = ellipse_draw_args(region)
        r = max(a, b) + 2  # polygon vertices lie within the larger axis; 1 px rounding slack
        return cx - r, cy - r, cx + r + 1, cy + r + 1
    (x1, y1), (x2, y2) = rect_draw_args(region)
    return min(x1, x2) - 1, min(y1, y2) - 1, max(x1, x2) + 2, max(y1, y2) + 2


@dataclass(frozen=True, eq=False)
class RegionMask:
    """The pixels of one drawn region, clipped to the image, as a crop.

    Attributes:
        x0: column of the crop's left edge in the image (pixels).
        y0: row of the crop's top edge.
        mask: bool array (h, w), True where the region covers the pixel.
        count: number of covered pixels (popcount of the whole-image mask).
    """

    x0: int
    y0: int
    mask: np.ndarray
    count: int


_EMPTY = np.zeros((0, 0), dtype=bool)


class MaskPainter:
    """Draws regions of one image and returns their cropped masks, reusing one canvas.

    Args:
        width: image width in pixels.
        height: image height in pixels.
    """

    def __init__(self, width: int, height: int):
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        self.width, self.height = int(width), int(height)
        self.canvas = np.zeros((self.height, self.width), dtype=np.uint8)

    def mask(self, region: Sequence[float], kind: RegionKind) -> RegionMask:
        """Draw ``region`` and return its clipped mask (the canvas is left clear)."""
        bx0, by0, bx1, by1 = _bounds(region, kind)
        x0, y0 = max(bx0, 0), max(by0, 0)
        x1, y1 = min(bx1, self.width), min(by1, self.height)
        if x0 >= x1 or y0 >= y1:
            return RegionMask(0, 0, _EMPTY, 0)  # entirely outside the image
        draw_region(self.canvas, region, kind)
        window = self.canvas[y0:y1, x0:x1]
        crop = window != 0
        window[...] = 0
        return RegionMask(x0, y0, crop, int(np.count_nonzero(crop)))


def mask_overlap(a: RegionMask, d: RegionMask) -> float:
    """popcount(A AND D) / popcount(A OR D) as a double; NaN when both are empty (0/0)."""
    inter = 0
    if a.count and d.count:
        x0, y0 = max(a.x0, d.x0), max(a.y0, d.y0)
        x1 = min(a.x0 + a.mask.shape[1], d.x0 + d.mask.shape[1])
        y1 = min(a.y0 + a.mask.shape[0], d.y0 + d.mask.shape[0])
        if x0 < x1 and y0 < y1:
            sub_a = a.mask[y0 - a.y0 : y1 - a.y0, x0 - a.x0 : x1 - a.x0]
            sub_d = d.mask[y0 - d.y0 : y1 - d.y0, x0 - d.x0 : x1 - d.x0]
            inter = int(np.count_nonzero(sub_a & sub_d))
    union = a.count + d.count - inter
    return inter / union if union else math.nan


def overlap_matrix(
    annotations: np.ndarray,
    detections: np.ndarray,
    det_kind: RegionKind,
    width: int,
    height: int,
) -> np.ndarray:
    """Pairwise pixel-mask overlaps of one image.

    Args:
        annotations: float (A, 5) ellipses ``ra rb angle cx cy``.
        detections: float (D, 4) rectangles ``x y w h`` (det_kind "rect") or (D, 5) ellipses.
        det_kind: "rect" or "ellipse".
        width: image width in pixels.
        height: image height in pixels.

    Returns:
        float64 (A, D) overlap ratios in [0, 1] (NaN where both masks are empty).
    """
    painter = MaskPainter(width, height)
    ann_masks = [painter.mask(row, "ellipse") for row in np.asarray(annotations).tolist()]
    det_masks = [painter.mask(row, det_kind) for row in np.asarray(detections).tolist()]
    out = np.zeros((len(ann_masks), len(det_masks)), dtype=np.float64)
    for i, a in enumerate(ann_masks):
        for j, d in enumerate(det_masks):
            out[i, j] = mask_overlap(a, d)
    return out


def overlap_matrix_reference(
    annotations: np.ndarray,
    detections: np.ndarray,
    det_kind: RegionKind,
    width: int,
    height: int,
) -> np.ndarray:
    """The same matrix computed the straightforward way: one whole-image mask per pair."""
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
