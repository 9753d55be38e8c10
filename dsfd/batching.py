"""Size buckets, padding and memory estimates for batched inference.

Images of different sizes share a forward when they are padded (bottom and right, with zeros
of the network input, i.e. the mean colour) to the same size. A bucket is the image size
rounded up to a multiple of the network's largest stride, so the feature maps of every image
in it have the same grid; the post-processing masks anchors centred in the padding
(:func:`dsfd.postprocess.padding_mask`), so padding yields no detections. Results of a padded
image are the same whichever images share its batch (tests: batched == single, bucketed ==
unbucketed).

Memory: the activations of a forward grow with ``batch * H * W`` of the padded input. A
model's bytes per input pixel are calibrated once (:func:`activation_bytes_per_pixel`, the
sum of every module output's bytes on a small input: an upper bound of what a no-grad forward
holds at once), and :func:`split_to_budget` cuts a bucket's batch so that its estimate stays
within a budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def bucket_hw(hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """``(H, W)`` rounded up to multiples of ``stride``."""
    return (math.ceil(hw[0] / stride) * stride, math.ceil(hw[1] / stride) * stride)


def pad_batch(tensors: Sequence[Tensor], hw: tuple[int, int]) -> Tensor:
    """``[N, C, H, W]``: each ``[C, h, w]`` tensor (``h <= H``, ``w <= W``) at the top left,
    zeros in the rest."""
    first = tensors[0]
    out = first.new_zeros((len(tensors), first.shape[0], *hw))
    for i, t in enumerate(tensors):
        out[i, :, :t.shape[1], :t.shape[2]] = t
    return out


def activation_bytes_per_pixel(model: nn.Module, *, side: int = 256,
                               device: torch.device | str = "cpu") -> float:
    """Bytes of all module outputs of one forward per input pixel (``side x side``, batch 1).

    Each leaf module's output is counted once (float32 on ``device``); the figure scales
    with ``batch * H * W`` for the fully convolutional models of :mod:`dsfd`.
    """
    total = 0

    def count(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        if isinstance(output, Tensor):
            total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(count) for m in model.modules()
               if not list(m.children())]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, side, side, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return total / (side * side)


def split_to_budget(members: Sequence[int], hw: tuple[int, int], bytes_per_pixel: float,
                    budget_bytes: float | None, batch_size: int) -> list[list[int]]:
    """Consecutive chunks of ``members`` of at most ``batch_size`` images each, fewer where
    ``batch * H * W * bytes_per_pixel`` would pass ``budget_bytes`` (an image alone always
    runs: one image cannot be split)."""
    per_image = hw[0] * hw[1] * bytes_per_pixel
    size = batch_size
    if budget_bytes is not None and per_image > 0:
        size = max(1, min(batch_size, int(budget_bytes // per_image)))
    return [list(members[i:i + size]) for i in range(0, len(members), size)]
