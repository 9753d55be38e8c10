"""YOLO txt labels of a run directory (no torch, no Ray).

One file per readable image, ``OUT/FOLDERS/NAME.txt``, mirroring the image id's folders (a
known image extension is removed from the name: ``x/y/z.png`` -> ``OUT/x/y/z.txt``), so a
folder run of ``DATA/images`` exported to ``DATA/labels`` sits where YOLO trainers look for
labels. A file holds one line per face::

    0 cx cy w h

class 0 (``face``, the one line of ``OUT/classes.txt``), then the box centre and size divided
by the image width and height from the images table, with 6 decimals. An image without boxes
gets an empty file (a background image); an unreadable (``error``) image gets no file and is
counted in :attr:`~pipeline.exports.ExportSummary.num_errors`. An id listed more than once gets
one file.

Boxes are always clipped to their image, and a box left without area is dropped: normalised
coordinates outside ``[0, 1]`` are invalid for YOLO trainers. The run's Parquet rows stay as
detected.

Safety as for the WIDER export (:mod:`pipeline.exports.file_tree`): every id is mapped before
anything is written, and an id that cannot be a file name, two ids for one file, or an ``OUT``
holding what this exporter did not write stop the export with nothing written; the folder
appears whole, and the receipt ``.NAME.dsfd-export.json`` beside ``OUT`` lets a rerun replace
its own files only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline.exports.file_tree import FileTree, earlier_export, id_path_parts, plan_files
from pipeline.exports.registry import ExportSummary, check_min_score
from pipeline.exports.source import ImageBoxes, count_errors, iter_image_boxes, ok_image_ids
from pipeline.rundir import RunDir

FACE_CLASS = 0
CLASSES_FILE = "classes.txt"
CLASS_NAMES = ("face",)
RECEIPT_HEADER = {"exporter": "dsfd-yolo-txt", "version": 1}


def yolo_label_path(image_id: str) -> str:
    """``FOLDERS/NAME.txt``, the label file of ``image_id`` relative to ``OUT``.

    Raises:
        ValueError: the id cannot be a relative file path (see
            :func:`pipeline.exports.file_tree.id_path_parts`).
    """
    folders, name = id_path_parts(image_id, "YOLO")
    return "/".join([*folders, f"{name}.txt"])


def format_yolo_labels(boxes_xyxy: npt.ArrayLike, width: float, height: float) -> str:
    """The lines ``0 cx cy w h`` of one image's boxes (``""`` for none).

    Args:
        boxes_xyxy: (K, 4) ``x1 y1 x2 y2`` pixels inside the image, x2/y2 exclusive.
        width, height: the image size in pixels (> 0).

    Returns:
        One line per box: the class, then centre and size divided by the image size (float64
        arithmetic on the given values), each with 6 decimals.

    Raises:
        ValueError: a size that is not positive, or a box that is not finite.
    """
    if not (width > 0 and height > 0):
        raise ValueError(f"image size must be positive, got {width}x{height}")
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)  # (K, 4)
    if not np.all(np.isfinite(boxes)):
        raise ValueError("boxes must be finite")
    size = np.array([width, height], dtype=np.float64)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2 / size  # (K, 2)
    sizes = (boxes[:, 2:] - boxes[:, :2]) / size  # (K, 2)
    return "".join(f"{FACE_CLASS} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n"
                   for (cx, cy), (w, h) in zip(centres.tolist(), sizes.tolist(), strict=True))


def export_yolo(run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                min_score: float = 0.0) -> ExportSummary:
    """Write the YOLO labels of every readable image of the run (see the module docstring).

    Args:
        run_dir: a run directory.
        out_dir: missing, an empty folder, or an earlier export of this function (replaced).
        min_score: keep detections whose float32 score is at least this (0..1).

    Raises:
        FileNotFoundError, pipeline.rundir.RunDirError: ``run_dir`` is not a whole run
            directory.
        ValueError: an id cannot be mapped, two ids map to one file (or one to
            ``classes.txt``), ``out_dir`` holds what this function did not write, an image
            with boxes has no size, or ``min_score`` is out of range. Nothing is written then.
    """
    run = RunDir.open(run_dir)
    threshold = check_min_score(min_score)
    out = Path(os.path.abspath(out_dir))
    earlier = earlier_export(out, RECEIPT_HEADER, "YOLO")
    images = run.images()
    plan = plan_files(ok_image_ids(images), yolo_label_path,
                      reserved={CLASSES_FILE: "the class names"})
    tree = FileTree(out, RECEIPT_HEADER)
    try:
        tree.write(CLASSES_FILE, "".join(f"{n}\n" for n in CLASS_NAMES).encode("utf-8"))
        items = iter_image_boxes(run, images, min_score=threshold, clip=True)
        num_labels, num_boxes, num_empty = _write_labels(tree, plan, items)
        tree.publish(earlier)
    finally:
        tree.discard()
    return ExportSummary(num_images=num_labels, num_detections=num_boxes, num_empty=num_empty,
                         num_errors=count_errors(images), num_files=num_labels + 1)


def _write_labels(tree: FileTree, plan: dict[str, str], items: Iterator[ImageBoxes]
                  ) -> tuple[int, int, int]:
    """Write one label file per readable image; ``(files, boxes, empty files)``."""
    num_files = num_boxes = num_empty = 0
    for item in items:
        if item.repeat:
            continue
        text = ""
        if len(item.boxes_xyxy):
            assert item.width is not None and item.height is not None  # clipped: sizes known
            text = format_yolo_labels(item.boxes_xyxy, item.width, item.height)
        tree.write(plan[item.image_id], text.encode("utf-8"))
        num_files += 1
        num_boxes += len(item.boxes_xyxy)
        num_empty += not len(item.boxes_xyxy)
    return num_files, num_boxes, num_empty
