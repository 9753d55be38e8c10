"""Box maths on tensors: IoU, format conversion and SSD box coding.

The internal box format is ``xyxy`` float pixels (``x2``/``y2`` exclusive, no ``+1``). Other
formats are named where they appear (``cxcywh``). Every function is tensor in, tensor out and
works on any device and floating dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_VARIANCES: tuple[float, float] = (0.1, 0.2)


def _check_last_dim(name: str, boxes: Tensor) -> None:
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(boxes).__name__}")
    if boxes.ndim < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"{name}: expected shape [..., 4], got {tuple(boxes.shape)}")


def box_area(boxes: Tensor) -> Tensor:
    """Areas of ``xyxy`` boxes (no ``+1``); degenerate boxes have area 0.

    Args:
        boxes: ``[..., 4]`` xyxy.

    Returns:
        ``[...]`` areas, same dtype.
    """
    _check_last_dim("boxes", boxes)
    w = (boxes[..., 2] - boxes[..., 0]).clamp(min=0)
    h = (boxes[..., 3] - boxes[..., 1]).clamp(min=0)
    return w * h


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise intersection over union of two sets of ``xyxy`` boxes (no ``+1``).

    Args:
        a: ``[N, 4]`` xyxy boxes.
        b: ``[M, 4]`` xyxy boxes.

    Returns:
        ``[N, M]`` IoU in ``[0, 1]``; 0 where the union is empty.
    """
    _check_last_dim("a", a)
    _check_last_dim("b", b)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"box_iou expects 2-D inputs, got {tuple(a.shape)} and {tuple(b.shape)}")
    area_a = box_area(a)  # [N]
    area_b = box_area(b)  # [M]
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])  # [N, M, 2]
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])  # [N, M, 2]
    wh = (rb - lt).clamp(min=0)  # [N, M, 2]
    inter = wh[..., 0] * wh[..., 1]  # [N, M]
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(inter.dtype).tiny), 0.0)


def box_iou_plus_one(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise IoU with the legacy ``+1`` pixel convention (used by the official box voting).

    Area is ``(x2 - x1 + 1) * (y2 - y1 + 1)`` and the intersection sides are
    ``max(0, min(x2) - max(x1) + 1)``, as in the WIDER FACE test script.

    Args:
        a: ``[N, 4]`` xyxy boxes.
        b: ``[M, 4]`` xyxy boxes.

    Returns:
        ``[N, M]`` IoU.
    """
    _check_last_dim("a", a)
    _check_last_dim("b", b)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)  # [N]
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)  # [M]
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])  # [N, M, 2]
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])  # [N, M, 2]
    wh = (rb - lt + 1).clamp(min=0)  # [N, M, 2]
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """Convert ``[..., 4]`` xyxy boxes to centre form ``(cx, cy, w, h)``."""
    _check_last_dim("boxes", boxes)
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """Convert ``[..., 4]`` centre-form boxes ``(cx, cy, w, h)`` to xyxy.

    ``x1 = cx - w/2`` and ``x2 = x1 + w``, the order of operations of the reference decoder.
    """
    _check_last_dim("boxes", boxes)
    cx, cy, w, h = boxes.unbind(-1)
    x1 = cx - w / 2
    y1 = cy - h / 2
    return torch.stack((x1, y1, x1 + w, y1 + h), dim=-1)


def encode(
    matched_xyxy: Tensor,
    anchors_xyxy: Tensor,
    variances: tuple[float, float] = DEFAULT_VARIANCES,
) -> Tensor:
    """SSD box encoding of ground-truth boxes relative to their anchors.

    ``g_cx = (cx - a_cx) / (v0 * a_w)``, ``g_w = log(w / a_w) / v1`` (same for y/h).

    Args:
        matched_xyxy: ``[A, 4]`` (or ``[..., A, 4]``) xyxy pixels, one box per anchor. Boxes
            must have positive width and height (the log is taken).
        anchors_xyxy: ``[A, 4]`` xyxy pixels.
        variances: ``(centre, size)`` variances.

    Returns:
        ``[..., A, 4]`` regression targets ``(dx, dy, dw, dh)``.
    """
    _check_last_dim("matched_xyxy", matched_xyxy)
    _check_last_dim("anchors_xyxy", anchors_xyxy)
    g = xyxy_to_cxcywh(matched_xyxy)
    a = xyxy_to_cxcywh(anchors_xyxy)
    centre = (g[..., :2] - a[..., :2]) / (variances[0] * a[..., 2:])
    size = torch.log(g[..., 2:] / a[..., 2:]) / variances[1]
    return torch.cat((centre, size), dim=-1)


def decode(
    deltas: Tensor,
    anchors_xyxy: Tensor,
    variances: tuple[float, float] = DEFAULT_VARIANCES,
    *,
    max_log_scale: float | None = None,
) -> Tensor:
    """Inverse of :func:`encode`: regression outputs to xyxy pixel boxes.

    ``cx = a_cx + dx * v0 * a_w``, ``w = a_w * exp(dw * v1)``; then ``x1 = cx - w/2``,
    ``x2 = x1 + w`` as in the reference decoder.

    Args:
        deltas: ``[..., A, 4]`` regression outputs.
        anchors_xyxy: ``[A, 4]`` xyxy pixels (broadcast over leading dims).
        variances: ``(centre, size)`` variances.
        max_log_scale: if given, ``dw * v1`` and ``dh * v1`` are clamped to at most this, so
            wild regressions (e.g. of an untrained model) give large but finite boxes.

    Returns:
        ``[..., A, 4]`` xyxy pixels.
    """
    _check_last_dim("deltas", deltas)
    _check_last_dim("anchors_xyxy", anchors_xyxy)
    if deltas.shape[-2] != anchors_xyxy.shape[-2]:
        raise ValueError(
            f"decode: {deltas.shape[-2]} deltas but {anchors_xyxy.shape[-2]} anchors"
        )
    a = xyxy_to_cxcywh(anchors_xyxy).to(deltas.dtype)
    centre = a[..., :2] + deltas[..., :2] * variances[0] * a[..., 2:]
    log_scale = deltas[..., 2:] * variances[1]
    if max_log_scale is not None:
        log_scale = log_scale.clamp(max=max_log_scale)
    size = a[..., 2:] * torch.exp(log_scale)
    return cxcywh_to_xyxy(torch.cat((centre, size), dim=-1))
