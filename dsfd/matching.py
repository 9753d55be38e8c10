"""Anchor matching: which anchor learns which face.

Section 3.4 of the paper and the official config (``overlap_thresh=[0.4]``): an anchor is
positive when its IoU with some face is at least ``pos_thresh`` (0.4) and is then matched to the
face it overlaps most; every face also claims its own best anchor (so no face is left without a
positive anchor), and everything else is negative. An optional ignore band marks anchors with
``neg_thresh <= IoU < pos_thresh`` as ignored (label -1): they count neither as positives nor as
negatives in the loss. Everything is vectorised and returns fresh tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dsfd.boxes import box_iou


@dataclass(frozen=True)
class MatchConfig:
    """Thresholds of :func:`match_anchors`.

    Attributes:
        pos_thresh: IoU at or above which an anchor is positive (0.4 in the paper).
        neg_thresh: IoU below which an anchor is negative; anchors in
            ``[neg_thresh, pos_thresh)`` are ignored. ``None`` (the paper) means no ignore band.
        force_best_anchor: every face claims the anchor it overlaps most, whatever the IoU
            (as long as it is above zero).
    """

    pos_thresh: float = 0.4
    neg_thresh: float | None = None
    force_best_anchor: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.pos_thresh <= 1.0:
            raise ValueError(f"MatchConfig.pos_thresh must be in (0, 1], got {self.pos_thresh}")
        if self.neg_thresh is not None and not 0.0 <= self.neg_thresh <= self.pos_thresh:
            raise ValueError(
                "MatchConfig.neg_thresh must be in [0, pos_thresh] or None, got "
                f"{self.neg_thresh} with pos_thresh {self.pos_thresh}"
            )


@dataclass(frozen=True)
class Match:
    """Result of :func:`match_anchors` for one image.

    Attributes:
        matched_index: ``int64 [A]``, the face each anchor overlaps most (the forced face for
            claimed anchors); ``-1`` when the image has no faces. Meaningful where label is 1.
        labels: ``int64 [A]``, 1 positive, 0 negative, -1 ignored.
        iou: ``float32 [A]``, IoU of each anchor with its matched face (0 without faces).
    """

    matched_index: Tensor
    labels: Tensor
    iou: Tensor

    @property
    def positive(self) -> Tensor:
        """``bool [A]`` positives."""
        return self.labels == 1

    def num_matched_per_face(self, num_faces: int) -> Tensor:
        """``int64 [G]``: number of positive anchors assigned to each face."""
        return torch.bincount(self.matched_index[self.positive], minlength=num_faces)


def match_anchors(
    anchors_xyxy: Tensor, boxes_xyxy: Tensor, config: MatchConfig = MatchConfig()
) -> Match:
    """Match anchors to the faces of one image.

    Args:
        anchors_xyxy: ``float [A, 4]`` xyxy pixels.
        boxes_xyxy: ``float [G, 4]`` xyxy pixels of the faces (``G`` may be 0). Degenerate
            boxes (zero width or height) have IoU 0 with everything and match nothing.
        config: thresholds.

    Returns:
        :class:`Match` with per-anchor face index, label and IoU.
    """
    if anchors_xyxy.ndim != 2 or anchors_xyxy.shape[-1] != 4:
        raise ValueError(f"match_anchors: anchors must be [A, 4], got {tuple(anchors_xyxy.shape)}")
    if boxes_xyxy.ndim != 2 or boxes_xyxy.shape[-1] != 4:
        raise ValueError(f"match_anchors: boxes must be [G, 4], got {tuple(boxes_xyxy.shape)}")
    num_anchors, num_faces = anchors_xyxy.shape[0], boxes_xyxy.shape[0]
    device = anchors_xyxy.device
    if num_faces == 0:
        return Match(
            matched_index=torch.full((num_anchors,), -1, dtype=torch.int64, device=device),
            labels=torch.zeros(num_anchors, dtype=torch.int64, device=device),
            iou=torch.zeros(num_anchors, dtype=torch.float32, device=device),
        )
    iou = box_iou(boxes_xyxy.to(anchors_xyxy.dtype), anchors_xyxy)  # [G, A]
    best_iou, matched = iou.max(dim=0)  # [A] each: the face each anchor overlaps most
    if config.force_best_anchor:
        # Each face claims its best anchor; when two faces claim the same anchor, the face with
        # the larger IoU there wins (deterministic, unlike a sequential overwrite).
        best_anchor = iou.argmax(dim=1)  # [G]
        claimed = torch.zeros_like(iou, dtype=torch.bool)  # [G, A]
        claimed[torch.arange(num_faces, device=device), best_anchor] = True
        claimed &= iou > 0
        claim_iou = torch.where(claimed, iou, torch.full_like(iou, -1.0))  # [G, A]
        top_claim, claimer = claim_iou.max(dim=0)  # [A]
        is_claimed = top_claim >= 0
        matched = torch.where(is_claimed, claimer, matched)
        best_iou = torch.where(is_claimed, top_claim, best_iou)
    else:
        is_claimed = torch.zeros(num_anchors, dtype=torch.bool, device=device)
    positive = (best_iou >= config.pos_thresh) | is_claimed
    labels = positive.to(torch.int64)  # [A] 1 / 0
    if config.neg_thresh is not None:
        ignore = ~positive & (best_iou >= config.neg_thresh)
        labels = torch.where(ignore, torch.full_like(labels, -1), labels)
    return Match(matched_index=matched, labels=labels, iou=best_iou.float())
