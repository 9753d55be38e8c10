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


def _sequential_multiscale(detector: Detector, image: np.ndarray) -> np.ndarray:
    """The multi-scale test one pass at a time, from public parts (the oracle)."""
    from dsfd.nms import box_vote
    from dsfd.postprocess import postprocess_shot
    from dsfd.preprocess import normalize, resize_uint8

    pixels = image_to_tensor(image)
    width = pixels.shape[-1]
    dets = []
    for p in multiscale_passes(int(pixels.shape[1]), width):
        img = pixels.flip(-1) if p.flip else pixels
        if p.scale != 1.0:
            img = resize_uint8(img, p.scale)
        x = normalize(img, detector.input_format)[None]
        with torch.inference_mode():
            shot = detector.model(x).second
        d = postprocess_shot(shot, x.shape[-2:], detector.anchor_spec, detector.config, None)[0]
        d = torch.cat((d[:, :4] / p.scale, d[:, 4:]), dim=1)
        if d.shape[0] == 0:
            d = d.new_tensor([[0.0, 0.0, 0.0, 0.0, 0.001]])
        dets.append(size_filter(unflip(d, width) if p.flip else d, p.keep))
    voted = box_vote(torch.cat(dets), detector.config.vote_thresh,
                     detector.config.post_nms_top_k)
    return voted.numpy().astype(np.float32)


def test_batched_passes_equal_sequential(detector: Detector) -> None:
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, hw, dtype=np.uint8)
              for hw in ((40, 56, 3), (40, 56, 3), (48, 36, 3))]
    batched = Detector(detector.model, batch_size=8)
    forwards = []
    hook = batched.model.register_forward_hook(lambda m, i, o: forwards.append(i[0].shape[0]))
    try:
        got = batched.detect_multiscale_batch(images)
    finally:
        hook.remove()
    # 33 passes; the flip shares the original's forward, the two equal images share all
    assert sum(forwards) == 33 and len(forwards) == 20 and max(forwards) == 4
    for image, boxes in zip(images, got, strict=True):
        want = _sequential_multiscale(detector, image)
        assert len(want) > 50
        np.testing.assert_allclose(boxes, want, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(batched.detect_multiscale(image), want, rtol=1e-4, atol=1e-3)
    one_by_one = Detector(detector.model, batch_size=1)
    np.testing.assert_array_equal(one_by_one.detect_multiscale_batch(images[:1])[0],
                                  _sequential_multiscale(detector, images[0]))
    with pytest.raises(TypeError, match="list of images"):
        batched.detect_multiscale_batch(images[0])  # type: ignore[arg-type]
