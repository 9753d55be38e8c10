"""WIDER FACE evaluation ``.mat`` files (``eval_tools/ground_truth``): reader and writer.

Quirks handled (see the evaluation protocol notes, section A.2): in the val ``.mat`` files an
image with 0 faces holds one box ``[0 0 0 0]`` instead of none, and an empty keep list loads as
shape (0, 1), or (0, 0) when the image holds exactly one box; ``gt_list`` holds 1-based indices
(MATLAB class double), which this module exposes as 0-based int64.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from pipeline.datasets.wider.records import (
    ATTRIBUTE_NAMES,
    SETTINGS,
    WiderGroundTruth,
    WiderImageRecord,
    check_keep,
    events_of,
)
from pipeline.storage import Location, ObjectPath, location

ALL_FACES_MAT = "wider_face_val.mat"
SETTING_MATS: dict[str, str] = {s: f"wider_{s}_val.mat" for s in SETTINGS}

# .mat variable names of the attribute lists, in the order of ATTRIBUTE_NAMES.
_MAT_ATTRIBUTE_VARS: dict[str, str] = {a: f"{a}_label_list" for a in ATTRIBUTE_NAMES}


def _cell_column(values: Sequence[Any]) -> np.ndarray:
    cell = np.empty((len(values), 1), dtype=object)
    for i, v in enumerate(values):
        cell[i, 0] = v
    return cell


def _mat_records(
    records: Sequence[WiderImageRecord],
) -> tuple[list[str], list[list[int]], list[WiderImageRecord]]:
    """Group records by event (first-seen order); an image with no box gets ``[0 0 0 0]``."""
    events = list(events_of(records))
    groups: dict[str, list[int]] = {e: [] for e in events}
    for i, rec in enumerate(records):
        groups[rec.event].append(i)
    padded = []
    for rec in records:
        if rec.num_faces == 0:
            zeros = {a: np.zeros(1, dtype=np.uint8) for a in ATTRIBUTE_NAMES}
            rec = WiderImageRecord(rec.image_id, np.zeros((1, 4), np.int32), zeros, rec.path)
        padded.append(rec)
    return events, [groups[e] for e in events], padded


def _keep_cell(indices: np.ndarray, num_boxes: int) -> np.ndarray:
    """A 1-based keep list as MATLAB's ``find`` leaves it (double; empty is 0x1, or 0x0 for a
    single-box image, as in the official files)."""
    if len(indices) == 0:
        return np.zeros((0, 0) if num_boxes == 1 else (0, 1), dtype=np.float64)
    return (np.asarray(indices, dtype=np.float64) + 1.0).reshape(-1, 1)


def write_wider_eval_mats(
    out_dir: str | os.PathLike[str],
    records: Sequence[WiderImageRecord],
    keep: Mapping[str, Sequence[np.ndarray]],
) -> dict[str, Path]:
    """Write the four evaluation ``.mat`` files in the structure of the official ones.

    Variables (each an E x 1 cell, one cell per event in first-seen order of the image ids):
    ``event_list`` (char), ``file_list`` (n x 1 cell of char), ``face_bbx_list`` (K x 4
    int32), ``{blur,expression,illumination,invalid,occlusion,pose}_label_list`` (K x 1 uint8)
    and, in the setting files only, ``gt_list`` (k x 1 double, 1-based). Like the official val
    files, an image with no box is written with one box ``[0 0 0 0]`` (kept in no setting).

    Args:
        out_dir: folder to write ``wider_face_val.mat`` and ``wider_{easy,medium,hard}_val.mat``.
        records: the images, grouped by event in any order (cells follow first-seen events).
        keep: ``keep[setting][i]`` = 0-based indices into ``records[i].boxes_xywh`` for each of
            easy, medium and hard.

    Returns:
        File name -> written path.
    """
    missing = [s for s in SETTINGS if s not in keep]
    if missing:
        raise ValueError(f"keep must hold lists for {list(SETTINGS)}; missing {missing}")
    checked = check_keep(records, {s: keep[s] for s in SETTINGS})
    events, groups, padded = _mat_records(records)
    base: dict[str, Any] = {
        "event_list": _cell_column(events),
        "file_list": _cell_column([_cell_column([padded[i].name for i in g]) for g in groups]),
        "face_bbx_list": _cell_column(
            [_cell_column([padded[i].boxes_xywh for i in g]) for g in groups]
        ),
    }
    for attr, var in _MAT_ATTRIBUTE_VARS.items():
        base[var] = _cell_column(
            [_cell_column([padded[i].attributes[attr].reshape(-1, 1) for i in g]) for g in groups]
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {ALL_FACES_MAT: out / ALL_FACES_MAT}
    # Variables in alphabetical order, as in the official files.
    scipy.io.savemat(written[ALL_FACES_MAT], dict(sorted(base.items())), format="5")
    for setting in SETTINGS:
        gt_list = _cell_column(
            [
                _cell_column([_keep_cell(checked[setting][i], padded[i].num_faces) for i in g])
                for g in groups
            ]
        )
        name = SETTING_MATS[setting]
        written[name] = out / name
        variables = dict(sorted({**base, "gt_list": gt_list}.items()))
        scipy.io.savemat(written[name], variables, format="5")
    return written


def _mat_str(value: Any, where: str) -> str:
    arr = np.asarray(value)
    if arr.dtype.kind != "U" or arr.size != 1:
        raise ValueError(f"{where}: expected a char array, got {arr.dtype} {arr.shape}")
    return str(arr.reshape(-1)[0])


def _mat_cells(mat: dict[str, Any], var: str, path: Location,
               length: int | None = None) -> list:
    if var not in mat:
        raise ValueError(f"{path}: variable {var!r} missing; have {sorted(mat)}")
    cell = np.asarray(mat[var])
    if cell.dtype != object or cell.ndim != 2 or 1 not in cell.shape:
        raise ValueError(f"{path}: {var} must be an N x 1 cell, got {cell.dtype} {cell.shape}")
    items = list(cell.reshape(-1))
    if length is not None and len(items) != length:
        raise ValueError(f"{path}: {var} has {len(items)} cells, expected {length}")
    return items


def read_wider_eval_mat(
    path: str | os.PathLike[str] | ObjectPath,
) -> tuple[list[WiderImageRecord], list[np.ndarray] | None]:
    """Read one evaluation ``.mat`` file (``wider_face_val.mat`` or a setting file), local or
    in object storage (``s3://...``: read in one request, parsed in memory).

    Returns:
        (records in file order, keep lists) where the keep lists are 0-based int64 arrays, one
        per record, or None when the file has no ``gt_list`` (``wider_face_val.mat``).

    Raises:
        FileNotFoundError: no such file or object (one line naming it).
        ValueError: a missing variable or a cell of the wrong shape, naming file and variable;
            not a MAT file.
    """
    path = location(path)
    try:
        mat = scipy.io.loadmat(io.BytesIO(path.read_bytes()), mat_dtype=True)
    except (ValueError, TypeError, NotImplementedError, MatReadError) as exc:
        raise ValueError(f"{path}: not a readable MAT file ({exc})") from None
    events = [_mat_str(e, f"{path}: event_list") for e in _mat_cells(mat, "event_list", path)]
    n = len(events)
    files = _mat_cells(mat, "file_list", path, n)
    boxes = _mat_cells(mat, "face_bbx_list", path, n)
    attrs = {a: _mat_cells(mat, v, path, n) for a, v in _MAT_ATTRIBUTE_VARS.items()}
    gts = _mat_cells(mat, "gt_list", path, n) if "gt_list" in mat else None
    records: list[WiderImageRecord] = []
    keep: list[np.ndarray] = []
    for e, event in enumerate(events):
        names = list(np.asarray(files[e]).reshape(-1))
        for j, name_cell in enumerate(names):
            where = f"{path}: event {event!r} image {j + 1}"
            name = _mat_str(name_cell, where)
            box = np.asarray(np.asarray(boxes[e]).reshape(-1)[j])
            labels = {a: np.asarray(attrs[a][e]).reshape(-1)[j] for a in ATTRIBUTE_NAMES}
            records.append(WiderImageRecord(f"{event}/{name}", box.reshape(-1, 4), labels))
            if gts is not None:
                idx = np.asarray(np.asarray(gts[e]).reshape(-1)[j]).reshape(-1)
                keep.append(idx.astype(np.int64) - 1)
    return records, (keep if gts is not None else None)


def load_wider_gt_dir(gt_dir: str | os.PathLike[str] | ObjectPath) -> WiderGroundTruth:
    """Load the official evaluation ground truth from a folder holding the four ``.mat`` files
    (a local folder or an object-storage prefix, ``s3://bucket/eval_tools/ground_truth``).

    The boxes and attributes come from ``wider_face_val.mat``; the keep lists from
    ``wider_{easy,medium,hard}_val.mat``, whose image order must be the same.

    Raises:
        FileNotFoundError: a file is missing (all missing files are named).
        ValueError: the files disagree on the image list or the boxes.
    """
    gt_dir = location(gt_dir)
    names = [ALL_FACES_MAT, *SETTING_MATS.values()]
    missing = [n for n in names if not (gt_dir / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{gt_dir}: missing WIDER ground-truth files {missing}")
    records, _ = read_wider_eval_mat(gt_dir / ALL_FACES_MAT)
    keep: dict[str, list[np.ndarray]] = {}
    for setting, name in SETTING_MATS.items():
        srecords, skeep = read_wider_eval_mat(gt_dir / name)
        if skeep is None:
            raise ValueError(f"{gt_dir / name}: variable 'gt_list' missing")
        if [r.image_id for r in srecords] != [r.image_id for r in records]:
            raise ValueError(f"{gt_dir / name}: image list differs from {ALL_FACES_MAT}")
        for a, b in zip(records, srecords, strict=True):
            if not np.array_equal(a.boxes_xywh, b.boxes_xywh):
                raise ValueError(f"{gt_dir / name}: boxes of {a.image_id!r} differ")
        keep[setting] = skeep
    return WiderGroundTruth.from_records(records, keep, source=str(gt_dir))
