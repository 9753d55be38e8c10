"""Single-pass post-processing as the paper and the release do it.

Softmax over (background, face) logits (after max-in-out for the release, which the model
already applied), keep face score ``> score_thresh`` (0.01), the ``pre_nms_top_k`` (5000) best,
greedy NMS suppressing ``IoU > nms_thresh`` (0.3, no ``+1``), then the ``post_nms_top_k`` (750)
best. Boxes are decoded with the anchors of the real input size; the size factor is capped at
``exp(MAX_LOG_SCALE)`` = 62.5 (torchvision's clip) and boxes that are still not finite are
dropped, so untrained models give finite boxes (neither changes a trained model's output).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dsfd.anchors import AnchorSpec, cached_anchors
from dsfd.boxes import decode
from dsfd.model import Shot
from dsfd.nms import batched_nms, nms

POSTPROCESS_METHODS = ("auto", "per_image", "batched")
"""How :func:`postprocess_shot` runs: ``"per_image"`` (one image at a time; on the CPU the
compiled greedy loop), ``"batched"`` (every image of the batch in one tensor pass on the
outputs' device), ``"auto"`` (per image on the CPU, batched elsewhere). Same kept sets."""

# Boxes at most 62.5x their anchor (torchvision's bbox_xform_clip, log(1000/16)): keeps the
# boxes of untrained models finite; a trained model's boxes never come near it.
MAX_LOG_SCALE = math.log(1000.0 / 16)


@dataclass(frozen=True)
class PostprocessConfig:
    """Thresholds of the detection post-processing.

    Attributes:
        score_thresh: keep boxes whose face probability is strictly greater.
        pre_nms_top_k: best boxes that enter NMS.
        nms_thresh: NMS suppresses boxes with ``IoU > nms_thresh`` to a kept one.
        post_nms_top_k: boxes kept per image after NMS (single scale) or after box voting
            (multi-scale); None keeps all.
        vote_thresh: box-voting grouping threshold (``IoU >= vote_thresh`` with ``+1``).
    """

    score_thresh: float = 0.01
    pre_nms_top_k: int = 5000
    nms_thresh: float = 0.3
    post_nms_top_k: int | None = 750
    vote_thresh: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_thresh < 1.0:
            raise ValueError(f"PostprocessConfig.score_thresh must be in [0, 1), "
                             f"got {self.score_thresh}")
        if self.pre_nms_top_k < 1:
            raise ValueError(f"PostprocessConfig.pre_nms_top_k must be >= 1, "
                             f"got {self.pre_nms_top_k}")
        for name in ("nms_thresh", "vote_thresh"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"PostprocessConfig.{name} must be in (0, 1], got {value}")
        if self.post_nms_top_k is not None and self.post_nms_top_k < 1:
            raise ValueError(f"PostprocessConfig.post_nms_top_k must be >= 1 or None, "
                             f"got {self.post_nms_top_k}")


def detections_per_image(
    loc: Tensor,
    conf: Tensor,
    anchors: Tensor,
    config: PostprocessConfig,
    top_k: int | None,
) -> Tensor:
    """Detections of one image from one shot's raw outputs.

    Args:
        loc: ``[A, 4]`` regression deltas.
        conf: ``[A, 2]`` (background, face) logits.
        anchors: ``[A, 4]`` xyxy pixels of the network input.
        config: thresholds.
        top_k: boxes kept after NMS (None: all).

    Returns:
        ``[K, 5]`` float32 ``(x1, y1, x2, y2, score)`` in input pixels, score descending.
    """
    scores = torch.softmax(conf.float(), dim=-1)[:, 1]  # [A]
    keep, scores = _candidates(scores, config)
    boxes = decode(loc[keep].float(), anchors[keep], max_log_scale=MAX_LOG_SCALE)  # [K, 4]
    return _suppress(boxes, scores, config, top_k)


def detections_from_decoded(boxes: Tensor, scores: Tensor, config: PostprocessConfig,
                            top_k: int | None) -> Tensor:
    """:func:`detections_per_image` on boxes already decoded (e.g. by an exported graph).

    Args:
        boxes: ``[A, 4]`` float32 xyxy in input pixels.
        scores: ``[A]`` float32 face probabilities.
        config: thresholds.
        top_k: boxes kept after NMS (None: all).

    Returns:
        ``[K, 5]`` float32 ``(x1, y1, x2, y2, score)`` in input pixels, score descending.
    """
    keep, scores = _candidates(scores.float(), config)
    return _suppress(boxes[keep].float(), scores, config, top_k)


def _candidates(scores: Tensor, config: PostprocessConfig) -> tuple[Tensor, Tensor]:
    """Indices and scores above ``score_thresh``, the ``pre_nms_top_k`` best."""
    keep = torch.nonzero(scores > config.score_thresh).squeeze(1)
    scores = scores[keep]
    if scores.numel() > config.pre_nms_top_k:
        scores, top = torch.topk(scores, config.pre_nms_top_k, sorted=True)
        keep = keep[top]
    return keep, scores


def _suppress(boxes: Tensor, scores: Tensor, config: PostprocessConfig,
              top_k: int | None) -> Tensor:
    """NMS of the candidates; boxes that are not finite are dropped first."""
    finite = torch.isfinite(boxes).all(dim=1)  # an overflowing (untrained) net: drop, not NaN
    if not bool(finite.all()):
        boxes, scores = boxes[finite], scores[finite]
    kept = nms(boxes, scores, config.nms_thresh, max_kept=top_k)
    return torch.cat((boxes[kept], scores[kept, None]), dim=1)


def postprocess_shot(
    shot: Shot,
    input_hw: Sequence[int],
    spec: AnchorSpec,
    config: PostprocessConfig,
    top_k: int | None,
    *,
    image_hw: Sequence[tuple[int, int]] | None = None,
    method: str = "auto",
) -> list[Tensor]:
    """Per-image detections of a batch; see :func:`detections_per_image`.

    Args:
        shot: the shot's raw outputs for ``N`` images of one size.
        input_hw: ``(H, W)`` of the network input.
        spec: the shot's anchor settings.
        config: thresholds.
        top_k: boxes kept per image after NMS.
        image_hw: per image, the ``(h, w)`` of its pixels inside a padded input (bottom and
            right padding); anchors centred in the padding yield nothing. None: no padding.
        method: one of :data:`POSTPROCESS_METHODS`.

    Returns:
        ``N`` tensors ``[K_i, 5]``, boxes in network-input pixels.
    """
    if method not in POSTPROCESS_METHODS:
        raise ValueError(f"postprocess method must be one of {POSTPROCESS_METHODS}, "
                         f"got {method!r}")
    anchors = cached_anchors(spec, input_hw, shot.feature_hw, shot.loc.device)
    if anchors.shape[0] != shot.loc.shape[1]:
        raise ValueError(f"{anchors.shape[0]} anchors for {shot.loc.shape[1]} predictions at "
                         f"input {tuple(input_hw)}, maps {shot.feature_hw}")
    scores = torch.softmax(shot.conf.float(), dim=-1)[..., 1]  # [N, A]
    if image_hw is not None:
        scores = torch.where(padding_mask(anchors, image_hw), scores, 0.0)
    if method == "batched" or (method == "auto" and shot.loc.device.type != "cpu"):
        return batched_detections(shot.loc, scores, anchors, config, top_k)
    out = []
    for i in range(shot.loc.shape[0]):
        keep, kept_scores = _candidates(scores[i], config)
        boxes = decode(shot.loc[i][keep].float(), anchors[keep], max_log_scale=MAX_LOG_SCALE)
        out.append(_suppress(boxes, kept_scores, config, top_k))
    return out


def padding_mask(anchors: Tensor, image_hw: Sequence[tuple[int, int]]) -> Tensor:
    """``[N, A]`` bool: anchors whose centre lies inside each image's own ``(h, w)`` (the rest
    of a padded batch input yields no detections)."""
    centre = (anchors[:, :2] + anchors[:, 2:]) / 2  # [A, 2] x, y
    hw = torch.tensor(image_hw, dtype=centre.dtype, device=anchors.device)  # [N, 2]
    return (centre[None, :, 0] < hw[:, None, 1]) & (centre[None, :, 1] < hw[:, None, 0])


def batched_detections(loc: Tensor, scores: Tensor, anchors: Tensor, config: PostprocessConfig,
                       top_k: int | None) -> list[Tensor]:
    """:func:`detections_per_image` of ``N`` images in one tensor pass (one NMS call).

    Args:
        loc: ``[N, A, 4]`` regression deltas.
        scores: ``[N, A]`` face probabilities (0 where masked).
        anchors: ``[A, 4]``.
        config: thresholds.
        top_k: boxes kept per image after NMS.

    Returns:
        ``N`` tensors ``[K_i, 5]``, the same kept boxes as the per-image path.
    """
    keeps, picked = [], []
    for i in range(loc.shape[0]):
        keep, kept_scores = _candidates(scores[i], config)
        keeps.append(keep + i * loc.shape[1])
        picked.append(kept_scores)
    keep = torch.cat(keeps)  # [K] rows of the flattened batch
    boxes = decode(loc.reshape(-1, 4)[keep].float(), anchors.repeat(loc.shape[0], 1)[keep],
                   max_log_scale=MAX_LOG_SCALE)  # [K, 4]
    kept_scores = torch.cat(picked)  # [K]
    segments = torch.div(keep, loc.shape[1], rounding_mode="floor")  # [K] image of each
    finite = torch.isfinite(boxes).all(dim=1)  # an overflowing (untrained) net: drop, not NaN
    if not bool(finite.all()):
        boxes, kept_scores, segments = boxes[finite], kept_scores[finite], segments[finite]
    kept = batched_nms(boxes, kept_scores, segments, config.nms_thresh, max_kept=top_k)
    dets = torch.cat((boxes[kept], kept_scores[kept, None]), dim=1)  # [K', 5]
    counts = torch.bincount(segments[kept], minlength=loc.shape[0]).tolist()
    return list(torch.split(dets, counts))
