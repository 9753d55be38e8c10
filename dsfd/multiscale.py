"""The multi-scale test of the official WIDER FACE script (``widerface_val.py``).

Scales are bounded by the image size: ``max_im_shrink = min(3, sqrt((2^31 - 1) / 200 / (H*W)))``
(about 10.74 Mpx per pass). Passes, with the size filter applied to their boxes in original
pixels (``w = x2 - x1 + 1``, ``h = y2 - y1 + 1``):

1. ``shrink = min(max_im_shrink, 1)`` and the same on the mirrored image (no filter);
2. ``st`` (0.5, or ``0.5 * max_im_shrink`` below 0.75) and 0.75 if ``max_im_shrink > 0.75``:
   keep ``max(w, h) > 30``;
3. ``bt = min(2, max)`` if ``max > 1`` else ``(st + max) / 2``; 1.5 if ``max > 1.5``; if
   ``max > 2`` the doubling chain of ``bt`` below ``max`` and ``max`` itself: keep
   ``min(w, h) < 100`` when the final ``bt > 1``, else ``max(w, h) > 30``;
4. 0.25 (keep ``max(w, h) > 30``) and each of 1.25, 1.75, 2.25 that is ``<= max``
   (keep ``min(w, h) < 100``).

Everything is merged with box voting, and the best 750 are kept. For a typical WIDER image
(``max = 3``) that is 11 passes: 1, 1 flipped, 0.5, 0.75, 2, 1.5, 3, 0.25, 1.25, 1.75, 2.25.

As batched work (:meth:`dsfd.Detector.detect_multiscale_batch`): :func:`multiscale_jobs` lists
every pass of every image with its input size; passes of equal input size (the flipped pass
with its original, the same scale of equal-sized images) share a forward. Each pass's input
(:func:`pass_input`) and the treatment of its detections (:func:`pass_detections`) are the
same whether it runs alone or in a batch, so batched results equal sequential ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dsfd.preprocess import resize_uint8, resized_hw

KEEP_ALL = "all"
KEEP_LARGE = "max_side_gt_30"  # max(w, h) > 30
KEEP_SMALL = "min_side_lt_100"  # min(w, h) < 100


@dataclass(frozen=True)
class TestPass:
    """One forward pass of the multi-scale test."""

    scale: float
    flip: bool
    keep: str


def max_image_shrink(height: int, width: int) -> float:
    """The official bound on the scale: ``min(3, sqrt(0x7fffffff / 200 / (H * W)))``."""
    return min(3.0, (0x7FFFFFFF / 200.0 / (height * width)) ** 0.5)


def multiscale_passes(height: int, width: int) -> list[TestPass]:
    """The passes of the official schedule for an ``H x W`` image, in the script's order."""
    top = max_image_shrink(height, width)
    shrink = min(top, 1.0)
    passes = [TestPass(shrink, False, KEEP_ALL), TestPass(shrink, True, KEEP_ALL)]
    st = 0.5 if top >= 0.75 else 0.5 * top
    passes.append(TestPass(st, False, KEEP_LARGE))
    if top > 0.75:
        passes.append(TestPass(0.75, False, KEEP_LARGE))
    bt = min(2.0, top) if top > 1 else (st + top) / 2
    big = [bt]
    if top > 1.5:
        big.append(1.5)
    if top > 2:
        bt *= 2
        while bt < top:
            big.append(bt)
            bt *= 2
        big.append(top)
    keep_big = KEEP_SMALL if bt > 1 else KEEP_LARGE
    passes += [TestPass(s, False, keep_big) for s in big]
    passes.append(TestPass(0.25, False, KEEP_LARGE))
    passes += [TestPass(s, False, KEEP_SMALL if s > 1 else KEEP_LARGE)
               for s in (1.25, 1.75, 2.25) if s <= top]
    return passes


def size_filter(dets: Tensor, keep: str) -> Tensor:
    """Apply a pass's size filter to ``[N, 5]`` detections in original pixels (``+1`` sides)."""
    if keep == KEEP_ALL:
        return dets
    w = dets[:, 2] - dets[:, 0] + 1
    h = dets[:, 3] - dets[:, 1] + 1
    if keep == KEEP_LARGE:
        return dets[torch.maximum(w, h) > 30]
    if keep == KEEP_SMALL:
        return dets[torch.minimum(w, h) < 100]
    raise ValueError(f"unknown size filter {keep!r}")


def unflip(dets: Tensor, width: int) -> Tensor:
    """Map boxes found on the mirrored image back: ``x1' = W - x2``, ``x2' = W - x1`` (no -1)."""
    out = dets.clone()
    out[:, 0] = width - dets[:, 2]
    out[:, 2] = width - dets[:, 0]
    return out



@dataclass(frozen=True)
class PassJob:
    """One pass of one image of a multi-scale batch: ``input_hw`` is its network input size."""

    image: int
    index: int
    test_pass: TestPass
    input_hw: tuple[int, int]


def multiscale_jobs(sizes: Sequence[tuple[int, int]]) -> list[PassJob]:
    """Every pass of every image (``(H, W)`` each), image by image in the schedule's order."""
    jobs = []
    for image, hw in enumerate(sizes):
        for index, p in enumerate(multiscale_passes(*hw)):
            jobs.append(PassJob(image, index, p, hw if p.scale == 1.0 else
                                resized_hw(hw, p.scale)))
    return jobs


def pass_input(pixels: Tensor, test_pass: TestPass) -> Tensor:
    """``[3, H, W]`` RGB pixels (0..255) -> the pass's ``[3, h, w]`` pixels: mirrored first
    (as the official script does), then resized by the pass's scale."""
    img = pixels.flip(-1) if test_pass.flip else pixels
    return resize_uint8(img, test_pass.scale) if test_pass.scale != 1.0 else img


def pass_detections(dets: Tensor, test_pass: TestPass, width: int,
                    placeholder: Sequence[float]) -> Tensor:
    """A pass's ``[K, 5]`` detections in its input pixels -> original pixels: divided by the
    scale, ``placeholder`` (one box) when empty as the official ``detect_face`` returns it,
    mirrored back when flipped, then the pass's size filter."""
    dets = torch.cat((dets[:, :4] / test_pass.scale, dets[:, 4:]), dim=1)
    if dets.shape[0] == 0:  # as the official detect_face, before the flip is undone
        dets = dets.new_tensor([list(placeholder)])
    if test_pass.flip:
        dets = unflip(dets, width)
    return size_filter(dets, test_pass.keep)
