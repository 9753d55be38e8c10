"""Multibox and progressive anchor losses: hand-computed golden values and edge cases."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from dsfd.anchors import FIRST_SHOT_ANCHORS, SECOND_SHOT_ANCHORS, make_anchors
from dsfd.loss import LossConfig, multibox_loss, progressive_anchor_loss
from dsfd.matching import MatchConfig

ANCHORS = torch.tensor([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], dtype=torch.float32)
FACE = torch.tensor([[1, 0, 11, 10]], dtype=torch.float32)  # IoU 90/110 with anchor 0 only


@dataclass
class Shot:
    loc: torch.Tensor
    conf: torch.Tensor


def _golden_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    loc = torch.tensor([[[0.5, 0.0, 0.0, 0.2], [9.0, 9.0, 9.0, 9.0], [-7.0, 3.0, 1.0, 2.0]]])
    conf = torch.tensor([[[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]])
    return loc, conf


def test_golden_three_anchors_one_face() -> None:
    loc, conf = _golden_inputs()
    out = multibox_loss(loc, conf, ANCHORS, [FACE])
    e = math.e
    # Positive a0 (label face) + both negatives (3:1 allows 3, only 2 exist).
    expected_conf = 2 * (math.log(1 + e) - 1) + math.log(2)
    # Target offsets of a0: ((6 - 5) / (0.1 * 10), 0, log(1) / 0.2, 0) = (1, 0, 0, 0).
    expected_box = 0.5 * 0.5**2 + 0.5 * 0.2**2
    assert out.num_positives == 1 and out.num_negatives == 2
    assert out.conf.item() == pytest.approx(expected_conf, rel=1e-6)
    assert out.box.item() == pytest.approx(expected_box, rel=1e-6)


def test_golden_hard_negative_ranking_and_weights() -> None:
    loc, conf = _golden_inputs()
    cfg = LossConfig(negpos_ratio=1.0, box_weight=2.0)
    out = multibox_loss(loc, conf, ANCHORS, [FACE], cfg)
    # One negative: a1 (background CE log 2) beats a2 (log(1 + e) - 1 = 0.313).
    assert out.num_negatives == 1
    assert out.conf.item() == pytest.approx(math.log(1 + math.e) - 1 + math.log(2), rel=1e-6)
    assert out.box.item() == pytest.approx(2.0 * 0.145, rel=1e-6)
    sampled = multibox_loss(loc, conf, ANCHORS, [FACE], LossConfig(conf_normalizer="sampled"))
    assert sampled.conf.item() == pytest.approx(
        (2 * (math.log(1 + math.e) - 1) + math.log(2)) / 3, rel=1e-6
    )


def test_normalised_by_batch_positives_and_mined_per_image() -> None:
    loc, conf = _golden_inputs()
    loc2, conf2 = torch.cat([loc, loc]), torch.cat([conf, conf])
    out = multibox_loss(loc2, conf2, ANCHORS, [FACE, torch.zeros((0, 4))])
    single = multibox_loss(loc, conf, ANCHORS, [FACE])
    # The image without faces mines no negatives; N = 1 for the whole batch.
    assert out.num_positives == 1 and out.num_negatives == 2
    assert out.conf.item() == pytest.approx(single.conf.item(), rel=1e-6)
    both = multibox_loss(loc2, conf2, ANCHORS, [FACE, FACE])
    assert both.conf.item() == pytest.approx(single.conf.item(), rel=1e-6)  # 2x sum / 2x N


def test_no_faces_gives_zero_loss_with_a_graph() -> None:
    loc, conf = _golden_inputs()
    loc.requires_grad_(True)
    conf.requires_grad_(True)
    out = multibox_loss(loc, conf, ANCHORS, [torch.zeros((0, 4))])
    assert out.num_positives == 0 and out.box.item() == 0.0 and out.conf.item() == 0.0
    out.total.backward()
    assert loc.grad is not None and (loc.grad == 0).all()


def test_ignored_anchors_are_never_negatives() -> None:
    loc, conf = _golden_inputs()
    anchors = ANCHORS.clone()
    anchors[1] = torch.tensor([1, 0, 11, 3.5])  # IoU 0.35 with the face
    cfg = LossConfig(match=MatchConfig(pos_thresh=0.4, neg_thresh=0.3))
    out = multibox_loss(loc, conf, anchors, [FACE], cfg)
    assert out.num_positives == 1 and out.num_negatives == 1


def test_pal_weights_the_second_shot_and_gradients_reach_both() -> None:
    torch.manual_seed(0)
    hw = (64, 64)
    a1, a2 = make_anchors(FIRST_SHOT_ANCHORS, hw), make_anchors(SECOND_SHOT_ANCHORS, hw)
    faces = [torch.tensor([[10.0, 12.0, 30.0, 40.0]]), torch.tensor([[30.0, 5.0, 50.0, 33.0]])]
    first = Shot(
        torch.randn(2, len(a1), 4, requires_grad=True),
        torch.randn(2, len(a1), 2, requires_grad=True),
    )
    second = Shot(
        torch.randn(2, len(a2), 4, requires_grad=True),
        torch.randn(2, len(a2), 2, requires_grad=True),
    )
    cfg = LossConfig(second_shot_weight=0.25)
    pal = progressive_anchor_loss(first, second, (a1, a2), faces, cfg)
    assert pal.first is not None
    expected = pal.first.total + 0.25 * pal.second.total
    assert pal.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert pal.first.num_positives > 0 and pal.second.num_positives > 0
    pal.total.backward()
    for t in (first.loc, first.conf, second.loc, second.conf):
        assert t.grad is not None and t.grad.abs().sum() > 0
    parts = pal.as_dict()
    assert set(parts) >= {"loss", "first_conf", "first_box", "second_conf", "second_box"}
    only_second = progressive_anchor_loss(None, second, (None, a2), faces, cfg)
    assert only_second.first is None
    assert only_second.total.item() == pytest.approx(0.25 * pal.second.total.item(), rel=1e-6)


def test_shape_errors_are_explicit() -> None:
    loc, conf = _golden_inputs()
    with pytest.raises(ValueError, match="anchors"):
        multibox_loss(loc, conf, ANCHORS[:2], [FACE])
    with pytest.raises(ValueError, match="target sets"):
        multibox_loss(loc, conf, ANCHORS, [FACE, FACE])
    with pytest.raises(ValueError, match=r"conf \[N, A, 2\]"):
        multibox_loss(loc, conf[..., :1], ANCHORS, [FACE])
