"""Progressive Anchor Loss (PAL): the multibox loss of each shot and their weighted sum.

Paper, eq. (2)-(4). Each shot's loss is the SSD multibox loss: a 2-class softmax cross-entropy
over the positive anchors plus hard negatives (at most ``negpos_ratio`` = 3 negatives per positive,
ranked per image by their background loss), and a smooth-L1 loss on the SSD-encoded offsets
(variances 0.1/0.2) of the positives::

    L_shot = sum_i L_conf / N_conf + beta * sum_pos L_loc / N

with ``N`` the number of positive anchors of the batch. ``N_conf`` is ``N`` by default, as in
the official ``multibox_loss.py``; eq. (2) defines it as the number of positive plus negative
anchors, which ``conf_normalizer="positives+negatives"`` follows (the mined negatives: the
others carry no loss). When the batch has no positive anchor the box term is exactly zero, and
so is the confidence term because no negative is mined (an image without faces then contributes
no gradient, as in the official code); the divisions use ``max(., 1)`` so nothing is ever
divided by zero.

Eq. (4) weights the *second* shot: ``L_PAL = L_FSL(sa) + lambda * L_SSL(a)``, where the first shot
uses the small anchors (8..256) on the original maps and the second the anchors of Table 1
(16..512) on the enhanced maps. The paper gives no value for ``lambda``; the default 1.0 is what
the public re-implementation with training code uses.

Models with auxiliary branches (``release-r152``: the head and body outputs of its progressive
anchors) add ``auxiliary_weight`` times each branch's multibox loss, every branch matched
against the same face boxes with its own anchors, as the official ``multibox_loss.py`` does.
:func:`detection_loss` builds every anchor set from a model and its output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from dsfd.anchors import cached_anchors
from dsfd.boxes import DEFAULT_VARIANCES, encode
from dsfd.matching import MatchConfig, match_anchors

CONF_NORMALIZERS: tuple[str, ...] = ("positives", "positives+negatives")


class ShotLike(Protocol):
    """The head outputs of one shot: ``loc [N, A, 4]`` offsets and ``conf [N, A, 2]`` logits."""

    @property
    def loc(self) -> Tensor: ...

    @property
    def conf(self) -> Tensor: ...


class ShotWithSizes(ShotLike, Protocol):
    """A shot that also names the feature-map sizes its anchors are laid on."""

    @property
    def feature_hw(self) -> list[tuple[int, int]]: ...


class OutputLike(Protocol):
    """A model output (:class:`dsfd.model.DSFDOutput`)."""

    @property
    def first(self) -> ShotWithSizes | None: ...

    @property
    def second(self) -> ShotWithSizes: ...

    @property
    def auxiliary(self) -> Sequence[ShotWithSizes]: ...


@dataclass(frozen=True)
class LossConfig:
    """Settings of the multibox and progressive anchor losses.

    Attributes:
        match: anchor matching thresholds (IoU 0.4, no ignore band).
        negpos_ratio: hard negatives kept per positive, per image (3).
        box_weight: ``beta`` of eq. (2)/(3), weight of the smooth-L1 term (1).
        second_shot_weight: ``lambda`` of eq. (4), weight of the second-shot loss (1).
        variances: SSD box-coding variances ``(centre, size)``.
        conf_normalizer: ``N_conf`` of eq. (2): ``"positives"`` (default, the official code:
            the positive anchors of the batch) or ``"positives+negatives"`` (eq. (2) as
            written: positives plus mined negatives, about 4x smaller a term at 3:1 mining).
        auxiliary_weight: weight of each auxiliary branch's loss (the release's head and body
            progressive anchors; 1, the official loss returns them unweighted); 0 skips them.
    """

    match: MatchConfig = field(default_factory=MatchConfig)
    negpos_ratio: float = 3.0
    box_weight: float = 1.0
    second_shot_weight: float = 1.0
    variances: tuple[float, float] = DEFAULT_VARIANCES
    conf_normalizer: Literal["positives", "positives+negatives"] = "positives"
    auxiliary_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.negpos_ratio < 0:
            raise ValueError(f"LossConfig.negpos_ratio must be >= 0, got {self.negpos_ratio}")
        if self.conf_normalizer not in CONF_NORMALIZERS:
            raise ValueError(
                f"LossConfig.conf_normalizer must be one of {CONF_NORMALIZERS}, got "
                f"{self.conf_normalizer!r}"
            )
        if self.auxiliary_weight < 0:
            raise ValueError(
                f"LossConfig.auxiliary_weight must be >= 0, got {self.auxiliary_weight}"
            )


@dataclass(frozen=True)
class MultiboxLoss:
    """One shot's loss terms (already normalised).

    Attributes:
        conf: scalar tensor, the classification term.
        box: scalar tensor, the localisation term (``beta`` applied).
        num_positives: positive anchors in the batch.
        num_negatives: mined negatives in the batch.
    """

    conf: Tensor
    box: Tensor
    num_positives: int
    num_negatives: int

    @property
    def total(self) -> Tensor:
        """``conf + box``."""
        return self.conf + self.box


@dataclass(frozen=True)
class PALoss:
    """The progressive anchor loss and its parts.

    Attributes:
        total: scalar tensor to back-propagate, ``first.total + lambda * second.total`` plus
            ``auxiliary_weight`` times each auxiliary branch's total.
        first: first-shot loss, or None for a model without a first shot.
        second: second-shot loss.
        auxiliary: per auxiliary branch name (``"head"``, ``"body"``) its loss; empty for the
            paper models.
    """

    total: Tensor
    first: MultiboxLoss | None
    second: MultiboxLoss
    auxiliary: dict[str, MultiboxLoss] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """Plain floats for logging: total and each part's conf/box/positives."""
        out = {"loss": float(self.total.detach())}
        parts = [("first", self.first), ("second", self.second), *self.auxiliary.items()]
        for name, part in parts:
            if part is not None:
                out[f"{name}_conf"] = float(part.conf.detach())
                out[f"{name}_box"] = float(part.box.detach())
                out[f"{name}_positives"] = float(part.num_positives)
        return out


