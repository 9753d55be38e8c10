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
from dsfd.nms import nms

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
    keep = torch.nonzero(scores > config.score_thresh).squeeze(1)
    scores = scores[keep]
    if scores.numel() > config.pre_nms_top_k:
        scores, top = torch.topk(scores, config.pre_nms_top_k, sorted=True)
        keep = keep[top]
    boxes = decode(loc[keep].float(), anchors[keep], max_log_scale=MAX_LOG_SCALE)  # [K, 4]
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
) -> list[Tensor]:
    """Per-image detections of a batch; see :func:`detections_per_image`.

    Args:
        shot: the shot's raw outputs for ``N`` images of one size.
        input_hw: ``(H, W)`` of the network input.
        spec: the shot's anchor settings.
        config: thresholds.
        top_k: boxes kept per image after NMS.

    Returns:
        ``N`` tensors ``[K_i, 5]``, boxes in network-input pixels.
    """
    anchors = cached_anchors(spec, input_hw, shot.feature_hw, shot.loc.device)
    if anchors.shape[0] != shot.loc.shape[1]:
        raise ValueError(f"{anchors.shape[0]} anchors for {shot.loc.shape[1]} predictions at "
                         f"input {tuple(input_hw)}, maps {shot.feature_hw}")
    return [detections_per_image(shot.loc[i], shot.conf[i], anchors, config, top_k)
            for i in range(shot.loc.shape[0])]
