"""Golden anchors for small inputs and the conv arithmetic of the feature sizes."""

from __future__ import annotations

import pytest
import torch

from dsfd.anchors import (
    FIRST_SHOT_ANCHORS,
    RELEASE_ANCHORS,
    RELEASE_BODY_ANCHORS,
    RELEASE_HEAD_ANCHORS,
    SECOND_SHOT_ANCHORS,
    AnchorSpec,
    cached_anchors,
    feature_sizes,
    make_anchors,
)

HALF_W16 = 6.531972647421808  # 16 / sqrt(1.5) / 2
HALF_H16 = 9.797958971132712  # 16 * sqrt(1.5) / 2


def test_feature_sizes_reference_example() -> None:
    # dsfd_reference.md section 3.1: 333x517 gives 84x130, 42x65, 21x33, 11x17, 6x9, 3x5
    got = feature_sizes((333, 517), SECOND_SHOT_ANCHORS.strides)
    assert got == [(84, 130), (42, 65), (21, 33), (11, 17), (6, 9), (3, 5)]
    assert feature_sizes((640, 640), (4, 128)) == [(160, 160), (5, 5)]


def test_count_at_640_matches_table_1() -> None:
    anchors = make_anchors(SECOND_SHOT_ANCHORS, (640, 640))
    assert anchors.shape == (34125, 4)
    assert anchors.dtype == torch.float32


def test_golden_second_shot_64() -> None:
    anchors = make_anchors(SECOND_SHOT_ANCHORS, (64, 64))
    assert anchors.shape == (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1 + 1, 4)
    first = [2 - HALF_W16, 2 - HALF_H16, 2 + HALF_W16, 2 + HALF_H16]
    second = [6 - HALF_W16, 2 - HALF_H16, 6 + HALF_W16, 2 + HALF_H16]  # next column (x first)
    row2 = [2 - HALF_W16, 6 - HALF_H16, 2 + HALF_W16, 6 + HALF_H16]  # index 16: next row
    torch.testing.assert_close(anchors[0], torch.tensor(first))
    torch.testing.assert_close(anchors[1], torch.tensor(second))
    torch.testing.assert_close(anchors[16], torch.tensor(row2))
    # level 1 starts at 256: stride 8, size 32 at centre (4, 4)
    torch.testing.assert_close(
        anchors[256], torch.tensor([4 - 2 * HALF_W16, 4 - 2 * HALF_H16,
                                    4 + 2 * HALF_W16, 4 + 2 * HALF_H16])
    )
    # last level: stride 128 on a 1x1 map, centre (64, 64), size 512 (unclipped)
    torch.testing.assert_close(
        anchors[-1], torch.tensor([64 - 32 * HALF_W16, 64 - 32 * HALF_H16,
                                   64 + 32 * HALF_W16, 64 + 32 * HALF_H16])
    )


def test_first_shot_is_half() -> None:
    a1 = make_anchors(FIRST_SHOT_ANCHORS, (64, 96))
    a2 = make_anchors(SECOND_SHOT_ANCHORS, (64, 96))
    torch.testing.assert_close((a1[:, 2:] - a1[:, :2]) * 2, a2[:, 2:] - a2[:, :2])
    torch.testing.assert_close(a1[:, :2] + a1[:, 2:], a2[:, :2] + a2[:, 2:])  # same centres


def test_release_clip_golden() -> None:
    anchors = make_anchors(RELEASE_ANCHORS, (64, 64))
    # 1x1 map at stride 128: centre 64/64 = 1.0, w and h clamped to 1.0 -> 64 px
    torch.testing.assert_close(anchors[-1], torch.tensor([32.0, 32.0, 96.0, 96.0]))
    # level 0 anchors lie inside [0, 1] in centre form: unchanged
    torch.testing.assert_close(anchors[0], make_anchors(SECOND_SHOT_ANCHORS, (64, 64))[0])


def test_release_head_and_body_anchors() -> None:
    # dsfd_reference.md section 3.5: 8,525 head and 2,125 body anchors at 640x640
    assert make_anchors(RELEASE_HEAD_ANCHORS, (640, 640)).shape == (8525, 4)
    assert make_anchors(RELEASE_BODY_ANCHORS, (640, 640)).shape == (2125, 4)
    face = make_anchors(RELEASE_ANCHORS, (640, 640))
    head = make_anchors(RELEASE_HEAD_ANCHORS, (640, 640))
    body = make_anchors(RELEASE_BODY_ANCHORS, (640, 640))
    # Head level 1 (stride 8) is half the face anchor of level 1: size 16 at centre (4, 4).
    torch.testing.assert_close(head[0], torch.tensor([4 - HALF_W16, 4 - HALF_H16,
                                                      4 + HALF_W16, 4 + HALF_H16]))
    torch.testing.assert_close((head[0, 2:] - head[0, :2]) * 2, face[25600, 2:] - face[25600, :2])
    # Body level 2 (stride 16) is a quarter of the face anchor of level 2: size 16 at (8, 8).
    torch.testing.assert_close(body[0], torch.tensor([8 - HALF_W16, 8 - HALF_H16,
                                                      8 + HALF_W16, 8 + HALF_H16]))
    torch.testing.assert_close(body[-1], face[-1] / 4 + 3 * 576 / 4)  # centre 576, size 128


def test_release_clip_centre_beyond_edge() -> None:
    # 10 px wide: the stride-4 map has 3 columns; the last centre (10.0) is exactly 1.0, fine;
    # 11 px: ceil(11/4) = 3 columns, centre 10 < 11. 9 px: 3 columns, centre 10 > 9 -> clamp 9.
    anchors = make_anchors(RELEASE_ANCHORS, (4, 9))
    cx = (anchors[2, 0] + anchors[2, 2]) / 2
    torch.testing.assert_close(cx, torch.tensor(9.0))


def test_explicit_feature_sizes_and_cache() -> None:
    hw = [(3, 4), (2, 2), (1, 1), (1, 1), (1, 1), (1, 1)]
    anchors = make_anchors(SECOND_SHOT_ANCHORS, (12, 16), hw)
    assert anchors.shape == (12 + 4 + 4, 4)
    cached = cached_anchors(SECOND_SHOT_ANCHORS, (12, 16), hw)
    assert torch.equal(cached, anchors)
    assert cached_anchors(SECOND_SHOT_ANCHORS, (12, 16), hw) is cached


def test_bad_spec_and_sizes() -> None:
    with pytest.raises(ValueError, match="sizes"):
        AnchorSpec(sizes=(16, 32), strides=(4,))
    with pytest.raises(ValueError, match="power of two"):
        feature_sizes((64, 64), (3,))
    with pytest.raises(ValueError, match="height, width"):
        make_anchors(SECOND_SHOT_ANCHORS, (0, 64))
