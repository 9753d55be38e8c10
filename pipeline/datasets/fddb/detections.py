"""FDDB detection files: one file for the whole image list, in the official format.

Detection files use the block structure of the ellipse lists with ``x y w h score`` lines
(format ``rect``, the official ``-f 0``) or ``ra rb angle cx cy score`` lines (format
``ellipse``, ``-f 1``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from pipeline.datasets.fddb.annotations import FddbImage
from pipeline.datasets.fddb.text import check_image_id, iter_blocks, write_text_lines

DetFormat = Literal["rect", "ellipse"]
_FIELDS = {"rect": 4, "ellipse": 5}
_FIELD_NAMES = {"rect": "x y w h score", "ellipse": "ra rb angle cx cy score"}


@dataclass(frozen=True, eq=False)
class FddbDetections:
    """The detections of one image, in file (or table) order.

    Attributes:
        image_id: the fold path of the image.
        regions: float64 array (K, 4) of ``x y w h`` (format ``rect``; pixels, top-left corner
            and size) or (K, 5) of ``ra rb angle cx cy`` (format ``ellipse``).
        scores: float64 array (K,) of detection scores (any real numbers; only order matters).
    """

    image_id: str
    regions: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)

    @property
    def num_detections(self) -> int:
        """Number of detections K."""
        return int(self.scores.shape[0])


def read_detections(path: str | os.PathLike[str], det_format: DetFormat) -> list[FddbDetections]:
    """Read an official FDDB detection file (one file for the whole image list).

    Args:
        path: the detection file.
        det_format: ``"rect"`` (lines ``x y w h score``, official ``-f 0``) or ``"ellipse"``
            (lines ``ra rb angle cx cy score``, official ``-f 1``).

    Returns:
        One ``FddbDetections`` per block, in file order; detections in line order.
    """
    if det_format not in _FIELDS:
        raise ValueError(f"det_format must be 'rect' or 'ellipse', got {det_format!r}")
    num_regions = _FIELDS[det_format]
    out = []
    for image_id, rows, _ in iter_blocks(path, num_regions + 1, _FIELD_NAMES[det_format]):
        out.append(FddbDetections(image_id, rows[:, :num_regions].copy(), rows[:, -1].copy()))
    return out


def check_same_images(
    annotations: Sequence[FddbImage], detections: Sequence[FddbDetections], source: object
) -> None:
    """Raise ValueError unless ``detections`` lists exactly the annotated images, in order.

    The official program compares the names line by line and aborts on a mismatch; so do we,
    naming the first differing position.
    """
    for k, (ann, det) in enumerate(zip(annotations, detections, strict=False)):
        if ann.image_id != det.image_id:
            raise ValueError(
                f"{source}: image {k + 1} is {det.image_id!r} but the annotations list "
                f"{ann.image_id!r} there; detections must follow the annotation order"
            )
    if len(annotations) != len(detections):
        raise ValueError(
            f"{source}: {len(detections)} images, but the annotations list {len(annotations)}"
        )


def write_detections(
    path: str | os.PathLike[str], detections: Sequence[FddbDetections], det_format: DetFormat
) -> None:
    """Write an official detection file; numbers are written with ``repr`` (exact round trip)."""
    if det_format not in _FIELDS:
        raise ValueError(f"det_format must be 'rect' or 'ellipse', got {det_format!r}")
    width = _FIELDS[det_format]
    lines: list[str] = []
    for det in detections:
        regions = np.asarray(det.regions, dtype=np.float64).reshape(-1, width)
        scores = np.asarray(det.scores, dtype=np.float64).reshape(-1)
        if regions.shape[0] != scores.shape[0]:
            raise ValueError(
                f"{det.image_id!r}: {regions.shape[0]} regions, {scores.shape[0]} scores"
            )
        lines += [check_image_id(det.image_id), str(scores.shape[0])]
        for row, score in zip(regions.tolist(), scores.tolist(), strict=True):
            lines.append(" ".join(repr(float(v)) for v in [*row, score]))
    write_text_lines(Path(path), lines)
