"""COCO-format export of a run directory's detections (no torch, no Ray).

The JSON is written streaming, one shard's detections at a time::

    {"info": {...}, "categories": [{"id": 1, "name": "face", "supercategory": "face"}],
     "images": [{"id": 1, "file_name": IMAGE_ID, "width": W, "height": H}, ...],
     "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [x, y, w, h],
                      "area": w*h, "iscrowd": 0, "score": s}, ...]}

Image ids are 1, 2, ... in run (manifest) order, one per ``ok`` row of the images table;
unreadable images are left out. An id listed more than once gets an entry per listing and its
annotations on the first. Boxes are the run's ``xyxy`` float32 pixels turned into ``xywh``
and written as the shortest decimals that read back as the same float32. With ``clip=True``
(pseudo-labels) each box is first clipped to its image (``0 <= x <= width``, ``0 <= y <=
height``, the size from the images table) and a box left without area is dropped; the run's
Parquet rows are never changed.

The file is written under a temporary name beside ``OUT`` and renamed into place. An existing
``OUT`` is replaced only when it is an earlier COCO export of this tool (its first bytes say
so); anything else there stops the export with nothing written.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

from pipeline.boxes import xyxy_to_xywh
from pipeline.exports.registry import ExportSummary, check_min_score
from pipeline.exports.source import count_errors, iter_image_boxes
from pipeline.rundir import RunDir

FACE_CATEGORY_ID = 1
_DESCRIPTION = "DSFD pseudo-labels from "
_HEAD = '{"info": {"description": ' + json.dumps(_DESCRIPTION)[:-1]
"""How every file this exporter writes begins (``json.dumps`` of ``info`` puts it first)."""


def _round(value: float) -> float:
    """The shortest decimal that reads back as the same float32 (no spurious digits)."""
    return float(str(np.float32(value)))


def _check_earlier(out: Path) -> None:
    """Refuse an ``out`` that exists and is not an earlier export of this module."""
    if os.path.islink(out) or (out.exists() and not out.is_file()):
        raise ValueError(f"{out}: exists and is not a file")
    if out.exists():
        with open(out, "rb") as fh:
            head = fh.read(len(_HEAD.encode("utf-8")))
        if head != _HEAD.encode("utf-8"):
            raise ValueError(f"{out}: exists and is not an earlier COCO export; refusing to "
                             "replace it (nothing was written)")


def _write_images(fh: IO[str], images: pa.Table) -> int:
    """The ``images`` entries of the ``ok`` rows; returns how many."""
    count = 0
    for batch in images.to_batches():
        rows = batch.select(["image_id", "status", "width", "height"]).to_pylist()
        for row in rows:
            if row["status"] != "ok":
                continue
            count += 1
            item = {"id": count, "file_name": row["image_id"], "width": row["width"],
                    "height": row["height"]}
            fh.write(("" if count == 1 else ",\n") + json.dumps(item))
    return count


def _write_annotations(fh: IO[str], run: RunDir, images: pa.Table, min_score: float,
                       clip: bool) -> tuple[int, int]:
    """The ``annotations`` of every ``ok`` image; returns (annotations, images without)."""
    count = empty = 0
    items = iter_image_boxes(run, images, min_score=min_score, clip=clip)
    for coco_id, item in enumerate(items, start=1):
        empty += not len(item.scores)
        boxes_xywh = xyxy_to_xywh(item.boxes_xyxy, dtype=np.float32)  # (K, 4) as stored
        for (x, y, w, h), score in zip(boxes_xywh.tolist(), item.scores.tolist(), strict=True):
            count += 1
            ann = {"id": count, "image_id": coco_id, "category_id": FACE_CATEGORY_ID,
                   "bbox": [_round(x), _round(y), _round(w), _round(h)],
                   "area": _round(w * h), "iscrowd": 0, "score": _round(score)}
            fh.write(("" if count == 1 else ",\n") + json.dumps(ann))
    return count, empty


def export_coco(run_dir: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
                min_score: float = 0.0, clip: bool = False,
                info: dict[str, Any] | None = None) -> ExportSummary:
    """Write the run's detections with ``score >= min_score`` as a COCO JSON file.

    Args:
        run_dir: a run directory written by ``dsfd run`` or ``dsfd label``.
        out_path: the JSON file to write: missing, or an earlier export (replaced
            atomically).
        min_score: keep detections whose float32 score is at least this (0..1).
        clip: clip each box to its image and drop boxes left without area (pseudo-labels);
            False writes the boxes as detected.
        info: more provenance for the file's ``info`` object (e.g. ``threshold_from``: how
            ``min_score`` was chosen); it cannot replace the keys written here.

    Returns:
        Counts of images, annotations and unreadable images (left out); one file.

    Raises:
        ValueError: ``min_score`` out of range, ``out_path`` holds something else, or
            ``clip`` with an ``ok`` image that has boxes but no size in the images table.
        FileNotFoundError, pipeline.rundir.RunDirError: ``run_dir`` is not a whole run
            directory.
    """
    threshold = check_min_score(min_score)
    run = RunDir.open(run_dir)
    out = Path(os.path.abspath(out_path))
    _check_earlier(out)
    images = run.images()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{uuid.uuid4().hex}-{out.name}")
    base_info = {"description": f"{_DESCRIPTION}{Path(run_dir).name}", "min_score": min_score,
                 "clipped_to_image": bool(clip)}
    info = {**base_info, **{k: v for k, v in (info or {}).items() if k not in base_info}}
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write('{"info": ' + json.dumps(info) + ',\n"categories": ')
            fh.write(json.dumps([{"id": FACE_CATEGORY_ID, "name": "face",
                                  "supercategory": "face"}]))
            fh.write(',\n"images": [\n')
            num_images = _write_images(fh, images)
            fh.write('\n],\n"annotations": [\n')
            num_annotations, num_empty = _write_annotations(fh, run, images, threshold,
                                                            bool(clip))
            fh.write("\n]}\n")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportSummary(num_images=num_images, num_detections=num_annotations,
                         num_empty=num_empty, num_errors=count_errors(images), num_files=1)
