"""Export a run directory's detections as WIDER FACE submission files (no torch, no Ray).

One file per image, ``OUT/EVENT/NAME.txt``, in the official format (see
:func:`pipeline.datasets.wider.format_wider_detections` for the rounding). Every image of the
run's ``images`` table gets a file, including images with no detection (the official tool
would otherwise report them missing, and the Python port would crash); detections keep their
row order within an image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.datasets.wider import format_wider_detections, split_image_id
from pipeline.schema import read_run_table
from reports.wider_predictions import group_rows


@dataclass(frozen=True)
class WiderExportSummary:
    """What an export wrote: files, detections, and images without a detection."""

    num_files: int
    num_detections: int
    num_empty: int


def export_wider_txt(
    run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> WiderExportSummary:
    """Write ``OUT/EVENT/NAME.txt`` for every image of the run.

    Raises:
        NotADirectoryError: ``run_dir`` has neither ``detections/`` nor ``images/``.
        ValueError: an image id is not ``EVENT/NAME``.
    """
    run = Path(run_dir)
    if not (run / "detections").is_dir() and not (run / "images").is_dir():
        raise NotADirectoryError(f"{run}: not a run directory (no detections/ or images/)")
    dets = read_run_table(run, "detections")
    images = read_run_table(run, "images").column("image_id").to_pylist()
    ids = np.asarray(dets.column("image_id").to_numpy(zero_copy_only=False), dtype=object)
    xyxy = np.stack([dets.column(c).to_numpy() for c in ("x1", "y1", "x2", "y2")], axis=1)
    scores = dets.column("score").to_numpy()
    out = Path(out_dir)
    written: set[str] = set()
    num_detections = 0
    for image_id, rows in group_rows(ids):
        _write(out, image_id, xyxy[rows], scores[rows])
        written.add(image_id)
        num_detections += len(rows)
    empty = 0
    for image_id in dict.fromkeys(images):
        if image_id not in written:
            _write(out, image_id, np.zeros((0, 4)), np.zeros(0))
            written.add(image_id)
            empty += 1
    return WiderExportSummary(len(written), num_detections, empty)


def _write(out: Path, image_id: str, boxes_xyxy: np.ndarray, scores: np.ndarray) -> None:
    event, name = split_image_id(image_id)
    path = out / event / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_wider_detections(name, boxes_xyxy, scores), encoding="utf-8")
