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
identical to those of whole-image masks, which the test oracle
``tests/oracles/fddb_overlap_reference.py`` computes the straightforward way.
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


def _check_range(values: np.ndarray, what: str) -> None:
    bad = ~(np.abs(values) <= _COORD_LIMIT)
    if bad.any():
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValueError(f"{what} {row} is out of OpenCV's drawable range: {values[row].tolist()}")


def rect_draw_args_array(regions: np.ndarray) -> np.ndarray:
    """int64 (K, 4) corners ``x1 y1 x2 y2`` (inclusive) for float (K, 4) ``x y w h``.

    Each corner is ``rint(float32(v))`` with ``v`` in double (``x + w`` added before the cast),
    as ``cvPointFrom32f(cvPoint2D32f(...))`` does; rint rounds half to even.
    """
    r = np.asarray(regions, dtype=np.float64).reshape(-1, 4)
    corners = np.stack([r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3]], axis=1)
    _check_range(corners, "rectangle")
    return np.rint(corners.astype(np.float32)).astype(np.int64)


def ellipse_draw_args_array(regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV arguments for float (K, 5) ellipses ``ra rb angle cx cy``.

    Returns:
        int64 (K, 4) ``cx cy a b``: centre ``rint(float32(c))``, axes truncated toward zero;
        float64 (K,) drawing angles in degrees, ``180 - (pi - angle) * 180 / pi`` evaluated in
        the C program's order (OpenCV rounds them to whole degrees).

    Raises:
        ValueError: negative axes or values out of OpenCV's range.
    """
    r = np.asarray(regions, dtype=np.float64).reshape(-1, 5)
    _check_range(r[:, [0, 1, 3, 4]], "ellipse")
    ints = np.empty((r.shape[0], 4), dtype=np.int64)
    ints[:, :2] = np.rint(r[:, 3:5].astype(np.float32))
    ints[:, 2:] = r[:, 0:2].astype(np.int64)  # C cast: truncation toward zero
    if (ints[:, 2:] < 0).any():
        row = int(np.flatnonzero((ints[:, 2:] < 0).any(axis=1))[0])
        raise ValueError(f"ellipse axes must be >= 0 pixels, got {r[row].tolist()}")
    angles = 180 - (math.pi - r[:, 2]) * 180 / math.pi
    return ints, angles


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

    def _crop(self, x0: int, y0: int, x1: int, y1: int, draw) -> RegionMask:
        """Clip the box to the image, draw, keep the crop and clear it again."""
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.width), min(y1, self.height)
        if x0 >= x1 or y0 >= y1:
            return RegionMask(0, 0, _EMPTY, 0)  # entirely outside the image
        draw(self.canvas)
        window = self.canvas[y0:y1, x0:x1]
        crop = window != 0
        window[...] = 0
        return RegionMask(x0, y0, crop, int(np.count_nonzero(crop)))

    def rect_mask(self, x1: int, y1: int, x2: int, y2: int) -> RegionMask:
        """Mask of the rectangle with inclusive integer corners (x1, y1), (x2, y2)."""
        return self._crop(
            min(x1, x2) - 1,
            min(y1, y2) - 1,
            max(x1, x2) + 2,
            max(y1, y2) + 2,
            lambda c: cv2.rectangle(c, (x1, y1), (x2, y2), MASK_VALUE, -1),
        )

    def ellipse_mask(self, cx: int, cy: int, a: int, b: int, angle: float) -> RegionMask:
        """Mask of the filled ellipse; its pixels lie within max(a, b) + 2 of the centre."""
        r = max(a, b) + 2  # polygon vertices lie within the larger axis; rounding slack
        return self._crop(
            cx - r,
            cy - r,
            cx + r + 1,
            cy + r + 1,
            lambda c: cv2.ellipse(c, (cx, cy), (a, b), angle, 0, 360, MASK_VALUE, -1),
        )

    def masks(self, regions: np.ndarray, kind: RegionKind) -> list[RegionMask]:
        """Masks of float (K, 4) rectangles or (K, 5) ellipses, in order."""
        if kind == "rect":
            corners = rect_draw_args_array(regions).tolist()
            return [self.rect_mask(c[0], c[1], c[2], c[3]) for c in corners]
        if kind == "ellipse":
            ints, angles = ellipse_draw_args_array(regions)
            return [
                self.ellipse_mask(c[0], c[1], c[2], c[3], angle)
                for c, angle in zip(ints.tolist(), angles.tolist(), strict=True)
            ]
        raise ValueError(f"region kind must be 'rect' or 'ellipse', got {kind!r}")

    def mask(self, region: Sequence[float], kind: RegionKind) -> RegionMask:
        """Mask of one region (the canvas is left clear)."""
        return self.masks(np.asarray(region, dtype=np.float64)[None], kind)[0]


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
    ann_masks = painter.masks(np.asarray(annotations, dtype=np.float64).reshape(-1, 5), "ellipse")
    det_masks = painter.masks(np.asarray(detections, dtype=np.float64), det_kind)
    out = np.zeros((len(ann_masks), len(det_masks)), dtype=np.float64)
    for i, a in enumerate(ann_masks):
        for j, d in enumerate(det_masks):
            out[i, j] = mask_overlap(a, d)
    return out