def _targets_per_image(
    anchors: Tensor, targets: Sequence[Tensor], config: MatchConfig
) -> tuple[Tensor, Tensor]:
    """Labels ``int64 [N, A]`` and matched boxes ``float [N, A, 4]`` for a batch."""
    labels, matched = [], []
    for boxes in targets:
        boxes = boxes.to(device=anchors.device, dtype=anchors.dtype)
        m = match_anchors(anchors, boxes, config)
        labels.append(m.labels)
        # Negatives get the anchor itself as a harmless (finite) target; only positives count.
        matched.append(boxes[m.matched_index.clamp(min=0)] if boxes.shape[0] else anchors)
    return torch.stack(labels), torch.stack(matched)


def _hard_negatives(background_loss: Tensor, labels: Tensor, negpos_ratio: float) -> Tensor:
    """``bool [N, A]``: per image, the ``ratio * #pos`` negatives with the largest loss.

    Ranked by the cross-entropy of the background class; positives and ignored anchors are
    never picked, and at most the available negatives are taken.
    """
    candidates = labels == 0  # [N, A]
    ranked = torch.where(candidates, background_loss, torch.full_like(background_loss, -1.0))
    order = ranked.argsort(dim=1, descending=True)  # [N, A]
    rank = order.argsort(dim=1)  # [N, A] rank of each anchor by loss
    num_pos = (labels == 1).sum(dim=1, keepdim=True)  # [N, 1]
    num_neg = torch.minimum(
        (num_pos.to(background_loss.dtype) * negpos_ratio).floor().long(),
        candidates.sum(dim=1, keepdim=True),
    )  # [N, 1]
    return candidates & (rank < num_neg)


def multibox_loss(
    loc: Tensor,
    conf: Tensor,
    anchors_xyxy: Tensor,
    targets: Sequence[Tensor],
    config: LossConfig = LossConfig(),
) -> MultiboxLoss:
    """The multibox loss of one shot (eq. (2)/(3)).

    Args:
        loc: ``float [N, A, 4]`` predicted offsets (SSD coding, ``config.variances``).
        conf: ``float [N, A, 2]`` logits, background then face.
        anchors_xyxy: ``float [A, 4]`` xyxy pixels of the shot's anchors.
        targets: ``N`` tensors ``float [G_i, 4]`` of face boxes, xyxy pixels of the network
            input (``G_i`` may be 0).
        config: matching and weighting.

    Returns:
        :class:`MultiboxLoss` with normalised terms.
    """
    if (
        loc.ndim != 3
        or loc.shape[-1] != 4
        or conf.shape[:2] != loc.shape[:2]
        or conf.shape[-1] != 2
    ):
        raise ValueError(
            f"multibox_loss: expected loc [N, A, 4] and conf [N, A, 2], got {tuple(loc.shape)} "
            f"and {tuple(conf.shape)}"
        )
    if anchors_xyxy.shape != (loc.shape[1], 4):
        raise ValueError(
            f"multibox_loss: {loc.shape[1]} predictions per image but anchors "
            f"{tuple(anchors_xyxy.shape)}"
        )
    if len(targets) != loc.shape[0]:
        raise ValueError(f"multibox_loss: {loc.shape[0]} images but {len(targets)} target sets")
    anchors = anchors_xyxy.to(device=loc.device, dtype=torch.float32)
    with torch.no_grad():
        labels, matched = _targets_per_image(anchors, targets, config.match)  # [N, A], [N, A, 4]
        log_probs = F.log_softmax(conf.float(), dim=-1)  # [N, A, 2]
        negatives = _hard_negatives(-log_probs[..., 0], labels, config.negpos_ratio)
    positive = labels == 1  # [N, A]
    num_pos, num_neg = int(positive.sum()), int(negatives.sum())
    selected = positive | negatives
    ce = F.cross_entropy(conf[selected].float(), positive[selected].long(), reduction="sum")
    if num_pos:
        anchors_pos = anchors.expand(loc.shape[0], -1, -1)[positive]  # [P, 4]
        target_loc = encode(matched[positive], anchors_pos, config.variances)  # [P, 4]
        box = F.smooth_l1_loss(loc[positive].float(), target_loc, reduction="sum", beta=1.0)
    else:
        box = loc.sum() * 0.0  # exactly zero, still part of the graph
    conf_norm = num_pos + num_neg if config.conf_normalizer == "positives+negatives" else num_pos
    return MultiboxLoss(
        conf=ce / max(conf_norm, 1),
        box=config.box_weight * box / max(num_pos, 1),
        num_positives=num_pos,
        num_negatives=num_neg,
    )


