"""The FDDB evaluator's inputs: detections, image sizes and annotations (no torch, no Ray).

Detections come from a run directory (read through :class:`pipeline.rundir.RunDir`) or an
official detection file, and sizes from a size table or an image folder; a run directory, a
detection file or a size table may be a local path or an object-storage URI (``s3://``,
``gs://``, read through :mod:`pipeline.storage`), an image folder only a local path.

A run directory stores boxes as float32 ``x1 y1 x2 y2`` pixels with x2/y2 exclusive (no +1
convention). FDDB rectangles are ``x y w h`` with the corners drawn at ``x`` and ``x + w``
(both inclusive, after rounding), so the conversion is ``x = x1, y = y1, w = x2 - x1,
h = y2 - y1`` (:func:`pipeline.boxes.xyxy_to_xywh`), computed in float64 from the float32
values (exact). This matches the PaddlePaddle/PyramidBox writer (w = x2 - x1); a detection
file written from the same table with ``repr`` numbers evaluates identically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.boxes import xyxy_to_xywh
from pipeline.datasets.fddb import (
    DetFormat,
    FddbDetections,
    FddbImage,
    read_annotations,
    read_detections,
    read_image_sizes_from_dir,
    read_image_sizes_tsv,
)
from pipeline.rundir import RunDir
from pipeline.storage import Location, ObjectPath, location

__all__ = [
    "Detections",
    "Sizes",
    "detections_from_run_dir",
    "index_detections",
    "load_annotations",
    "read_predictions",
    "read_sizes",
    "sizes_from_run_dir",
]

Detections = Sequence[FddbDetections] | Mapping[str, FddbDetections]
"""Per image, in list order (a detection file), or image id -> detections (a run directory)."""
Sizes = Mapping[str, tuple[int, int]]
"""Image id -> (width, height) in pixels."""


def detections_from_run_dir(run_dir: str | os.PathLike[str]) -> dict[str, FddbDetections]:
    """Group a run directory's detections by image, keeping row order within an image.

    Returns:
        image id -> ``FddbDetections`` (rectangles ``x y w h``, float64 scores): every image
        with detection rows, then every other image of the ``images`` table with zero
        detections (the run covered it and found nothing, as an export writes it). Images
        the run never covered are absent (the evaluator counts them as without prediction).
    """
    run = RunDir.open(run_dir)
    out = _grouped_detections(run.detections())
    covered = run.images().column("image_id").to_pylist()
    for name in dict.fromkeys(covered):
        if name not in out:
            out[name] = FddbDetections(name, np.zeros((0, 4)), np.zeros(0))
    return out


def _grouped_detections(table: pa.Table) -> dict[str, FddbDetections]:
    """image id -> detections of a ``detections`` table, row order kept within an image."""
    if table.num_rows == 0:
        return {}
    encoded = table.column("image_id").combine_chunks().dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    names = encoded.dictionary.to_pylist()
    order = np.argsort(codes, kind="stable")  # groups rows per image, file order inside
    starts = np.searchsorted(codes[order], np.arange(len(names) + 1))
    boxes = np.stack(
        [table.column(c).to_numpy() for c in ("x1", "y1", "x2", "y2")], axis=1
    )  # (R, 4) float32
    scores = table.column("score").to_numpy().astype(np.float64)
    out: dict[str, FddbDetections] = {}
    for code, name in enumerate(names):
        rows = order[starts[code] : starts[code + 1]]
        out[name] = FddbDetections(name, xyxy_to_xywh(boxes[rows]), scores[rows])
    return out


def index_detections(detections: Detections) -> dict[str, FddbDetections]:
    """A mapping image id -> detections from either a list (detection file) or a mapping."""
    if isinstance(detections, Mapping):
        return dict(detections)
    return {d.image_id: d for d in detections}


def _arg(path: Location) -> str | Path:
    """``path`` as the readers below take it (a ``Path``, or the URI of an object)."""
    return path if isinstance(path, Path) else str(path)


def read_predictions(
    pred: str | os.PathLike[str] | ObjectPath, det_format: DetFormat = "rect"
) -> Detections:
    """Read a run directory (a mapping, rectangles only) or a detection file (a list), a
    local path or an object-storage URI.

    Raises:
        ValueError: a run directory with ``det_format`` other than ``rect``; a malformed
            detection file (file and line).
        FileNotFoundError: ``pred`` is neither a folder nor a file.
        pipeline.storage.StorageError: the store refuses the request (one line naming it).
    """
    path = location(pred)
    if path.is_dir():
        if det_format != "rect":
            raise ValueError(f"{path}: a run directory holds rectangles: use det_format 'rect'")
        return detections_from_run_dir(_arg(path))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: neither a run directory nor a detection file")
    return read_detections(_arg(path), det_format)


def read_sizes(
    spec: str | os.PathLike[str] | ObjectPath, image_ids: Sequence[str],
    image_ext: str = ".jpg",
) -> dict[str, tuple[int, int]]:
    """Image sizes from a local image folder (``DIR/<image_id><image_ext>``) or a size table
    TSV (a local path or an object-storage URI).

    Raises:
        ValueError: the table has no size for some of ``image_ids`` (how many, the first); an
            image folder in object storage.
        FileNotFoundError: ``spec`` is neither a folder nor a file; an image file is missing.
        pipeline.storage.StorageError: the store refuses the request (one line naming it).
    """
    path = location(spec)
    if path.is_dir():
        if isinstance(path, ObjectPath):
            raise ValueError(f"{path}: image sizes are read from a local image folder or a "
                             "size table (name width height); pass a size table here")
        return read_image_sizes_from_dir(path, list(image_ids), image_ext)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: neither an image folder nor a size table")
    sizes = read_image_sizes_tsv(_arg(path))
    missing = [i for i in image_ids if i not in sizes]
    if missing:
        raise ValueError(f"{path}: no size for {len(missing)} images, e.g. {missing[0]!r}")
    return sizes


def sizes_from_run_dir(run_dir: str | os.PathLike[str]) -> dict[str, tuple[int, int]]:
    """Image id -> (width, height) of every image a run read (status ``ok``)."""
    images = RunDir.open(run_dir).images()
    ok = images.filter(pc.equal(images.column("status"), "ok"))
    columns = (ok.column(c).to_pylist() for c in ("image_id", "width", "height"))
    return {i: (int(w), int(h)) for i, w, h in zip(*columns, strict=True)}


def load_annotations(
    annotations: str | os.PathLike[str] | Sequence[FddbImage],
) -> list[FddbImage]:
    """Annotated images in list order, as given or read from an ellipse-list file, an
    ``FDDB-folds`` folder or an FDDB root (folds 1..10 in order)."""
    if isinstance(annotations, str | os.PathLike):
        return list(read_annotations(annotations))
    return list(annotations)
