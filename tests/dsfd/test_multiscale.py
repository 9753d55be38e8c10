"""The official multi-scale schedule, its size filters and the flip pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsfd import Detector, build_model
from dsfd.multiscale import (
    KEEP_ALL,
    KEEP_LARGE,
    KEEP_SMALL,
    max_image_shrink,
    multiscale_passes,
    size_filter,
    unflip,
)
from dsfd.preprocess import image_to_tensor


def test_schedule_typical_wider_image() -> None:
    passes = multiscale_passes(683, 1024)
    assert max_image_shrink(683, 1024) == 3.0
    got = [(p.scale, p.flip, p.keep) for p in passes]
    assert got == [
        (1.0, False, KEEP_ALL), (1.0, True, KEEP_ALL),
        (0.5, False, KEEP_LARGE), (0.75, False, KEEP_LARGE),
        (2.0, False, KEEP_SMALL), (1.5, False, KEEP_SMALL), (3.0, False, KEEP_SMALL),
        (0.25, False, KEEP_LARGE),
        (1.25, False, KEEP_SMALL), (1.75, False, KEEP_SMALL), (2.25, False, KEEP_SMALL),
    ]


def test_schedule_large_image_bounded() -> None:
    # 4000 x 3000 = 12 Mpx: max shrink sqrt(10.737e6 / 12e6) ~ 0.946 < 1
    top = max_image_shrink(3000, 4000)
    assert top == pytest.approx(((2**31 - 1) / 200 / 12e6) ** 0.5)
    got = [(round(p.scale, 6), p.flip, p.keep) for p in multiscale_passes(3000, 4000)]
    bt = (0.5 + top) / 2
    assert got == [
        (round(top, 6), False, KEEP_ALL), (round(top, 6), True, KEEP_ALL),
        (0.5, False, KEEP_LARGE), (0.75, False, KEEP_LARGE),
        (round(bt, 6), False, KEEP_LARGE),
        (0.25, False, KEEP_LARGE),
    ]


def test_schedule_doubling_chain() -> None:
    # max shrink 3 with bt = 2 doubles to 4 > 3: no chain pass; an image bound at 2.5 likewise;
    # the chain only adds a pass when 2*bt < max, impossible with the cap at 3 -> check 2.5
    size = int((2**31 - 1) / 200 / 2.5**2)
    top = max_image_shrink(1, size)
    scales = [p.scale for p in multiscale_passes(1, size)]
    assert scales[4:7] == [2.0, 1.5, pytest.approx(top)]
    assert 2.25 in scales and 1.75 in scales


def test_size_filters_use_plus_one() -> None:
    dets = torch.tensor([[0.0, 0.0, 29.0, 5.0, 0.9],   # w = 30: not > 30
                         [0.0, 0.0, 30.0, 5.0, 0.9],   # w = 31
                         [0.0, 0.0, 98.0, 200.0, 0.9],  # min side 99 < 100
                         [0.0, 0.0, 99.0, 200.0, 0.9]])  # min side 100
    assert size_filter(dets, KEEP_LARGE)[:, 2].tolist() == [30.0, 98.0, 99.0]
    assert size_filter(dets, KEEP_SMALL)[:, 2].tolist() == [29.0, 30.0, 98.0]
    assert size_filter(dets, KEEP_ALL).shape == (4, 5)
    with pytest.raises(ValueError):
        size_filter(dets, "tiny")


def test_unflip_golden() -> None:
    dets = torch.tensor([[10.0, 1.0, 30.0, 2.0, 0.5]])
    assert unflip(dets, 100).tolist() == [[70.0, 1.0, 90.0, 2.0, 0.5]]


@pytest.fixture(scope="module")
def detector() -> Detector:
    torch.manual_seed(3)
    torch.set_num_threads(1)
    return Detector(build_model("resnet50", width=0.0625))


def test_flip_pass_is_mirror_of_plain_pass_on_mirrored_image(detector: Detector) -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    pixels = image_to_tensor(img)
    mirrored = image_to_tensor(np.ascontiguousarray(img[:, ::-1]))
    for scale in (1.0, 0.75):
        flipped = detector.detect_pass(pixels, scale, flip=True)
        plain = detector.detect_pass(mirrored, scale, flip=False)
        torch.testing.assert_close(flipped, unflip(plain, 56))


def test_multiscale_flip_symmetry_on_symmetric_image(detector: Detector) -> None:
    # a left-right symmetric image: the flip pass is the mirror image of the plain pass, so the
    # merged result is the same set of boxes as the merged result of its mirror
    rng = np.random.default_rng(2)
    half = rng.integers(0, 256, (48, 32, 3), dtype=np.uint8)
    img = np.concatenate((half, half[:, ::-1]), axis=1)
    pixels = image_to_tensor(img)
    plain = detector.detect_pass(pixels, 1.0, flip=False)
    flipped = detector.detect_pass(pixels, 1.0, flip=True)
    torch.testing.assert_close(flipped, unflip(plain, 64))
    out = detector.detect_multiscale(img)
    assert out.dtype == np.float32 and out.ndim == 2 and out.shape[1] == 5
    assert len(out) <= 750
    assert (np.diff(out[:, 4]) <= 0).all()


def test_multiscale_empty_passes_give_placeholders(detector: Detector) -> None:
    strict = Detector(detector.model, config=type(detector.config)(score_thresh=0.999999))
    img = np.zeros((40, 40, 3), np.uint8)
    assert strict.detect_pass(image_to_tensor(img), 1.0, False).tolist() == [
        [0.0, 0.0, 0.0, 0.0, pytest.approx(0.001)]]
    # as the official script: the orig placeholder [0,0,0,0] groups with those of the 2x, 1.5x,
    # 3x passes (kept by min side < 100); the flipped one lands at [40,0,40,0] alone
    out = strict.detect_multiscale(img)
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.0, 0.0, 0.001]], rtol=1e-6)
