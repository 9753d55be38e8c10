"""COCO-format export of a run directory's detections (pseudo-labels); no Ray, no torch.

The JSON is written streaming, part by part, so the exporter holds one shard at a time::

    {"info": {...}, "categories": [{"id": 1, "name": "face", "supercategory": "face"}],
     "images": [{"id": 1, "file_name": IMAGE_ID, "width": W, "height": H}, ...],
     "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [x, y, w, h],
                      "area": w*h, "iscrowd": 0, "score": s}, ...]}

Image ids are 1, 2, ... in part order (manifest order); only images whose status is ``ok``
are listed. Boxes are the run's ``xyxy`` float pixels turned into ``xywh``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.schema import (
    DETECTIONS_DIR,
    DETECTIONS_SCHEMA,
    IMAGES_DIR,
    IMAGES_SCHEMA,
    part_files,
)

FACE_CATEGORY_ID = 1


@dataclass(frozen=True)
class CocoExportSummary:
    """What :func:`export_coco` wrote."""

    num_images: int
    num_annotations: int
    num_errors: int


def _shard_pairs(run_dir: Path) -> Iterator[tuple[Path, Path]]:
    """(images part, detections part) of every complete shard, in part order."""
    for images_path in part_files(run_dir, IMAGES_DIR):
        detections_path = run_dir / DETECTIONS_DIR / images_path.name
        if detections_path.is_file():
            yield images_path, detections_path


def _round(value: float) -> float:
    """The shortest decimal that reads back as the same float32 (no spurious digits)."""
    return float(str(np.float32(value)))


def _write_images(fh: IO[str], run_dir: Path) -> tuple[int, int]:
    count = errors = 0
    for images_path, _ in _shard_pairs(run_dir):
        table = pq.read_table(images_path, schema=IMAGES_SCHEMA)
        for row in table.to_pylist():
            if row["status"] != "ok":
                errors += 1
                continue
            count += 1
            item = {"id": count, "file_name": row["image_id"], "width": row["width"],
                    "height": row["height"]}
            fh.write(("" if count == 1 else ",\n") + json.dumps(item))
    return count, errors


def _write_annotations(fh: IO[str], run_dir: Path, min_score: float) -> int:
    image_number = 0
    count = 0
    for images_path, detections_path in _shard_pairs(run_dir):
        images = pq.read_table(images_path, schema=IMAGES_SCHEMA, columns=["image_id", "status"])
        ids: dict[str, int] = {}
        for image_id, status in zip(images["image_id"].to_pylist(),
                                    images["status"].to_pylist(), strict=True):
            if status == "ok":
                image_number += 1
                ids[image_id] = image_number
        dets = pq.read_table(detections_path, schema=DETECTIONS_SCHEMA)
        dets = dets.filter(pc.greater_equal(dets["score"], min_score))
        for row in dets.to_pylist():
            coco_id = ids.get(row["image_id"])
            if coco_id is None:
                continue
            w = np.float32(row["x2"]) - np.float32(row["x1"])  # float32, as stored
            h = np.float32(row["y2"]) - np.float32(row["y1"])
            count += 1
            bbox = [_round(row["x1"]), _round(row["y1"]), _round(float(w)), _round(float(h))]
            item = {"id": count, "image_id": coco_id, "category_id": FACE_CATEGORY_ID,
                    "bbox": bbox, "area": _round(float(w) * float(h)), "iscrowd": 0,
                    "score": _round(row["score"])}
            fh.write(("" if count == 1 else ",\n") + json.dumps(item))
    return count


def export_coco(run_dir: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
                min_score: float = 0.0) -> CocoExportSummary:
    """Write the run's detections with ``score >= min_score`` as a COCO JSON file.

    Args:
        run_dir: a run directory written by ``dsfd run`` or ``dsfd label``.
        out_path: the JSON file to write (replaced atomically).
        min_score: keep detections whose score is at least this (0..1).

    Returns:
        Counts of images, annotations and error images (left out) written.
    """
    if not (isinstance(min_score, int | float) and math.isfinite(min_score)
            and 0.0 <= min_score <= 1.0):
        raise ValueError(f"min_score must be a number in [0, 1], got {min_score!r}")
    run_dir, out_path = Path(run_dir), Path(out_path)
    if not (run_dir / IMAGES_DIR).is_dir():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no {IMAGES_DIR}/ folder)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".tmp-{os.getpid()}-{out_path.name}")
    info = {"description": f"DSFD pseudo-labels from {run_dir.name}", "min_score": min_score}
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write('{"info": ' + json.dumps(info) + ',\n"categories": ')
            fh.write(json.dumps([{"id": FACE_CATEGORY_ID, "name": "face",
                                  "supercategory": "face"}]))
            fh.write(',\n"images": [\n')
            num_images, num_errors = _write_images(fh, run_dir)
            fh.write('\n],\n"annotations": [\n')
            num_annotations = _write_annotations(fh, run_dir, float(min_score))
            fh.write("\n]}\n")
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return CocoExportSummary(num_images=num_images, num_annotations=num_annotations,
                             num_errors=num_errors)
