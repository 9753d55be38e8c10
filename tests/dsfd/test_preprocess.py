"""Image conversion and the cv2-like resize."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from dsfd.preprocess import image_to_tensor, normalize, resize_uint8, resized_hw, to_rgb_array


@pytest.mark.parametrize("scale", [0.25, 0.5, 0.75, 1.25, 2.0, 0.37])
@pytest.mark.parametrize("hw", [(37, 53), (64, 48)])
def test_resize_matches_cv2_inter_linear(scale: float, hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    want = cv2.resize(img, None, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    got = resize_uint8(image_to_tensor(img), scale).permute(1, 2, 0).numpy()
    assert got.shape == want.shape == (*resized_hw(hw, scale), 3)
    diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
    assert diff.max() <= 1  # OpenCV's 11-bit fixed-point weights
    assert diff.mean() < 0.2  # about 1 pixel value in 10 differs by 1 on noise images


def test_gray_and_pil_modes() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb = to_rgb_array(gray)
    assert rgb.shape == (3, 4, 3) and (rgb[..., 0] == gray).all() and (rgb[..., 2] == gray).all()
    for mode in ("L", "RGBA", "P", "CMYK", "I;16"):
        pil = Image.new(mode, (5, 3))
        assert to_rgb_array(pil).shape == (3, 5, 3)
    color = Image.new("RGB", (2, 2), (10, 20, 30))
    assert to_rgb_array(color)[0, 0].tolist() == [10, 20, 30]


def test_bad_images() -> None:
    with pytest.raises(TypeError, match="uint8"):
        to_rgb_array(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="grayscale"):
        to_rgb_array(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(TypeError, match="numpy array or PIL"):
        to_rgb_array("image.jpg")
    with pytest.raises(ValueError, match="empty"):
        to_rgb_array(np.zeros((0, 4, 3), np.uint8))


def test_normalize_formats() -> None:
    pixels = torch.tensor([124.0, 119.0, 107.0]).reshape(3, 1, 1)  # R, G, B
    # BGR minus (104, 117, 123): (107 - 104, 119 - 117, 124 - 123)
    assert normalize(pixels, "bgr_mean").flatten().tolist() == [3.0, 2.0, 1.0]
    imagenet = torch.tensor([0.485, 0.456 + 0.224, 0.406 - 0.225]).reshape(3, 1, 1) * 255
    torch.testing.assert_close(normalize(imagenet, "rgb_imagenet").flatten(),
                               torch.tensor([0.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="input_format"):
        normalize(pixels, "yuv")
