"""FDDB detections from a run directory (Parquet) in the evaluator's form (no torch, no Ray).

A run directory stores boxes as float32 ``x1 y1 x2 y2`` pixels with x2/y2 exclusive (no +1
convention). FDDB rectangles are ``x y w h`` with the corners drawn at ``x`` and ``x + w``
(both inclusive, after rounding), so the conversion is ``x = x1, y = y1, w = x2 - x1,
h = y2 - y1``, computed in float64 from the float32 values (exact). This matches the
PaddlePaddle/PyramidBox writer (w = x2 - x1); a detection file written from the same table
with ``repr`` numbers evaluates identically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from pipeline.datasets.fddb import FddbDetections
from pipeline.rundir import RunDir


def xyxy_to_fddb_rects(boxes_xyxy: np.ndarray) -> np.ndarray:
    """float (K, 4) ``x1 y1 x2 y2`` (x2 exclusive) -> float64 (K, 4) ``x y w h``."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    return np.stack(
        [boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1
    )


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
        out[name] = FddbDetections(name, xyxy_to_fddb_rects(boxes[rows]), scores[rows])
    return out


def index_detections(
    detections: Sequence[FddbDetections] | Mapping[str, FddbDetections],
) -> dict[str, FddbDetections]:
    """A mapping image id -> detections from either a list (detection file) or a mapping."""
    if isinstance(detections, Mapping):
        return dict(detections)
    return {d.image_id: d for d in detections}
