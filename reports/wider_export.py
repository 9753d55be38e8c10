"""Export a run directory's detections as WIDER FACE submission files (no torch, no Ray).

One file per image, ``OUT/EVENT/NAME.txt``, in the official format (see
:func:`pipeline.datasets.wider.format_wider_detections` for the rounding). Every image of the
run's ``images`` table gets a file, including images with no detection (the official tool
would otherwise report them missing, and the Python port would crash); detections keep their
row order within an image.

Image ids become ``EVENT/NAME`` (see :func:`wider_txt_key`): a benchmark's own ``EVENT/NAME``
is kept; for a folder or list run, a known image extension is removed from the name, a flat id
(``a.jpg``) goes into the event folder ``images`` and a deeper one (``x/y/z.png``) into the
event folder named by its folders joined with ``__`` (``x__y/z.txt``). Every id is mapped
before anything is written: an id that cannot be a file name, or two ids that map to the same
file, stop the export with nothing written.

The files are written into a new hidden folder next to ``OUT`` and renamed into place, so
``OUT`` never holds a partial export; on a failure the temporary files are removed. ``OUT``
may be missing, an empty folder, or an earlier export of this function: a receipt
``.NAME.dsfd-export.json`` next to ``OUT`` (the top level of ``OUT`` must hold only event
folders, for the Python port) records the sha256 of every file written, and an earlier export
is replaced only when ``OUT`` holds nothing but those files, unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.coco import clip_boxes_xyxy
from pipeline.datasets.folder import is_image_name
from pipeline.datasets.wider import format_wider_detections
from pipeline.rundir import RunDir
from reports.wider_predictions import group_rows

FLAT_EVENT = "images"
"""Event folder of the ids that have no folder (``a.jpg`` -> ``images/a.txt``)."""
EVENT_JOINER = "__"
"""Joins the folders of a deeper id into one event folder (``x/y/z.png`` -> ``x__y/z.txt``)."""
RECEIPT_SUFFIX = ".dsfd-export.json"
_RECEIPT_HEADER = {"exporter": "dsfd-wider-txt", "version": 1}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class WiderExportSummary:
    """What an export wrote: files, detections, and images without a detection."""

    num_files: int
    num_detections: int
    num_empty: int


def wider_txt_key(image_id: str) -> tuple[str, str]:
    """``(EVENT, NAME)`` of the file ``OUT/EVENT/NAME.txt`` holding an image's detections.

    ``EVENT/NAME`` is kept; a known image extension (any case) is removed from the last
    part; a flat id goes to :data:`FLAT_EVENT`; the folders of a deeper id are joined with
    :data:`EVENT_JOINER`. A leading ``/`` and ``.`` parts are ignored.

    Raises:
        ValueError: the id has a ``..`` or empty part, a control character, a part with
            leading or trailing spaces, or nothing left for the name.
    """
    if not isinstance(image_id, str):
        raise TypeError(f"image_id must be a str, got {type(image_id).__name__}")
    parts = [p for p in image_id.removeprefix("/").split("/") if p != "."]
    bad = next((p for p in parts if p in ("", "..") or p != p.strip() or _CONTROL.search(p)),
               None)
    if bad is not None or not parts:
        raise ValueError(f"image id {image_id!r} cannot be mapped to a WIDER file "
                         f"(bad part {bad!r})")
    name = parts[-1]
    if is_image_name(name):
        name = os.path.splitext(name)[0]
    if not name or name != name.strip():
        raise ValueError(f"image id {image_id!r} leaves no usable WIDER file name ({name!r})")
    event = EVENT_JOINER.join(parts[:-1]) if len(parts) > 1 else FLAT_EVENT
    return event, name


def plan_wider_files(image_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``image_id -> (EVENT, NAME)`` for every id (see :func:`wider_txt_key`).

    Raises:
        ValueError: an id cannot be mapped, or two ids map to the same file (both named).
    """
    plan: dict[str, tuple[str, str]] = {}
    owner: dict[tuple[str, str], str] = {}
    for image_id in image_ids:
        if image_id in plan:
            continue
        key = wider_txt_key(image_id)
        if key in owner:
            raise ValueError(f"image ids {owner[key]!r} and {image_id!r} both map to "
                             f"{key[0]}/{key[1]}.txt; nothing was written")
        owner[key] = image_id
        plan[image_id] = key
    return plan


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _receipt_path(out: Path) -> Path:
    return out.parent / f".{out.name}{RECEIPT_SUFFIX}"


