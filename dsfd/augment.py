"""Training augmentation: Improved Anchor Matching (IAM) and the SSD-style baseline.

Numpy in, numpy out, every random draw from a caller's ``np.random.Generator`` (so a seed fixes
the output). Images are ``uint8 [H, W, 3]`` BGR as OpenCV reads them; boxes are ``float32 [N, 4]``
xyxy pixels with edges on pixel boundaries (a box ``[0, 0, 2, 2]`` covers pixels 0 and 1).

Section 3.4 of the paper: with probability 2/5 *data-anchor-sampling* picks a face and crops a
square sub-image so that the face/sub-image size ratio becomes ``target / image_size`` with
``target`` drawn from the anchor sizes (16..512), so the face lands on an anchor scale after the
resize; otherwise SSD-style augmentation (photometric distortion, a random square crop that
keeps the faces whose centre falls inside, horizontal flip; SSD's zoom-out is off by default, as
in the official code, and ``expand_prob`` turns it on). Both end with a resize to the square
training size. The crop, the expand canvas and the resize are one affine map applied with
``cv2.warpAffine``, so boxes follow the pixels exactly (area outside the image is filled with the
mean colour, which is zero after mean subtraction).

The SSD-style crop follows the official ``RandomCrop`` options other than its anchor sampling:
``None`` (the square of the short side) and ``0.3``/``0.5`` (a square of 0.3..1 of the short
side), so a third of the SSD-style draws keep the whole short side (``whole_crop_prob``).

The anchor sampling follows the official DSFD "average sample" (see ``docs/training.md``): the
target is drawn uniformly from the anchor sizes that are not larger than the face's own bucket
(faces are shrunk or enlarged by at most one octave beyond their size), unless
``das_targets="paper"`` where every anchor size up to the training size may be drawn. Unlike the
official code, a crop that overhangs the image is padded with the mean rather than clipped, so
the square stays square and the face really becomes ``target`` pixels; targets whose crop would
be narrower than the face's longer side are not drawn (the face stays whole).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np

MEAN_BGR: tuple[float, float, float] = (104.0, 117.0, 123.0)


@dataclass(frozen=True)
class AugmentConfig:
    """Settings of :func:`augment`.

    Attributes:
        image_size: side of the square output in pixels (640 in the paper).
        policy: ``"iam"`` (data-anchor-sampling with ``anchor_sampling_prob``, else SSD) or
            ``"ssd"`` (SSD-style only: the baseline of the paper's Fig. 4/5).
        anchor_sampling_prob: probability of data-anchor-sampling under ``"iam"`` (2/5).
        anchor_sizes: the anchor sizes the sampling targets, pixels of the output.
        das_targets: ``"official"`` (targets up to the face's own bucket, as the official
            "average sample") or ``"paper"`` (any anchor size up to ``image_size``).
        photometric: apply the SSD photometric distortion.
        expand_prob: probability of the SSD zoom-out (image placed on a mean canvas). 0 by
            default: the official code and DSFD.pytorch have it off; SSD's 0.5 adds many tiny
            faces.
        max_expand_ratio: largest canvas/image side ratio of the zoom-out.
        whole_crop_prob: probability that an SSD-style crop is the square of the whole short
            side (1/3: the official "None" option, one of the three non-anchor options).
        min_crop_scale: smallest side of the SSD square crop, as a fraction of the short side.
        flip_prob: probability of a horizontal flip.
        min_face_size: boxes whose ``sqrt(w * h)`` in output pixels is below this are dropped.
        max_tries: attempts at an SSD crop that keeps a face before falling back to the whole
            image.
    """

    image_size: int = 640
    policy: Literal["iam", "ssd"] = "iam"
    anchor_sampling_prob: float = 0.4
    anchor_sizes: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    das_targets: Literal["official", "paper"] = "official"
    photometric: bool = True
    expand_prob: float = 0.0
    max_expand_ratio: float = 4.0
    whole_crop_prob: float = 1.0 / 3.0
    min_crop_scale: float = 0.3
    flip_prob: float = 0.5
    min_face_size: float = 6.0
    max_tries: int = 50

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"AugmentConfig.image_size must be >= 16, got {self.image_size}")
        if self.policy not in ("iam", "ssd"):
            raise ValueError(f"AugmentConfig.policy must be 'iam' or 'ssd', got {self.policy!r}")
        if self.das_targets not in ("official", "paper"):
            raise ValueError(
                f"AugmentConfig.das_targets must be 'official' or 'paper', got {self.das_targets!r}"
            )
        for name in ("anchor_sampling_prob", "expand_prob", "whole_crop_prob", "flip_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1], got {value}")
        if not 0.0 < self.min_crop_scale <= 1.0:
            raise ValueError(
                f"AugmentConfig.min_crop_scale must be in (0, 1], got {self.min_crop_scale}"
            )
        if self.max_expand_ratio < 1.0:
            raise ValueError(
                f"AugmentConfig.max_expand_ratio must be >= 1, got {self.max_expand_ratio}"
            )
        if not self.anchor_sizes or min(self.anchor_sizes) <= 0:
            raise ValueError(
                f"AugmentConfig.anchor_sizes must be positive, got {self.anchor_sizes}"
            )


@dataclass(frozen=True)
class Augmented:
    """Result of :func:`augment`.

    Attributes:
        image: ``uint8 [S, S, 3]`` BGR, ``S = image_size``.
        boxes: ``float32 [M, 4]`` xyxy pixels of the output image.
        indices: ``int64 [M]``, index into the input boxes of each output box.
        mode: ``"anchor"`` (data-anchor-sampling) or ``"ssd"``.
        anchor_face: input index of the face chosen by data-anchor-sampling, else -1.
        target_size: the anchor size the chosen face was scaled to, else 0.
        window: ``(x0, y0, w, h)`` of the source region (float, may overhang the image) that
            was resized to the output, before the flip.
        flipped: whether the output was mirrored.
    """

    image: np.ndarray
    boxes: np.ndarray
    indices: np.ndarray
    mode: str
    anchor_face: int
    target_size: int
    window: tuple[float, float, float, float]
    flipped: bool


def _check_inputs(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise TypeError(
            "augment: image must be a uint8 numpy array [H, W, 3], got "
            f"{type(image).__name__} {getattr(image, 'dtype', None)} "
            f"{getattr(image, 'shape', None)}"
        )
    if image.shape[2] != 3:
        raise ValueError(f"augment: image must have 3 channels, got shape {image.shape}")
    boxes = np.asarray(boxes, dtype=np.float32)
    if boxes.size == 0:
        return np.zeros((0, 4), np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"augment: boxes must have shape [N, 4], got {boxes.shape}")
    if boxes.shape[0] and not np.isfinite(boxes).all():
        raise ValueError("augment: boxes contain non-finite values")
    return boxes


def _sides(boxes: np.ndarray) -> np.ndarray:
    """``sqrt(w * h)`` of xyxy boxes, ``float32 [N]`` (0 for degenerate boxes)."""
    w = np.clip(boxes[:, 2] - boxes[:, 0], 0.0, None)
    h = np.clip(boxes[:, 3] - boxes[:, 1], 0.0, None)
    return np.sqrt(w * h)


def _das_targets(face_side: float, config: AugmentConfig) -> list[int]:
    """Anchor sizes the chosen face may be scaled to (never empty)."""
    sizes = sorted(s for s in config.anchor_sizes if s <= config.image_size) or [
        min(config.anchor_sizes)
    ]
    if config.das_targets == "paper":
        return sizes
    # Official "average sample": >256 -> up to 512, >128 -> 256, ..., else up to 32.
    bucket = sizes[min(1, len(sizes) - 1)]
    for size in sizes[1:]:
        if face_side > size / 2:
            bucket = size
    return [s for s in sizes if s <= bucket]


def _anchor_window(
    boxes: np.ndarray, rng: np.random.Generator, config: AugmentConfig
) -> tuple[tuple[float, float, float, float], int, int]:
    """Data-anchor-sampling: a square source window making one face ``target`` px after resize."""
    sides = _sides(boxes)
    candidates = np.flatnonzero(sides > 0)
    face = int(candidates[rng.integers(len(candidates))])
    x1, y1, x2, y2 = (float(v) for v in boxes[face])
    # The crop must hold the whole face: targets whose crop would be narrower than the face's
    # longer side (elongated boxes) are left out.
    longest = max(x2 - x1, y2 - y1)
    fitting = [
        t
        for t in _das_targets(float(sides[face]), config)
        if float(sides[face]) * config.image_size / t >= longest
    ]
    targets = fitting or [min(config.anchor_sizes)]
    target = int(targets[rng.integers(len(targets))])
    side = float(sides[face]) * config.image_size / target  # source pixels of the crop side
    # Any placement that holds the whole face; a face wider than the crop is centred instead.
    lo_x, hi_x = x2 - side, x1
    lo_y, hi_y = y2 - side, y1
    x0 = rng.uniform(lo_x, hi_x) if hi_x > lo_x else (x1 + x2 - side) / 2
    y0 = rng.uniform(lo_y, hi_y) if hi_y > lo_y else (y1 + y2 - side) / 2
    return (x0, y0, side, side), face, target


def _expand_window(
    width: int, height: int, rng: np.random.Generator, config: AugmentConfig
) -> tuple[float, float, float, float]:
    """SSD zoom-out as a source window: the image placed at random on a larger mean canvas."""
    if config.max_expand_ratio <= 1.0 or rng.random() >= config.expand_prob:
        return (0.0, 0.0, float(width), float(height))
    ratio = rng.uniform(1.0, config.max_expand_ratio)
    left = rng.uniform(0.0, width * ratio - width)
    top = rng.uniform(0.0, height * ratio - height)
    return (-left, -top, width * ratio, height * ratio)


def _ssd_window(
    boxes: np.ndarray, width: int, height: int, rng: np.random.Generator, config: AugmentConfig
) -> tuple[float, float, float, float]:
    """SSD-style: optional zoom-out, then a random square crop keeping at least one face."""
    cx0, cy0, cw, ch = _expand_window(width, height, rng, config)
    short = min(cw, ch)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    # The crop option is drawn once and kept over the tries, as the official RandomCrop does.
    whole = rng.random() < config.whole_crop_prob
    for _ in range(config.max_tries):
        scale = 1.0 if whole else rng.uniform(config.min_crop_scale, 1.0)
        side = short * scale
        x0 = cx0 + rng.uniform(0.0, cw - side)
        y0 = cy0 + rng.uniform(0.0, ch - side)
        if boxes.shape[0] == 0:
            return (x0, y0, side, side)
        inside = (
            (centres[:, 0] > x0)
            & (centres[:, 0] < x0 + side)
            & (centres[:, 1] > y0)
            & (centres[:, 1] < y0 + side)
        )
        if inside.any() and (_sides(boxes[inside]) * config.image_size / side).max() >= (
            config.min_face_size
        ):
            return (x0, y0, side, side)
    return (cx0, cy0, cw, ch)


def _map_boxes(
    boxes: np.ndarray,
    window: tuple[float, float, float, float],
    size: int,
    flip: bool,
    min_face_size: float,
    keep_all_index: int = -1,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes whose centre lies in ``window``, clipped to it and mapped to output pixels."""
    x0, y0, w, h = window
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = (
        (centres[:, 0] > x0)
        & (centres[:, 0] < x0 + w)
        & (centres[:, 1] > y0)
        & (centres[:, 1] < y0 + h)
    )
    if keep_all_index >= 0:
        inside[keep_all_index] = True
    indices = np.flatnonzero(inside)
    out = boxes[indices].astype(np.float64)
    out[:, 0::2] = (np.clip(out[:, 0::2], x0, x0 + w) - x0) * (size / w)
    out[:, 1::2] = (np.clip(out[:, 1::2], y0, y0 + h) - y0) * (size / h)
    if flip:
        out[:, [0, 2]] = size - out[:, [2, 0]]
    np.clip(out, 0.0, float(size), out=out)  # rounding of the flip must not leave the image
    keep = _sides(out) >= min_face_size
    return out[keep].astype(np.float32), indices[keep].astype(np.int64)


def _warp(
    image: np.ndarray, window: tuple[float, float, float, float], size: int, flip: bool
) -> np.ndarray:
    """Resample ``window`` of ``image`` to ``[size, size]`` with the same map as the boxes.

    A continuous coordinate ``x`` maps to ``(x - x0) * s``; pixel ``i`` has its centre at
    ``i + 0.5``, hence the half-pixel terms in the affine matrix.
    """
    x0, y0, w, h = window
    sx, sy = size / w, size / h
    src = image
    # Large shrinks alias under bilinear sampling: pre-shrink with area averaging.
    pre = min(sx, sy)
    if pre < 0.5:
        factor = 2.0 * pre
        new_w = max(1, round(image.shape[1] * factor))
        new_h = max(1, round(image.shape[0] * factor))
        src = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        fx, fy = new_w / image.shape[1], new_h / image.shape[0]
        x0, y0, sx, sy = x0 * fx, y0 * fy, sx / fx, sy / fy
    matrix = np.array(
        [[sx, 0.0, sx * (0.5 - x0) - 0.5], [0.0, sy, sy * (0.5 - y0) - 0.5]], dtype=np.float64
    )
    if flip:  # x' -> size - x' in continuous coordinates
        matrix[0] = [-sx, 0.0, size - sx * (0.5 - x0) - 0.5]
    return cv2.warpAffine(
        src,
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=MEAN_BGR,
    )


def photometric_distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SSD photometric distortion (ssd.pytorch): brightness, contrast, saturation, hue, channels.

    Args:
        image: ``uint8 [H, W, 3]`` BGR.
        rng: source of randomness.

    Returns:
        ``uint8 [H, W, 3]`` BGR, a new array.
    """
    out = image.astype(np.float32)
    if rng.random() < 0.5:
        out += rng.uniform(-32.0, 32.0)
    contrast_first = rng.random() < 0.5
    contrast = rng.uniform(0.5, 1.5) if rng.random() < 0.5 else 1.0
    if contrast_first:
        out *= contrast
    hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
    if rng.random() < 0.5:
        hsv[..., 1] *= rng.uniform(0.5, 1.5)
    if rng.random() < 0.5:  # OpenCV hue is 0..180 for uint8: +-18 degrees is +-9 units
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-9.0, 9.0)) % 180.0
    hsv[..., 1:] = np.clip(hsv[..., 1:], 0, 255)
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    if not contrast_first:
        out *= contrast
    if rng.random() < 0.5:
        out = out[..., rng.permutation(3)]
    return np.clip(out, 0, 255).astype(np.uint8)


def _plan(
    boxes: np.ndarray, width: int, height: int, rng: np.random.Generator, config: AugmentConfig
) -> Augmented:
    """The geometric draw shared by :func:`augment` and :func:`augment_boxes` (no pixels)."""
    use_anchor = (
        config.policy == "iam"
        and bool((_sides(boxes) > 0).any())
        and rng.random() < config.anchor_sampling_prob
    )
    face, target = -1, 0
    if use_anchor:
        window, face, target = _anchor_window(boxes, rng, config)
    else:
        window = _ssd_window(boxes, width, height, rng, config)
    flip = bool(rng.random() < config.flip_prob)
    out_boxes, indices = _map_boxes(
        boxes, window, config.image_size, flip, config.min_face_size, keep_all_index=face
    )
    return Augmented(
        image=np.zeros((0, 0, 3), np.uint8),
        boxes=out_boxes,
        indices=indices,
        mode="anchor" if use_anchor else "ssd",
        anchor_face=face,
        target_size=target,
        window=(float(window[0]), float(window[1]), float(window[2]), float(window[3])),
        flipped=flip,
    )


def augment(
    image: np.ndarray,
    boxes_xyxy: np.ndarray,
    rng: np.random.Generator,
    config: AugmentConfig = AugmentConfig(),
) -> Augmented:
    """Augment one training image and its face boxes.

    Args:
        image: ``uint8 [H, W, 3]`` BGR.
        boxes_xyxy: ``float [N, 4]`` xyxy pixels (``N`` may be 0).
        rng: the only source of randomness; the same generator state gives the same output.
        config: the policy and its settings.

    Returns:
        The augmented image and boxes (see :class:`Augmented`).
    """
    boxes = _check_inputs(image, boxes_xyxy)
    plan = _plan(boxes, image.shape[1], image.shape[0], rng, config)
    # Photometric draws come after the geometric ones, so geometry does not depend on them.
    source = photometric_distort(image, rng) if config.photometric else image
    return replace(plan, image=_warp(source, plan.window, config.image_size, plan.flipped))


def augment_boxes(
    boxes_xyxy: np.ndarray,
    image_hw: tuple[int, int],
    rng: np.random.Generator,
    config: AugmentConfig = AugmentConfig(),
) -> Augmented:
    """The geometric part of :func:`augment` without pixels (for anchor statistics).

    Draws the same random numbers as :func:`augment` does before its photometric step, so the
    boxes equal those of a real augmentation of an image of size ``image_hw``.

    Args:
        boxes_xyxy: ``float [N, 4]`` xyxy pixels.
        image_hw: ``(height, width)`` of the (absent) image in pixels.
        rng: source of randomness.
        config: the policy; ``photometric`` is ignored.

    Returns:
        :class:`Augmented` whose ``image`` is an empty ``uint8 [0, 0, 3]`` array.
    """
    height, width = int(image_hw[0]), int(image_hw[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"augment_boxes: image_hw must be positive, got {image_hw}")
    boxes = _check_inputs(np.zeros((1, 1, 3), np.uint8), boxes_xyxy)
    return _plan(boxes, width, height, rng, config)
