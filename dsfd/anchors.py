"""Anchors of the two shots: one 1.5:1 (h/w) anchor per feature-map cell.

Table 1 of the paper: strides 4..128 on six maps; the second shot (enhanced maps ef1..ef6) uses
sizes 16..512, the first shot (original maps of1..of6) half of that, 8..256. An anchor of size
``s`` has ``w = s / sqrt(ratio)`` and ``h = s * sqrt(ratio)`` and is centred at
``((j + 0.5) * stride, (i + 0.5) * stride)`` for cell row ``i``, column ``j``: centres follow the
stride, not the feature-map size, as in the reference ``PriorBox``. Anchors are laid out level 0
first, row-major (y then x) within a level, one per cell.

``clip=True`` reproduces the released model's prior box: the *normalised* centre form
``(cx/W, cy/H, w/W, h/H)`` is clamped to ``[0, 1]`` before converting back to xyxy pixels. It only
changes anchors larger than the input or centres beyond the right/bottom edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

DEFAULT_STRIDES: tuple[int, ...] = (4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class AnchorSpec:
    """Anchor settings of one shot.

    Attributes:
        sizes: anchor scale ``s`` in input pixels, one per level.
        strides: stride of each level in input pixels.
        ratio: height / width of every anchor (1.5 in the paper).
        clip: clamp the normalised centre form to ``[0, 1]`` (the release's prior box).
    """

    sizes: tuple[float, ...]
    strides: tuple[int, ...]
    ratio: float = 1.5
    clip: bool = False

    def __post_init__(self) -> None:
        if len(self.sizes) != len(self.strides):
            raise ValueError(
                f"AnchorSpec: {len(self.sizes)} sizes but {len(self.strides)} strides"
            )
        if any(s <= 0 for s in self.sizes) or any(int(t) <= 0 for t in self.strides):
            raise ValueError(f"AnchorSpec: sizes {self.sizes} and strides {self.strides} "
                             "must be positive")
        if self.ratio <= 0:
            raise ValueError(f"AnchorSpec: ratio must be positive, got {self.ratio}")


SECOND_SHOT_ANCHORS = AnchorSpec(sizes=(16, 32, 64, 128, 256, 512), strides=DEFAULT_STRIDES)
FIRST_SHOT_ANCHORS = AnchorSpec(sizes=(8, 16, 32, 64, 128, 256), strides=DEFAULT_STRIDES)
RELEASE_ANCHORS = AnchorSpec(
    sizes=(16, 32, 64, 128, 256, 512), strides=DEFAULT_STRIDES, ratio=1.5, clip=True
)
# The release's training-only "progressive anchors" (``face_ssd.py`` head/body priors): the same
# prior box called with ``min_sizes[:-1]`` on levels 1..5 (head) and ``min_sizes[:-2]`` on
# levels 2..5 (body), i.e. 1/2 and 1/4 of the face anchor of each level.
RELEASE_HEAD_ANCHORS = AnchorSpec(
    sizes=(16, 32, 64, 128, 256), strides=DEFAULT_STRIDES[1:], ratio=1.5, clip=True
)
RELEASE_BODY_ANCHORS = AnchorSpec(
    sizes=(16, 32, 64, 128), strides=DEFAULT_STRIDES[2:], ratio=1.5, clip=True
)


def _check_hw(name: str, hw: Sequence[int]) -> tuple[int, int]:
    if len(hw) != 2 or any(int(v) != v or v <= 0 for v in hw):
        raise ValueError(f"{name}: expected (height, width) of positive ints, got {hw!r}")
    return int(hw[0]), int(hw[1])


def feature_sizes(image_hw: Sequence[int], strides: Sequence[int]) -> list[tuple[int, int]]:
    """Feature-map sizes of the backbones for an input size.

    Every stride-2 step of the networks (7x7/2 pad 3 stem, 3x3/2 pad 1 max pool and convs,
    2x2/2 ceil-mode pools) maps a side ``n`` to ``ceil(n / 2)``, so the map at stride ``2^k``
    has side ``ceil(n / 2^k)`` (repeated ceil-halving equals one ceil division).

    Args:
        image_hw: input ``(height, width)`` in pixels.
        strides: powers of two, e.g. ``(4, 8, 16, 32, 64, 128)``.

    Returns:
        ``[(h_k, w_k), ...]`` one per stride.
    """
    h, w = _check_hw("image_hw", image_hw)
    out = []
    for stride in strides:
        if stride <= 0 or stride & (stride - 1):
            raise ValueError(f"feature_sizes: stride must be a power of two, got {stride}")
        out.append((-(-h // stride), -(-w // stride)))
    return out


def make_anchors(
    spec: AnchorSpec,
    image_hw: Sequence[int],
    feature_hw: Sequence[Sequence[int]] | None = None,
) -> Tensor:
    """All anchors of one shot for one input size.

    Args:
        spec: sizes, strides, ratio and clipping.
        image_hw: input ``(height, width)`` in pixels.
        feature_hw: the real feature-map sizes (one per level); computed with
            :func:`feature_sizes` when omitted.

    Returns:
        ``[A, 4]`` float32 xyxy pixels, ``A = sum(h_k * w_k)``, level 0 first, row-major.
    """
    img_h, img_w = _check_hw("image_hw", image_hw)
    levels = feature_sizes(image_hw, spec.strides) if feature_hw is None else feature_hw
    if len(levels) != len(spec.sizes):
        raise ValueError(f"make_anchors: {len(levels)} feature maps for {len(spec.sizes)} sizes")
    sqrt_ratio = math.sqrt(spec.ratio)
    per_level = []
    for (fh, fw), size, stride in zip(levels, spec.sizes, spec.strides, strict=True):
        fh, fw = _check_hw("feature_hw", (fh, fw))
        cy = (torch.arange(fh, dtype=torch.float64) + 0.5) * stride  # [fh]
        cx = (torch.arange(fw, dtype=torch.float64) + 0.5) * stride  # [fw]
        cy, cx = torch.meshgrid(cy, cx, indexing="ij")  # [fh, fw] each, row-major
        w = torch.full_like(cx, size / sqrt_ratio)
        h = torch.full_like(cx, size * sqrt_ratio)
        per_level.append(torch.stack((cx, cy, w, h), dim=-1).reshape(-1, 4))  # [fh*fw, 4]
    centre = torch.cat(per_level)  # [A, 4] cx, cy, w, h in pixels
    if spec.clip:
        scale = torch.tensor([img_w, img_h, img_w, img_h], dtype=torch.float64)
        centre = (centre / scale).float().clamp(0.0, 1.0).double() * scale
    x1 = centre[:, 0] - centre[:, 2] / 2
    y1 = centre[:, 1] - centre[:, 3] / 2
    return torch.stack((x1, y1, x1 + centre[:, 2], y1 + centre[:, 3]), dim=-1).float()


@lru_cache(maxsize=256)
def _cached(
    spec: AnchorSpec,
    image_hw: tuple[int, int],
    feature_hw: tuple[tuple[int, int], ...],
    device: str,
) -> Tensor:
    return make_anchors(spec, image_hw, feature_hw).to(device)


def cached_anchors(
    spec: AnchorSpec,
    image_hw: Sequence[int],
    feature_hw: Sequence[Sequence[int]],
    device: torch.device | str = "cpu",
) -> Tensor:
    """:func:`make_anchors`, memoised per (spec, input size, feature sizes, device).

    The returned tensor is shared between callers: do not modify it in place.
    """
    key_hw = tuple((int(h), int(w)) for h, w in feature_hw)
    return _cached(spec, (int(image_hw[0]), int(image_hw[1])), key_hw, str(torch.device(device)))