def _earlier_export(out: Path) -> dict[str, list[str]]:
    """The files (``EVENT/NAME.txt`` -> accepted sha256s) of an earlier export in ``out``;
    empty when ``out`` is missing or an empty folder.

    Raises:
        ValueError: ``out`` holds anything the receipt does not prove this exporter wrote.
    """
    if os.path.islink(out) or (out.exists() and not out.is_dir()):
        raise ValueError(f"{out}: exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return {}
    try:
        receipt = json.loads(_receipt_path(out).read_text(encoding="utf-8"))
        files = receipt["files"]
        if {k: receipt[k] for k in _RECEIPT_HEADER} != _RECEIPT_HEADER:
            raise ValueError("not a receipt of this exporter")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{out}: folder is not empty and is not an earlier WIDER export "
                         f"({_receipt_path(out).name}: {exc}); refusing to write into it") from None
    problem = _unproven_entry(out, files)
    if problem is not None:
        raise ValueError(f"{out}: {problem}; refusing to replace the earlier export "
                         "(nothing was written)")
    return files


def _unproven_entry(out: Path, files: dict[str, list[str]]) -> str | None:
    """The first entry of ``out`` (sorted) that is not a file of ``files`` with one of its
    recorded sha256s, in a real folder; None when all are."""
    events = {rel.split("/", 1)[0] for rel in files}
    for event in sorted(out.iterdir()):
        if event.is_symlink() or not event.is_dir() or event.name not in events:
            return f"{event.name} was not written by the WIDER export"
        for path in sorted(event.iterdir()):
            rel = f"{event.name}/{path.name}"
            if rel not in files or path.is_symlink() or not path.is_file():
                return f"{rel} was not written by the WIDER export"
            if _sha256(path.read_bytes()) not in files[rel]:
                return f"{rel} was changed since the WIDER export wrote it"
    return None


