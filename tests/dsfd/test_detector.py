"""The Detector API on small random models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dsfd import Detector, PostprocessConfig, build_model
from dsfd.preprocess import image_to_tensor, resize_uint8


@pytest.fixture(scope="module")
def detector() -> Detector:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    return Detector(build_model("vgg16", width=0.125))


def _image(seed: int, hw: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


def test_detect_contract(detector: Detector) -> None:
    images = [_image(0), _image(1, (40, 56)), _image(2)]
    results = detector.detect(images)
    assert len(results) == 3
    for dets in results:
        assert dets.dtype == np.float32 and dets.ndim == 2 and dets.shape[1] == 5
        assert 0 < len(dets) <= 750
        assert (np.diff(dets[:, 4]) <= 0).all()
        assert (dets[:, 4] > 0.01).all() and (dets[:, 2] > dets[:, 0]).all()


def test_batching_equals_single(detector: Detector) -> None:
    a, b = _image(3), _image(4)
    together = detector.detect([a, b])
    alone = [detector.detect([a])[0], detector.detect([b])[0]]
    for x, y in zip(together, alone, strict=True):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-3)


def test_prepare_halves_equal_detect(detector: Detector) -> None:
    img = _image(5)
    tensors = [detector.prepare(img)]
    assert tensors[0].shape == (3, 48, 64) and tensors[0].dtype == torch.float32
    np.testing.assert_array_equal(detector.detect_prepared(tensors, [(48, 64)])[0],
                                  detector.detect([img])[0])


def test_input_kinds_agree(detector: Detector) -> None:
    img = _image(6)
    gray = img[..., 0]
    as_rgb = np.repeat(gray[..., None], 3, axis=2)
    np.testing.assert_array_equal(detector.detect([gray])[0], detector.detect([as_rgb])[0])
    np.testing.assert_array_equal(detector.detect([Image.fromarray(img)])[0],
                                  detector.detect([img])[0])


def test_max_size_maps_back_to_original(detector: Detector) -> None:
    img = _image(7, (64, 96))
    got = detector.detect([img], max_size=48)[0]
    small = resize_uint8(image_to_tensor(img), 0.5)  # 64x96 -> 32x48
    want = detector.detect_prepared([detector.prepare(img, scale=0.5)], [(64, 96)])[0]
    assert small.shape == (3, 32, 48)
    np.testing.assert_array_equal(got, want)
    raw = detector.detect_prepared([detector.prepare(img, scale=0.5)], [(32, 48)])[0]
    np.testing.assert_allclose(got[:, :4], raw[:, :4] * 2, rtol=1e-6)


def test_post_nms_cap_and_threshold() -> None:
    torch.manual_seed(1)
    model = build_model("vgg16", width=0.125)
    capped = Detector(model, config=PostprocessConfig(post_nms_top_k=3))
    assert len(capped.detect([_image(8)])[0]) <= 3
    strict = Detector(model, config=PostprocessConfig(score_thresh=0.999999))
    assert strict.detect([_image(8)])[0].shape == (0, 5)


def test_release_model_in_detector() -> None:
    torch.manual_seed(2)
    det = Detector(build_model("release-r152", width=0.0625))
    assert det.input_format == "bgr_mean"
    out = det.detect([_image(9)])[0]
    assert out.shape[1] == 5 and np.isfinite(out).all()


def test_bad_arguments(detector: Detector) -> None:
    with pytest.raises(TypeError, match="list of images"):
        detector.detect(_image(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_size"):
        detector.detect([_image(0)], max_size=4)
    with pytest.raises(ValueError, match="sizes"):
        detector.detect_prepared([detector.prepare(_image(0))], [])
    with pytest.raises(TypeError, match="PostprocessConfig"):
        Detector(detector.model, config={"score_thresh": 0.5})  # type: ignore[arg-type]
