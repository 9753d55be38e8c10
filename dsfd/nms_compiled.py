"""The greedy clustering of :mod:`dsfd.nms` as a compiled CPU loop (numba), with a sweep window.

The release's loop takes the best remaining box and computes its IoU against every remaining
box. Here each leader looks only at the boxes that can reach the threshold with it, found in
an ``x1``-sorted order: with ``t`` the threshold and ``w`` the sides (``+1`` for the legacy
convention), ``IoU(a, b) <= inter_w / w_a`` gives ``x1_b <= x1_a + (1 - t) w_a`` when
``x1_a <= x1_b`` (``y1`` likewise), and ``IoU <= min(w) / max(w)`` bounds a partner's side by
``w_a / t``, so the leader scans ``x1`` from ``x1_a - (1 - t) w_a / t`` to
``x1_a + (1 - t) w_a`` (small margins cover float rounding of the exact bounds). The IoU of a
candidate pair is computed with the floating-point operations of :func:`dsfd.boxes.box_iou` /
:func:`dsfd.boxes.box_iou_plus_one` in the boxes' dtype, so leaders and groups are exactly
those of the one-box-at-a-time reference (``tests/dsfd/test_nms.py``). The worst case (every
box in every window) is the release's loop, compiled.

Only finite boxes and a threshold ``> 0`` (the bounds need both); :mod:`dsfd.nms` routes other
inputs to its numpy loop. Compiled once per process (cached on disk where numba can write).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor

_MARGIN = 1e-4  # relative slack of the window bounds (float rounding of the exact bounds)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _overlap(b: np.ndarray, i: int, j: int, consts: np.ndarray, plus_one: bool,
             inclusive: bool) -> bool:  # pragma: no cover - compiled
    offset, zero, thresh, tiny = consts[0], consts[1], consts[2], consts[3]
    w = min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]) + offset
    h = min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]) + offset
    inter = max(w, zero) * max(h, zero)
    if plus_one:
        area_i = (b[i, 2] - b[i, 0] + offset) * (b[i, 3] - b[i, 1] + offset)
        area_j = (b[j, 2] - b[j, 0] + offset) * (b[j, 3] - b[j, 1] + offset)
        iou = inter / (area_i + area_j - inter)
    else:
        area_i = max(b[i, 2] - b[i, 0], zero) * max(b[i, 3] - b[i, 1], zero)
        area_j = max(b[j, 2] - b[j, 0], zero) * max(b[j, 3] - b[j, 1], zero)
        union = area_i + area_j - inter
        if not union > zero:
            return False  # IoU 0 (and the threshold is > 0)
        iou = inter / max(union, tiny)
    return iou >= thresh if inclusive else iou > thresh


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _window_clusters(b: np.ndarray, by_x: np.ndarray, xs: np.ndarray, position: np.ndarray,
                     ahead: np.ndarray, behind: np.ndarray, reach_y: np.ndarray,
                     valid: np.ndarray, consts: np.ndarray, plus_one: bool, inclusive: bool,
                     max_leaders: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    n = b.shape[0]
    group = np.full(n, -1, np.int64)
    leaders = np.empty(n, np.int64)
    num = 0
    for i in range(n):
        if group[i] != -1:
            continue
        if num >= max_leaders:
            break
        group[i] = num
        leaders[num] = i
        num += 1
        if not valid[i]:
            continue  # no area: overlaps nothing
        p = position[i]
        y1 = np.float64(b[i, 1])
        q = p + 1
        while q < n and xs[q] <= xs[p] + ahead[i]:  # partners starting at or after x1_i
            j = by_x[q]
            q += 1
            if (j > i and group[j] == -1 and valid[j]
                    and abs(np.float64(b[j, 1]) - y1) <= max(reach_y[i], reach_y[j])
                    and _overlap(b, i, j, consts, plus_one, inclusive)):
                group[j] = num - 1
        q = p - 1
        while q >= 0 and xs[q] >= xs[p] - behind[i]:  # partners starting before x1_i
            j = by_x[q]
            q -= 1
            if (j > i and group[j] == -1 and valid[j] and xs[p] <= xs[q + 1] + ahead[j]
                    and abs(np.float64(b[j, 1]) - y1) <= max(reach_y[i], reach_y[j])
                    and _overlap(b, i, j, consts, plus_one, inclusive)):
                group[j] = num - 1
    return leaders[:num], group


def window_clusters(boxes: Tensor, thresh: float, *, inclusive: bool, plus_one: bool,
                    max_leaders: int | None = None) -> tuple[Tensor, Tensor]:
    """Greedy leaders and groups of score-sorted, finite boxes (see the module docstring).

    Args:
        boxes: ``[N, 4]`` xyxy, finite, best first (float32 or float64; the IoU is computed
            in this dtype).
        thresh: overlap threshold, ``> 0``.
        inclusive: overlap means ``IoU >= thresh`` (voting) instead of ``> thresh`` (NMS).
        plus_one: the legacy ``+1`` convention (:func:`dsfd.boxes.box_iou_plus_one`).
        max_leaders: stop after this many leaders (``group`` is then -1 after them).

    Returns:
        ``(leaders [L], group [N])`` as :func:`dsfd.nms.greedy_clusters` returns them.
    """
    if not thresh > 0:
        raise ValueError(f"window_clusters needs a threshold > 0, got {thresh}")
    b = np.ascontiguousarray(boxes.detach().cpu().numpy())
    if b.dtype not in (np.float32, np.float64):
        b = b.astype(np.float32)
    offset = 1.0 if plus_one else 0.0
    coords = b.astype(np.float64)
    sides = coords[:, 2:] - coords[:, :2] + offset  # [N, 2] w, h
    valid = np.asarray((sides > 0).all(axis=1), dtype=np.bool_)
    slack = 1e-5 * float(np.abs(coords).max()) if b.shape[0] else 0.0
    reach = (1.0 - thresh + _MARGIN) * np.maximum(sides, 0) + slack  # [N, 2]
    # a partner's side is below side / t: its own reach, hence how far back to look
    behind = np.minimum((1.0 - thresh + _MARGIN) * np.maximum(sides[:, 0], 0)
                        / (thresh * (1.0 - _MARGIN)) + slack,
                        float(reach[:, 0].max()) if b.shape[0] else 0.0)
    by_x = np.argsort(coords[:, 0], kind="stable")
    position = np.empty_like(by_x)
    position[by_x] = np.arange(b.shape[0])
    consts = np.array([offset, 0.0, thresh, np.finfo(b.dtype).tiny], dtype=b.dtype)
    limit = b.shape[0] if max_leaders is None else int(max_leaders)
    leaders, group = _window_clusters(b, by_x, np.ascontiguousarray(coords[by_x, 0]), position,
                                      np.ascontiguousarray(reach[:, 0]), behind,
                                      np.ascontiguousarray(reach[:, 1]), valid, consts,
                                      plus_one, inclusive, limit)
    device = boxes.device
    return torch.from_numpy(leaders).to(device), torch.from_numpy(group).to(device)
