"""WIDER FACE submission files of a run directory (no torch, no Ray).

One file per image, ``OUT/EVENT/NAME.txt``, in the official format (see
:func:`pipeline.datasets.wider.format_wider_detections` for the rounding). Every image of the
run's ``images`` table gets a file, including images with no detection and unreadable ones (the
official tool would otherwise report them missing, and the Python port would crash);
detections keep their row order within an image. An id listed more than once gets one file.

Image ids become ``EVENT/NAME`` (see :func:`wider_txt_key`): a benchmark's own ``EVENT/NAME``
is kept; for a folder or list run, a known image extension is removed from the name, a flat id
(``a.jpg``) goes into the event folder ``images`` and a deeper one (``x/y/z.png``) into the
event folder named by its folders joined with ``__`` (``x__y/z.txt``). Every id is mapped
before anything is written: an id that cannot be a file name, or two ids that map to the same
file, stop the export with nothing written.

Box convention: a run of the official network (``release-r152``) is written as the official
``widerface_val.py`` writes it, ``w = x2 - x1 + 1`` (the release learnt inclusive corners);
models trained here learnt exclusive corners and are written with ``w = x2 - x1``
(:func:`box_convention`). The receipt records which (``box_convention``).

The folder appears whole and replaces only an earlier WIDER export, as
:mod:`pipeline.exports.file_tree` describes (the receipt ``.NAME.dsfd-export.json`` lies next
to ``OUT`` because the top level of ``OUT`` must hold only event folders, for the Python port).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from pipeline.datasets.wider import format_wider_detections
from pipeline.exports.file_tree import FileTree, earlier_export, id_path_parts, plan_files
from pipeline.exports.registry import ExportSummary, check_min_score
from pipeline.exports.source import ImageBoxes, iter_image_boxes
from pipeline.rundir import RunDir

FLAT_EVENT = "images"
"""Event folder of the ids that have no folder (``a.jpg`` -> ``images/a.txt``)."""
EVENT_JOINER = "__"
"""Joins the folders of a deeper id into one event folder (``x/y/z.png`` -> ``x__y/z.txt``)."""
RECEIPT_HEADER = {"exporter": "dsfd-wider-txt", "version": 1}


def wider_txt_key(image_id: str) -> tuple[str, str]:
    """``(EVENT, NAME)`` of the file ``OUT/EVENT/NAME.txt`` holding an image's detections.

    ``EVENT/NAME`` is kept; a known image extension (any case) is removed from the last
    part; a flat id goes to :data:`FLAT_EVENT`; the folders of a deeper id are joined with
    :data:`EVENT_JOINER`. A leading ``/`` and ``.`` parts are ignored.

    Raises:
        ValueError: the id has a ``..`` or empty part, a control character, a part with
            leading or trailing spaces, or nothing left for the name.
    """
    folders, name = id_path_parts(image_id, "WIDER")
    return (EVENT_JOINER.join(folders) if folders else FLAT_EVENT), name


def wider_txt_path(image_id: str) -> str:
    """``EVENT/NAME.txt``, the file of ``image_id`` relative to ``OUT``."""
    event, name = wider_txt_key(image_id)
    return f"{event}/{name}.txt"


def plan_wider_files(image_ids: Iterable[str]) -> dict[str, str]:
    """``image_id -> EVENT/NAME.txt`` for every id (see :func:`wider_txt_key`).

    Raises:
        ValueError: an id cannot be mapped, or two ids map to the same file (both named).
    """
    return plan_files(image_ids, wider_txt_path)


INCLUSIVE_MODELS = frozenset({"release-r152"})
"""Models whose boxes end at the last pixel (the official release's training convention)."""


def box_convention(record: dict[str, object]) -> str:
    """``"inclusive"`` for a run of a model in :data:`INCLUSIVE_MODELS`, else ``"exclusive"``,
    from the run's ``run.json`` (its model name)."""
    model = record.get("model")
    name = model.get("name") if isinstance(model, dict) else None
    config = record.get("config")
    if name is None and isinstance(config, dict) and isinstance(config.get("model"), dict):
        name = config["model"].get("name")
    return "inclusive" if name in INCLUSIVE_MODELS else "exclusive"


def export_wider_txt(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    clip: bool = False,
    min_score: float = 0.0,
    convention: str | None = None,
) -> ExportSummary:
    """Write ``OUT/EVENT/NAME.txt`` for every image of the run (see the module docstring).

    Args:
        run_dir: a run directory.
        out_dir: missing, an empty folder, or an earlier export of this function (replaced).
        clip: clip each box to its image (size from the images table) and drop boxes left
            without area, for pseudo-labels; False (a benchmark submission) keeps the boxes
            as detected.
        min_score: keep detections whose float32 score is at least this (0..1).
        convention: ``"inclusive"`` or ``"exclusive"`` box corners (see the module
            docstring); None takes the run's (:func:`box_convention`).

    Returns:
        The counts; ``num_errors`` is 0 since unreadable images get an (empty) file.

    Raises:
        FileNotFoundError, pipeline.rundir.RunDirError: ``run_dir`` is not a whole run
            directory (no ``run.json``, damaged or mixed parts).
        ValueError: an id cannot be mapped, two ids map to one file, ``out_dir`` holds what
            this function did not write, a box to clip has no image size, or ``min_score``
            is out of range. Nothing is written then.
    """
    run = RunDir.open(run_dir)
    threshold = check_min_score(min_score)
    out = Path(os.path.abspath(out_dir))
    earlier = earlier_export(out, RECEIPT_HEADER, "WIDER")
    convention = convention or box_convention(dict(run.record or {}))
    if convention not in ("inclusive", "exclusive"):
        raise ValueError(f"convention must be 'inclusive' or 'exclusive', got {convention!r}")
    images = run.images()
    plan = plan_wider_files(images.column("image_id").to_pylist())
    tree = FileTree(out, {**RECEIPT_HEADER, "box_convention": convention})
    try:
        summary = _write_all(tree, plan, iter_image_boxes(run, images, min_score=threshold,
                                                          clip=bool(clip)),
                             convention == "inclusive")
        tree.publish(earlier)
    finally:
        tree.discard()
    return summary


def _write_all(tree: FileTree, plan: dict[str, str], items: Iterator[ImageBoxes],
               inclusive: bool) -> ExportSummary:
    """Write the file of every readable image from ``items``, then an empty file for every
    planned image left (unreadable ones)."""
    num_detections = num_empty = 0
    for item in items:
        if item.repeat:
            continue
        _write_file(tree, plan, item.image_id, item.boxes_xyxy, item.scores, inclusive)
        num_detections += len(item.scores)
        num_empty += not len(item.scores)
    for image_id, rel in plan.items():
        if not tree.has(rel):
            _write_file(tree, plan, image_id, np.zeros((0, 4)), np.zeros(0), inclusive)
            num_empty += 1
    return ExportSummary(num_images=len(plan), num_detections=num_detections,
                         num_empty=num_empty, num_errors=0, num_files=len(plan))


def _write_file(tree: FileTree, plan: dict[str, str], image_id: str, boxes_xyxy: np.ndarray,
                scores: np.ndarray, inclusive: bool) -> None:
    name = wider_txt_key(image_id)[1]
    text = format_wider_detections(name, boxes_xyxy, scores, inclusive=inclusive)
    tree.write(plan[image_id], text.encode("utf-8"))
