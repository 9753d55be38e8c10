"""COCO-format export of a run directory's detections (pseudo-labels); no Ray, no torch.

The JSON is written streaming, part by part, so the exporter holds one shard at a time::

    {"info": {...}, "categories": [{"id": 1, "name": "face", "supercategory": "face"}],
     "images": [{"id": 1, "file_name": IMAGE_ID, "width": W, "height": H}, ...],
     "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [x, y, w, h],
                      "area": w*h, "iscrowd": 0, "score": s}, ...]}

Image ids are 1, 2, ... in part order (manifest order); only images whose status is ``ok``
are listed. Boxes are the run's ``xyxy`` float pixels turned into ``xywh``. With ``clip=True``
(pseudo-labels) each box is first clipped to its image (``0 <= x <= width``, ``0 <= y <=
height``, the size from the ``images`` table) and a box left without area is dropped; the run's
Parquet rows are never changed.
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
import numpy.typing as npt
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.rundir import RunDir
from pipeline.schema import DETECTIONS_SCHEMA, IMAGES_SCHEMA

FACE_CATEGORY_ID = 1


@dataclass(frozen=True)
class CocoExportSummary:
    """What :func:`export_coco` wrote."""

    num_images: int
    num_annotations: int
    num_errors: int


def _shard_pairs(run_dir: Path) -> Iterator[tuple[Path, Path]]:
    """(images part, detections part) of every complete shard, in part order, verified by
    :class:`~pipeline.rundir.RunDir` (whole parts of this run's config only)."""
    for _, detections_path, images_path in RunDir.open(run_dir).complete_parts():
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


def clip_boxes_xyxy(
    boxes_xyxy: npt.ArrayLike, widths: npt.ArrayLike, heights: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes to their image and tell which keep an area.

    Args:
        boxes_xyxy: (N, 4) float ``x1 y1 x2 y2`` pixels, x2/y2 exclusive.
        widths: (N,) or scalar width in pixels of each box's image.
        heights: (N,) or scalar height in pixels of each box's image.

    Returns:
        ``(clipped, keep)``: (N, 4) boxes of the input dtype with x in ``[0, width]`` and y in
        ``[0, height]``, and (N,) bool, True where ``x2 > x1`` and ``y2 > y1`` after clipping
        (False for a box wholly outside its image, or not finite).
    """
    boxes = np.asarray(boxes_xyxy)
    boxes = boxes.reshape(-1, 4) if boxes.size else np.zeros((0, 4), boxes.dtype)  # (N, 4)
    w = np.broadcast_to(np.asarray(widths, dtype=boxes.dtype), (len(boxes),))
    h = np.broadcast_to(np.asarray(heights, dtype=boxes.dtype), (len(boxes),))
    zero = np.zeros((), boxes.dtype)
    clipped = np.stack(
        [np.clip(boxes[:, 0], zero, w), np.clip(boxes[:, 1], zero, h),
         np.clip(boxes[:, 2], zero, w), np.clip(boxes[:, 3], zero, h)], axis=1)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped, keep


_ImageInfo = dict[str, tuple[int, int | None, int | None]]


def _ok_images(images_path: Path, first_number: int) -> tuple[_ImageInfo, int]:
    """``image_id -> (COCO id, width, height)`` of the ``ok`` images of one part, and the
    last COCO id given. Ids continue from ``first_number``, one per ``ok`` row (as
    ``_write_images`` numbers them; a repeated id keeps its last number)."""
    table = pq.read_table(images_path, schema=IMAGES_SCHEMA,
                          columns=["image_id", "status", "width", "height"])
    ids: _ImageInfo = {}
    number = first_number
    for image_id, status, width, height in zip(*(table[c].to_pylist() for c in table.column_names),
                                               strict=True):
        if status == "ok":
            number += 1
            ids[image_id] = (number, width, height)
    return ids, number


def _shard_boxes(detections_path: Path, ids: _ImageInfo, min_score: float,
                 clip: bool) -> Iterator[tuple[int, np.ndarray, float]]:
    """``(COCO image id, float32 xyxy box, score)`` of one part's kept detections, in row
    order: score at least ``min_score``, on an ``ok`` image, clipped (and kept only with an
    area) when ``clip``."""
    dets = pq.read_table(detections_path, schema=DETECTIONS_SCHEMA)
    dets = dets.filter(pc.greater_equal(dets["score"], min_score))
    rows = [r for r in dets.to_pylist() if r["image_id"] in ids]
    boxes = np.asarray([[r["x1"], r["y1"], r["x2"], r["y2"]] for r in rows],
                       np.float32).reshape(-1, 4)  # (N, 4), the stored float32 values
    keep = np.ones(len(rows), bool)
    if clip and rows:
        sizes = [ids[r["image_id"]][1:] for r in rows]
        missing = next((r["image_id"] for r, s in zip(rows, sizes, strict=True)
                        if None in s), None)
        if missing is not None:
            raise ValueError(f"{detections_path}: image {missing!r} has no width/height in "
                             "the images table; cannot clip its boxes")
        wh = np.asarray(sizes, np.float32)  # (N, 2)
        boxes, keep = clip_boxes_xyxy(boxes, wh[:, 0], wh[:, 1])
    for row, box, kept in zip(rows, boxes, keep, strict=True):
        if kept:
            yield ids[row["image_id"]][0], box, row["score"]


def _write_annotations(fh: IO[str], run_dir: Path, min_score: float, clip: bool) -> int:
    image_number = 0
    count = 0
    for images_path, detections_path in _shard_pairs(run_dir):
        ids, image_number = _ok_images(images_path, image_number)
        for coco_id, box, score in _shard_boxes(detections_path, ids, min_score, clip):
            w = box[2] - box[0]  # float32, as stored
            h = box[3] - box[1]
            count += 1
            bbox = [_round(box[0]), _round(box[1]), _round(float(w)), _round(float(h))]
            item = {"id": count, "image_id": coco_id, "category_id": FACE_CATEGORY_ID,
                    "bbox": bbox, "area": _round(float(w) * float(h)), "iscrowd": 0,
                    "score": _round(score)}
            fh.write(("" if count == 1 else ",\n") + json.dumps(item))
    return count


def export_coco(run_dir: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
                min_score: float = 0.0, clip: bool = False) -> CocoExportSummary:
    """Write the run's detections with ``score >= min_score`` as a COCO JSON file.

    Args:
        run_dir: a run directory written by ``dsfd run`` or ``dsfd label``.
        out_path: the JSON file to write (replaced atomically).
        min_score: keep detections whose score is at least this (0..1).
        clip: clip each box to its image and drop boxes left without area (pseudo-labels);
            False writes the boxes as detected.

    Returns:
        Counts of images, annotations and error images (left out) written.

    Raises:
        ValueError: ``min_score`` out of range, or ``clip`` with an ``ok`` image that has no
            size in the images table.
        FileNotFoundError: ``run_dir`` is not a run directory.
    """
    if not (isinstance(min_score, int | float) and math.isfinite(min_score)
            and 0.0 <= min_score <= 1.0):
        raise ValueError(f"min_score must be a number in [0, 1], got {min_score!r}")
    run_dir, out_path = Path(run_dir), Path(out_path)
    RunDir.open(run_dir)  # refuses a folder without run.json (or a damaged one) in one line
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".tmp-{os.getpid()}-{out_path.name}")
    info = {"description": f"DSFD pseudo-labels from {run_dir.name}", "min_score": min_score,
            "clipped_to_image": bool(clip)}
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write('{"info": ' + json.dumps(info) + ',\n"categories": ')
            fh.write(json.dumps([{"id": FACE_CATEGORY_ID, "name": "face",
                                  "supercategory": "face"}]))
            fh.write(',\n"images": [\n')
            num_images, num_errors = _write_images(fh, run_dir)
            fh.write('\n],\n"annotations": [\n')
            num_annotations = _write_annotations(fh, run_dir, float(min_score), bool(clip))
            fh.write("\n]}\n")
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return CocoExportSummary(num_images=num_images, num_annotations=num_annotations,
                             num_errors=num_errors)