def _write_receipt(out: Path, files: dict[str, list[str]]) -> None:
    """Replace the receipt of ``out`` atomically (temporary file, then rename)."""
    path = _receipt_path(out)
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        tmp.write_text(json.dumps({**_RECEIPT_HEADER, "files": files}, sort_keys=True) + "\n",
                       encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _check_min_score(min_score: float) -> float:
    if not (isinstance(min_score, int | float) and math.isfinite(min_score)
            and 0.0 <= min_score <= 1.0):
        raise ValueError(f"min_score must be a number in [0, 1], got {min_score!r}")
    return float(min_score)


def export_wider_txt(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    clip: bool = False,
    min_score: float = 0.0,
) -> WiderExportSummary:
    """Write ``OUT/EVENT/NAME.txt`` for every image of the run (see the module docstring).

    Args:
        run_dir: a run directory.
        out_dir: missing, an empty folder, or an earlier export of this function (replaced).
        clip: clip each box to its image (size from the images table) and drop boxes left
            without area, for pseudo-labels; False (a benchmark submission) keeps the boxes
            as detected.
        min_score: keep detections whose float32 score is at least this (0..1).

    Raises:
        FileNotFoundError, pipeline.rundir.RunDirError: ``run_dir`` is not a whole run
            directory (no ``run.json``, damaged or mixed parts).
        ValueError: an id cannot be mapped, two ids map to one file, ``out_dir`` holds what
            this function did not write, a box to clip has no image size, or ``min_score``
            is out of range. Nothing is written then.
    """
    run = RunDir.open(run_dir)
    threshold = _check_min_score(min_score)
    out = Path(os.path.abspath(out_dir))
    earlier = _earlier_export(out)
    dets = run.detections(min_score=threshold)
    images = run.images()
    ids = np.asarray(dets.column("image_id").to_numpy(zero_copy_only=False), dtype=object)
    image_ids = images.column("image_id").to_pylist()
    plan = plan_wider_files([*image_ids, *dict.fromkeys(ids.tolist())])
    sizes = dict(zip(image_ids, zip(images.column("width").to_pylist(),
                                    images.column("height").to_pylist(), strict=True),
                     strict=True))
    files = _Files(out)
    try:
        summary = _write_all(files, plan, dets, ids, sizes if clip else None)
        files.publish(earlier)
    finally:
        files.discard()
    return summary


def _write_all(
    files: _Files,
    plan: dict[str, tuple[str, str]],
    dets: pa.Table,
    ids: np.ndarray,
    sizes: dict[str, tuple[int | None, int | None]] | None,
) -> WiderExportSummary:
    """Write one file per planned image into ``files``' temporary folder; boxes are clipped
    to ``sizes[image_id]`` unless ``sizes`` is None."""
    xyxy = np.stack([dets.column(c).to_numpy() for c in ("x1", "y1", "x2", "y2")], axis=1)
    scores = dets.column("score").to_numpy()
    num_detections = 0
    for image_id, rows in group_rows(ids):
        boxes, kept = xyxy[rows], scores[rows]
        if sizes is not None:
            width, height = sizes.get(image_id, (None, None))
            if width is None or height is None:
                raise ValueError(f"image {image_id!r} has no width/height in the images "
                                 "table; cannot clip its boxes")
            boxes, keep = clip_boxes_xyxy(boxes, width, height)
            boxes, kept = boxes[keep], kept[keep]
        files.write(plan[image_id], boxes, kept)
        num_detections += len(kept)
    empty = 0
    for key in plan.values():
        if not files.has(key):
            files.write(key, np.zeros((0, 4)), np.zeros(0))
            empty += 1
    return WiderExportSummary(len(plan), num_detections, empty)


class _Files:
    """The files of one export, written into a new temporary folder next to ``out`` and
    renamed into place by :meth:`publish`; :meth:`discard` removes what is left of them."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.tmp = out.parent / f".tmp-{uuid.uuid4().hex}-{out.name}"
        self.digests: dict[str, str] = {}
        self._dirs: list[Path] = []
        out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir()

    def has(self, key: tuple[str, str]) -> bool:
        """Whether the file of ``(EVENT, NAME)`` was written."""
        return f"{key[0]}/{key[1]}.txt" in self.digests

    def write(self, key: tuple[str, str], boxes_xyxy: np.ndarray, scores: np.ndarray) -> None:
        """Write ``EVENT/NAME.txt`` (a new file: an existing one means two ids collide on a
        case-insensitive file system, and raises ValueError)."""
        event, name = key
        folder = self.tmp / event
        if not folder.is_dir():
            folder.mkdir()
            self._dirs.append(folder)
        data = format_wider_detections(name, boxes_xyxy, scores).encode("utf-8")
        rel = f"{event}/{name}.txt"
        try:
            with open(self.tmp / rel, "xb") as fh:
                self.digests[rel] = ""  # created: removed by discard() on a failure
                fh.write(data)
        except FileExistsError:
            raise ValueError(f"two image ids map to {rel} on this file system (letter case?); "
                             "nothing was written") from None
        self.digests[rel] = _sha256(data)

    def publish(self, earlier: dict[str, list[str]]) -> None:
        """Replace the earlier export (already checked) by the temporary folder."""
        union = {rel: sorted({*earlier.get(rel, []), digest})
                 for rel, digest in self.digests.items()}
        _write_receipt(self.out, {**earlier, **union})  # proves both, whatever happens next
        for rel in earlier:
            (self.out / rel).unlink(missing_ok=True)
        for event in {rel.split("/", 1)[0] for rel in earlier}:
            if (self.out / event).is_dir():
                (self.out / event).rmdir()
        os.replace(self.tmp, self.out)  # over a missing or an empty folder
        _write_receipt(self.out, {rel: [d] for rel, d in self.digests.items()})
        self.digests, self._dirs = {}, []

    def discard(self) -> None:
        """Remove the files and folders this export created that were not published."""
        for rel in self.digests:
            (self.tmp / rel).unlink(missing_ok=True)
        for folder in self._dirs:
            if folder.is_dir():
                folder.rmdir()
        if self.tmp.is_dir():
            self.tmp.rmdir()
