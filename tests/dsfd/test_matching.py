"""Anchor matching: thresholds, forced best anchors, ignore band, no faces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsfd.anchors import SECOND_SHOT_ANCHORS, make_anchors
from dsfd.boxes import box_iou
from dsfd.matching import MatchConfig, match_anchors


def test_golden_small_case() -> None:
    anchors = torch.tensor(
        [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [100, 100, 110, 110]],
        dtype=torch.float32,
    )
    faces = torch.tensor([[0, 0, 10, 10], [22, 22, 32, 32]], dtype=torch.float32)
    m = match_anchors(anchors, faces)
    # IoUs: a0-f0 1.0; a1-f0 50/150=1/3; a2-f1 64/136=0.47; a3 0.
    assert m.labels.tolist() == [1, 0, 1, 0]
    assert m.matched_index[[0, 2]].tolist() == [0, 1]
    torch.testing.assert_close(m.iou, torch.tensor([1.0, 1 / 3, 64 / 136, 0.0]))
    assert m.num_matched_per_face(2).tolist() == [1, 1]


def test_threshold_is_inclusive_and_best_anchor_forced() -> None:
    anchors = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 4], [50, 50, 60, 60]], dtype=torch.float32)
    faces = torch.tensor([[0, 0, 10, 10], [50, 50, 80, 80]], dtype=torch.float32)
    m = match_anchors(anchors, faces)
    # a1 has IoU exactly 0.4 with f0: positive. f1's best anchor a2 has IoU 1/9: forced.
    assert m.labels.tolist() == [1, 1, 1]
    assert m.matched_index.tolist() == [0, 0, 1]
    no_force = match_anchors(anchors, faces, MatchConfig(force_best_anchor=False))
    assert no_force.labels.tolist() == [1, 1, 0]


def test_ignore_band() -> None:
    anchors = torch.tensor(
        [[0, 0, 10, 10], [0, 0, 10, 3.5], [0, 0, 10, 2], [0, 0, 10, 1]], dtype=torch.float32
    )
    faces = torch.tensor([[0, 0, 10, 10]], dtype=torch.float32)
    m = match_anchors(anchors, faces, MatchConfig(pos_thresh=0.4, neg_thresh=0.15))
    # IoUs 1, 0.35, 0.2, 0.1
    assert m.labels.tolist() == [1, -1, -1, 0]


def test_no_faces_all_negative() -> None:
    anchors = make_anchors(SECOND_SHOT_ANCHORS, (64, 64))
    m = match_anchors(anchors, torch.zeros((0, 4)))
    assert (m.labels == 0).all() and (m.matched_index == -1).all() and (m.iou == 0).all()
    assert m.num_matched_per_face(0).tolist() == []


def test_shared_best_anchor_goes_to_larger_iou() -> None:
    anchors = torch.tensor([[0, 0, 10, 10], [100, 100, 200, 200]], dtype=torch.float32)
    faces = torch.tensor([[0, 0, 30, 30], [0, 0, 12, 12]], dtype=torch.float32)
    m = match_anchors(anchors, faces)
    assert m.labels.tolist() == [1, 0] and m.matched_index[0].item() == 1


def test_against_loop_reference_on_random_cases() -> None:
    rng = np.random.default_rng(0)
    anchors = make_anchors(SECOND_SHOT_ANCHORS, (128, 128))
    for _ in range(30):
        n = int(rng.integers(1, 8))
        xy = rng.uniform(0, 120, size=(n, 2))
        wh = rng.uniform(4, 80, size=(n, 2))
        faces = torch.tensor(np.concatenate([xy, xy + wh], 1), dtype=torch.float32)
        cfg = MatchConfig(pos_thresh=0.4, neg_thresh=0.3)
        m = match_anchors(anchors, faces, cfg)
        iou = box_iou(faces, anchors).numpy()  # [G, A]
        labels = np.where(iou.max(0) >= 0.4, 1, np.where(iou.max(0) >= 0.3, -1, 0))
        index = iou.argmax(0)
        claims: dict[int, tuple[float, int]] = {}
        for g in range(n):
            a = int(iou[g].argmax())
            if iou[g, a] > 0 and (a not in claims or iou[g, a] > claims[a][0]):
                claims[a] = (float(iou[g, a]), g)
        for a, (_, g) in claims.items():
            labels[a], index[a] = 1, g
        assert m.labels.tolist() == labels.tolist()
        pos = labels == 1
        assert m.matched_index.numpy()[pos].tolist() == index[pos].tolist()
        # Every face that won its claim has at least one positive anchor.
        winners = sorted({g for _, g in claims.values()})
        assert (m.num_matched_per_face(n)[winners] >= 1).all()


def test_bad_config_and_shapes() -> None:
    with pytest.raises(ValueError, match="neg_thresh"):
        MatchConfig(pos_thresh=0.4, neg_thresh=0.5)
    with pytest.raises(ValueError, match=r"\[G, 4\]"):
        match_anchors(torch.zeros((3, 4)), torch.zeros((2, 5)))
