"""Box maths on numpy arrays: the one home of format conversions, clipping and IoU outside
torch (the torch versions live in ``dsfd/boxes.py``). No Ray, no torch.

The project's internal format is ``xyxy``: float pixels ``x1 y1 x2 y2`` with x2/y2 exclusive
(``w = x2 - x1``). Other formats are named where they appear: ``xywh`` (left, top, width,
height: WIDER FACE annotations and submissions, FDDB rectangles, COCO ``bbox``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def _as_boxes(boxes: npt.ArrayLike, dtype: npt.DTypeLike | None = None) -> np.ndarray:
    arr = np.asarray(boxes, dtype=dtype)
    if arr.size == 0:
        return np.zeros((0, 4), arr.dtype)
    if arr.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {arr.shape}")
    return arr.reshape(-1, 4)


def xyxy_to_xywh(boxes_xyxy: npt.ArrayLike, dtype: npt.DTypeLike = np.float64) -> np.ndarray:
    """(N, 4) ``x1 y1 x2 y2`` -> (N, 4) ``x y w h`` (``w = x2 - x1``), computed in ``dtype``
    (float64 by default: exact for float32 inputs)."""
    b = _as_boxes(boxes_xyxy, dtype)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def xywh_to_xyxy(boxes_xywh: npt.ArrayLike, dtype: npt.DTypeLike = np.float64) -> np.ndarray:
    """(N, 4) ``x y w h`` -> (N, 4) ``x1 y1 x2 y2`` (``x2 = x + w``), computed in ``dtype``."""
    b = _as_boxes(boxes_xywh, dtype)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def clip_boxes_xyxy(
    boxes_xyxy: npt.ArrayLike, widths: npt.ArrayLike, heights: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes to their image and tell which keep an area.

    Args:
        boxes_xyxy: (N, 4) float ``x1 y1 x2 y2`` pixels, x2/y2 exclusive.
        widths: (N,) or scalar width in pixels of each box's image.
        heights: (N,) or scalar height in pixels of each box's image.

    Returns:
        ``(clipped, keep)``: (N, 4) boxes of the input dtype with x in ``[0, width]`` and y in
        ``[0, height]``, and (N,) bool, True where ``x2 > x1`` and ``y2 > y1`` after clipping
        (False for a box wholly outside its image, or not finite).
    """
    boxes = _as_boxes(boxes_xyxy)
    w = np.broadcast_to(np.asarray(widths, dtype=boxes.dtype), (len(boxes),))
    h = np.broadcast_to(np.asarray(heights, dtype=boxes.dtype), (len(boxes),))
    zero = np.zeros((), boxes.dtype)
    clipped = np.stack(
        [np.clip(boxes[:, 0], zero, w), np.clip(boxes[:, 1], zero, h),
         np.clip(boxes[:, 2], zero, w), np.clip(boxes[:, 3], zero, h)], axis=1)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped, keep


def box_area(boxes_xyxy: npt.ArrayLike) -> np.ndarray:
    """(N,) area of (N, 4) ``xyxy`` boxes (0 for degenerate ones)."""
    b = _as_boxes(boxes_xyxy, np.float64)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def box_iou(a_xyxy: npt.ArrayLike, b_xyxy: npt.ArrayLike) -> np.ndarray:
    """(N, M) IoU of (N, 4) and (M, 4) ``xyxy`` boxes (x2 exclusive; 0 where the union is 0)."""
    a, b = _as_boxes(a_xyxy, np.float64), _as_boxes(b_xyxy, np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