def progressive_anchor_loss(
    first: ShotLike | None,
    second: ShotLike,
    anchors: tuple[Tensor | None, Tensor],
    targets: Sequence[Tensor],
    config: LossConfig = LossConfig(),
    auxiliary: Sequence[tuple[str, ShotLike, Tensor]] = (),
) -> PALoss:
    """``L_PAL = L_FSL(first shot, small anchors) + lambda * L_SSL(second shot, anchors)``.

    Both shots are matched against the same face boxes, each with its own anchors; so are the
    auxiliary branches, added with ``config.auxiliary_weight``.

    Args:
        first: first-shot outputs (``loc [N, A1, 4]``, ``conf [N, A1, 2]``) or None.
        second: second-shot outputs (``loc [N, A2, 4]``, ``conf [N, A2, 2]``).
        anchors: ``(first [A1, 4] or None, second [A2, 4])`` xyxy pixels.
        targets: per image ``float [G_i, 4]`` xyxy face boxes in input pixels.
        config: matching and weights (``second_shot_weight`` is lambda).
        auxiliary: ``(name, outputs, anchors [A_k, 4])`` per auxiliary branch.

    Returns:
        :class:`PALoss`.
    """
    second_loss = multibox_loss(second.loc, second.conf, anchors[1], targets, config)
    total = config.second_shot_weight * second_loss.total
    first_loss = None
    if first is not None:
        if anchors[0] is None:
            raise ValueError("progressive_anchor_loss: first-shot outputs but no first anchors")
        first_loss = multibox_loss(first.loc, first.conf, anchors[0], targets, config)
        total = first_loss.total + total
    auxiliary_losses: dict[str, MultiboxLoss] = {}
    if config.auxiliary_weight > 0:
        for name, shot, shot_anchors in auxiliary:
            part = multibox_loss(shot.loc, shot.conf, shot_anchors, targets, config)
            auxiliary_losses[name] = part
            total = total + config.auxiliary_weight * part.total
    return PALoss(total=total, first=first_loss, second=second_loss, auxiliary=auxiliary_losses)


def detection_loss(
    model: object,
    output: OutputLike,
    image_hw: Sequence[int],
    targets: Sequence[Tensor],
    config: LossConfig = LossConfig(),
) -> PALoss:
    """The training loss of any DSFD model: every shot and auxiliary branch with its anchors.

    Args:
        model: the model that produced ``output`` (unwrapped from DDP): its ``anchor_specs``
            ``(first or None, second)`` and ``auxiliary_anchor_specs`` (``(name, spec)`` pairs
            in the order of ``output.auxiliary``; absent means none).
        output: the model's :class:`~dsfd.model.DSFDOutput` for a batch.
        image_hw: ``(H, W)`` of the network input in pixels.
        targets: per image ``float [G_i, 4]`` xyxy face boxes in input pixels.
        config: matching and weights.

    Returns:
        :class:`PALoss`.
    """
    specs = getattr(model, "anchor_specs", None)
    if not isinstance(specs, tuple) or len(specs) != 2:
        raise TypeError(f"detection_loss: {type(model).__name__} has no (first, second) "
                        "`anchor_specs`; build it with dsfd.build_model")
    aux_specs = tuple(getattr(model, "auxiliary_anchor_specs", ()))
    if len(aux_specs) != len(output.auxiliary):
        raise ValueError(f"detection_loss: {len(output.auxiliary)} auxiliary outputs but "
                         f"{len(aux_specs)} auxiliary anchor specs")
    device = output.second.loc.device
    hw = (int(image_hw[0]), int(image_hw[1]))
    first_anchors = None
    if output.first is not None and specs[0] is not None:
        first_anchors = cached_anchors(specs[0], hw, output.first.feature_hw, device)
    second_anchors = cached_anchors(specs[1], hw, output.second.feature_hw, device)
    auxiliary = [(name, shot, cached_anchors(spec, hw, shot.feature_hw, device))
                 for (name, spec), shot in zip(aux_specs, output.auxiliary, strict=True)]
    return progressive_anchor_loss(output.first, output.second, (first_anchors, second_anchors),
                                   targets, config, auxiliary)
