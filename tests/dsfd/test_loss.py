"""Multibox and progressive anchor losses: hand-computed golden values, edge cases, the
release's auxiliary (head/body) losses."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from dsfd import build_model, load_model
from dsfd.anchors import (
    FIRST_SHOT_ANCHORS,
    RELEASE_BODY_ANCHORS,
    RELEASE_HEAD_ANCHORS,
    SECOND_SHOT_ANCHORS,
    make_anchors,
)
from dsfd.loss import LossConfig, detection_loss, multibox_loss, progressive_anchor_loss
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


def test_conf_normalizer_positives_or_positives_and_negatives() -> None:
    loc, conf = _golden_inputs()
    summed = 2 * (math.log(1 + math.e) - 1) + math.log(2)  # 1 positive + 2 mined negatives
    default = multibox_loss(loc, conf, ANCHORS, [FACE])
    assert LossConfig().conf_normalizer == "positives"
    assert default.conf.item() == pytest.approx(summed / 1, rel=1e-6)
    eq2 = multibox_loss(loc, conf, ANCHORS, [FACE],
                        LossConfig(conf_normalizer="positives+negatives"))
    assert eq2.conf.item() == pytest.approx(summed / 3, rel=1e-6)
    assert eq2.box.item() == pytest.approx(default.box.item(), rel=1e-6)  # box term: / N
    with pytest.raises(ValueError, match="conf_normalizer"):
        LossConfig(conf_normalizer="sampled")  # type: ignore[arg-type]


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


def test_detection_loss_of_a_paper_model_is_pal_on_both_shots() -> None:
    torch.manual_seed(0)
    model = build_model("vgg16", width=0.0625)
    x = torch.randn(1, 3, 64, 64)
    faces = [torch.tensor([[10.0, 12.0, 30.0, 40.0]])]
    out = model(x)
    pal = detection_loss(model, out, (64, 64), faces)
    want = progressive_anchor_loss(
        out.first, out.second,
        (make_anchors(FIRST_SHOT_ANCHORS, (64, 64)), make_anchors(SECOND_SHOT_ANCHORS, (64, 64))),
        faces,
    )
    assert pal.auxiliary == {} and pal.first is not None
    assert pal.total.item() == pytest.approx(want.total.item(), rel=1e-6)


def _seeded_release(tmp_path: Path) -> torch.nn.Module:
    """A small release-layout network loaded from a seeded bare state_dict (as the official
    file is loaded), in train mode as for fine-tuning."""
    torch.manual_seed(3)
    state = {k: v for k, v in build_model("release-r152", width=0.0625).state_dict().items()
             if not k.endswith("num_batches_tracked")}
    path = tmp_path / "release.pth"
    torch.save(state, path)
    model, info = load_model(f"release-r152:{path}")
    assert info.source == "official-state-dict"
    return model.train()


def test_release_auxiliary_losses_on_a_seeded_state_dict(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    model = _seeded_release(tmp_path)
    hw = (64, 64)
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(4))
    faces = [torch.tensor([[8.0, 6.0, 40.0, 50.0]]), torch.tensor([[20.0, 20.0, 36.0, 44.0]])]
    out = model(x)
    assert out.first is None and len(out.auxiliary) == 2
    pal = detection_loss(model, out, hw, faces)
    assert set(pal.auxiliary) == {"head", "body"}
    # Each branch is the plain multibox loss of its slice against the face boxes, with the
    # release's head (1/2 face size, levels 1..5) and body (1/4, levels 2..5) anchors.
    for (name, spec), shot in zip(
        (("head", RELEASE_HEAD_ANCHORS), ("body", RELEASE_BODY_ANCHORS)), out.auxiliary,
        strict=True,
    ):
        alone = multibox_loss(shot.loc, shot.conf, make_anchors(spec, hw), faces)
        part = pal.auxiliary[name]
        assert part.num_positives == alone.num_positives > 0
        assert part.total.item() == pytest.approx(alone.total.item(), rel=1e-6)
    expected = pal.second.total + pal.auxiliary["head"].total + pal.auxiliary["body"].total
    assert pal.total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert {"head_conf", "head_box", "body_conf", "body_positives"} <= set(pal.as_dict())
    pal.total.backward()
    # The head and body output channels of the heads now learn (face slices: loc 0:4, conf 0:4).
    loc1, conf2 = model.loc[1].conv4.weight.grad, model.conf[2].conv4.weight.grad
    assert loc1 is not None and conf2 is not None
    assert loc1[4:8].abs().sum() > 0 and conf2[4:6].abs().sum() > 0  # head (levels >= 1)
    assert model.loc[2].conv4.weight.grad[8:12].abs().sum() > 0  # body (levels >= 2)
    assert conf2[6:8].abs().sum() > 0


def test_release_without_auxiliary_weight_trains_the_face_branch_only(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    model = _seeded_release(tmp_path)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    faces = [torch.tensor([[8.0, 6.0, 40.0, 50.0]]), torch.zeros((0, 4))]
    out = model(x)
    pal = detection_loss(model, out, (64, 64), faces, LossConfig(auxiliary_weight=0.0))
    assert pal.auxiliary == {}
    assert pal.total.item() == pytest.approx(pal.second.total.item(), rel=1e-6)
    pal.total.backward()
    grad = model.loc[1].conv4.weight.grad
    assert grad is not None and grad[4:8].abs().sum() == 0 and grad[0:4].abs().sum() > 0
    with pytest.raises(ValueError, match="auxiliary_weight"):
        LossConfig(auxiliary_weight=-1.0)
