"""Face records: one image and its faces as xyxy pixels, for training and anchor statistics.

A dataset kind that has face boxes registers a ``face_records`` reader
(:func:`pipeline.datasets.registry.face_records`). Boxes come as the annotations' ``x y w h``
and become ``xyxy = (x, y, x + w, y + h)`` float32. Boxes narrower or shorter than 2 pixels
are dropped, as the official training data loader does (this also removes the ``0 0 0 0``
placeholders of images without faces). numpy only (no torch, no Ray).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.images import ImageReadError, read_image_size

MIN_BOX_SIDE = 2


@dataclass(frozen=True)
class FaceRecord:
    """One training image and its faces.

    Attributes:
        image_id: the benchmark's image id (``EVENT/NAME`` for WIDER FACE).
        path: image file, or None for a boxes-only source.
        boxes_xyxy: ``float32 [N, 4]`` xyxy pixels.
        image_hw: ``(height, width)`` when known without decoding (the assumed canvas of a
            boxes-only source), else None.
    """

    image_id: str
    path: str | None
    boxes_xyxy: np.ndarray
    image_hw: tuple[int, int] | None = None


def xywh_to_xyxy_filtered(boxes_xywh: np.ndarray) -> np.ndarray:
    """``[K, 4]`` ``x y w h`` to ``float32 [N, 4]`` xyxy, dropping boxes under 2 px a side."""
    b = np.asarray(boxes_xywh, dtype=np.float32).reshape(-1, 4)
    b = b[(b[:, 2] >= MIN_BOX_SIDE) & (b[:, 3] >= MIN_BOX_SIDE)]
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1).astype(np.float32)


def image_hw_of(record: FaceRecord) -> tuple[int, int]:
    """``(height, width)`` of a record: the known size or the image file's header.

    Raises:
        ValueError: no size and no path, or an image file that cannot be read.
    """
    if record.image_hw is not None:
        return record.image_hw
    if record.path is None:
        raise ValueError(f"image {record.image_id!r}: neither a size nor a path")
    try:  # header only, in the frame decode_image gives (EXIF orientation applied)
        width, height = read_image_size(record.path)
    except ImageReadError as exc:
        raise ValueError(f"{record.path}: cannot read image {record.image_id!r}: {exc}") from exc
    return height, width

