"""Image to network input: RGB conversion, cv2-like bilinear resize, colour order and mean.

Input formats (``model.input_format``):

- ``"bgr_mean"``: BGR, minus (104, 117, 123), no scaling (the official checkpoint).
- ``"rgb_imagenet"``: RGB / 255, minus (0.485, 0.456, 0.406), divided by (0.229, 0.224, 0.225)
  (torchvision's ImageNet backbones, which the paper-faithful models start from).

Resizing follows ``cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)`` on a
uint8 image: output side ``round(n * s)`` (half to even, as ``cvRound``), source coordinate
``(d + 0.5) / s - 0.5`` clamped at the borders (torch's bilinear with ``align_corners=False``,
given the scale itself rather than the size ratio, and no antialias), result rounded back to
uint8. OpenCV computes the weights in 11-bit fixed point, so single pixels may differ by 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

BGR_MEAN: tuple[float, float, float] = (104.0, 117.0, 123.0)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def to_rgb_array(image: Any) -> np.ndarray:
    """An image as ``[H, W, 3]`` uint8 RGB.

    Args:
        image: ``[H, W, 3]`` uint8 RGB array, ``[H, W]`` uint8 grayscale array, or a
            ``PIL.Image`` of any mode convertible to RGB.

    Returns:
        ``[H, W, 3]`` uint8 C-contiguous array.
    """
    if hasattr(image, "convert") and hasattr(image, "size") and not isinstance(image, np.ndarray):
        try:
            image = np.array(image.convert("RGB"))  # a writable copy
        except (ValueError, OSError) as exc:
            mode = getattr(image, "mode", "?")
            raise ValueError(f"cannot convert PIL image of mode {mode!r} to RGB: {exc}") from exc
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a numpy array or PIL.Image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] RGB or [H, W] grayscale image, "
                         f"got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {image.shape}")
    if not image.flags.writeable:
        image = image.copy()
    return np.ascontiguousarray(image)


def resized_hw(hw: tuple[int, int], scale: float) -> tuple[int, int]:
    """Output ``(H, W)`` of :func:`resize_uint8`: ``round(n * scale)``, at least 1."""
    return max(1, round(hw[0] * scale)), max(1, round(hw[1] * scale))


def resize_uint8(image_chw: Tensor, scale: float) -> Tensor:
    """cv2-like bilinear resize of ``[3, H, W]`` uint8-valued pixels by ``scale``.

    Args:
        image_chw: ``[3, H, W]`` float (values 0..255) or uint8.
        scale: the factor ``fx = fy``.

    Returns:
        ``[3, round(H*scale), round(W*scale)]`` float32 with integral values in 0..255.
    """
    if scale <= 0:
        raise ValueError(f"resize scale must be positive, got {scale}")
    x = image_chw.float()[None]  # [1, 3, H, W]
    out_hw = resized_hw((x.shape[-2], x.shape[-1]), scale)
    if out_hw == tuple(x.shape[-2:]) and scale == 1.0:
        return x[0]
    y = torch.ops.aten.upsample_bilinear2d(x, list(out_hw), False, scale, scale)
    return y[0].round_().clamp_(0, 255)


def normalize(image_chw: Tensor, input_format: str) -> Tensor:
    """``[3, H, W]`` RGB pixel values (0..255, float) -> network input of ``input_format``."""
    if input_format == "bgr_mean":
        mean = torch.tensor(BGR_MEAN, dtype=torch.float32, device=image_chw.device)
        return image_chw.flip(0) - mean[:, None, None]  # RGB -> BGR, minus mean
    if input_format == "rgb_imagenet":
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=image_chw.device)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=image_chw.device)
        return (image_chw / 255.0 - mean[:, None, None]) / std[:, None, None]
    raise ValueError(f"unknown input_format {input_format!r}; expected 'bgr_mean' or "
                     "'rgb_imagenet'")


def image_to_tensor(image: Any) -> Tensor:
    """Any accepted image -> ``[3, H, W]`` float32 RGB pixel values 0..255."""
    rgb = to_rgb_array(image)
    return torch.from_numpy(rgb).permute(2, 0, 1).float()  # [H, W, 3] -> [3, H, W]
