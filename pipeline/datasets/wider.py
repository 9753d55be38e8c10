"""WIDER FACE readers and writers: annotation txt, evaluation ``.mat`` files, image tree.

numpy/scipy only (no torch, no Ray). Layout of a dataset root, real or synthetic::

    ROOT/WIDER_{train,val}/images/EVENT/NAME.jpg
    ROOT/wider_face_split/wider_face_{train,val}_bbx_gt.txt
    ROOT/eval_tools/ground_truth/{wider_face_val,wider_easy_val,wider_medium_val,wider_hard_val}.mat

Image ids are ``EVENT/NAME`` (no extension), as in the evaluation files. Boxes are the
annotation's ``x y w h`` in integer pixels (``boxes_xywh``, int32), exactly as written in the
files; degenerate boxes (w <= 0 or h <= 0) are kept, because the official evaluation keeps them.

Quirks handled (see the evaluation protocol notes, section A.1-A.2):

* an image with 0 faces has one dummy line of ten zeros in the annotation txt;
* in the val ``.mat`` files those images hold one box ``[0 0 0 0]`` instead of none, and an
  empty keep list loads as shape (0, 1), or (0, 0) when the image holds exactly one box;
* ``gt_list`` holds 1-based indices (MATLAB class double); this module exposes 0-based int64.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from pipeline.datasets.manifest import ManifestEntry

ATTRIBUTE_NAMES: tuple[str, ...] = (
    "blur",
    "expression",
    "illumination",
    "invalid",
    "occlusion",
    "pose",
)
"""Attribute columns of the annotation txt, in file order (after ``x y w h``)."""

SETTINGS: tuple[str, ...] = ("easy", "medium", "hard")
"""The three WIDER FACE evaluation settings, in the official order."""

ALL_FACES_MAT = "wider_face_val.mat"
SETTING_MATS: dict[str, str] = {s: f"wider_{s}_val.mat" for s in SETTINGS}
SPLITS: tuple[str, ...] = ("train", "val", "test")

# .mat variable names of the attribute lists, in the order of ATTRIBUTE_NAMES.
_MAT_ATTRIBUTE_VARS: dict[str, str] = {a: f"{a}_label_list" for a in ATTRIBUTE_NAMES}


def _as_int32_boxes(boxes: Any, where: str) -> np.ndarray:
    arr = np.asarray(boxes)
    if arr.dtype == np.int32 and arr.ndim == 2 and arr.shape[1] == 4:  # fast path
        return np.ascontiguousarray(arr)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.int32)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{where}: boxes_xywh must have shape (K, 4), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(arr == np.round(arr)):
            raise TypeError(f"{where}: boxes_xywh must hold integers, got dtype {arr.dtype}")
    info = np.iinfo(np.int32)
    if arr.min() < info.min or arr.max() > info.max:
        raise ValueError(f"{where}: boxes_xywh values must fit in int32")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _as_attributes(attributes: Mapping[str, Any], num_boxes: int, where: str) -> dict:
    if not isinstance(attributes, Mapping):
        raise TypeError(f"{where}: attributes must be a dict, got {type(attributes).__name__}")
    unknown = sorted(set(attributes) - set(ATTRIBUTE_NAMES))
    missing = [a for a in ATTRIBUTE_NAMES if a not in attributes]
    if unknown or missing:
        raise ValueError(
            f"{where}: attribute keys must be {list(ATTRIBUTE_NAMES)}; "
            f"missing {missing}, unknown {unknown}"
        )
    out: dict[str, np.ndarray] = {}
    for name in ATTRIBUTE_NAMES:
        arr = np.asarray(attributes[name]).reshape(-1)
        if arr.dtype == np.uint8 and arr.shape == (num_boxes,):  # fast path: already valid
            out[name] = np.ascontiguousarray(arr)
            continue
        if arr.shape != (num_boxes,):
            raise ValueError(
                f"{where}: attribute {name!r} must have shape ({num_boxes},), got {arr.shape}"
            )
        if arr.size and (arr.min() < 0 or arr.max() > 255 or np.any(arr != np.round(arr))):
            raise ValueError(f"{where}: attribute {name!r} must hold integers in 0..255")
        out[name] = np.ascontiguousarray(arr, dtype=np.uint8)
    return out


@dataclass(frozen=True)
class WiderImageRecord:
    """One annotated image, as written in the annotation txt or the evaluation ``.mat`` files.

    Attributes:
        image_id: ``EVENT/NAME`` without extension, e.g. ``0--Parade/0_Parade_marchingband_1_5``.
        boxes_xywh: (K, 4) int32 ``x y w h`` pixels (left, top, width, height).
        attributes: name -> (K,) uint8 codes for each of :data:`ATTRIBUTE_NAMES`.
        path: the image file when known, else None.

    Inputs are validated and converted (integer-valued arrays become int32/uint8).
    """

    image_id: str
    boxes_xywh: np.ndarray
    attributes: dict[str, np.ndarray]
    path: str | None = None

    def __post_init__(self) -> None:
        event, name = split_image_id(self.image_id)
        where = f"image {self.image_id!r}"
        boxes = _as_int32_boxes(self.boxes_xywh, where)
        object.__setattr__(self, "boxes_xywh", boxes)
        object.__setattr__(self, "attributes", _as_attributes(self.attributes, len(boxes), where))

    @property
    def event(self) -> str:
        """The event folder, e.g. ``0--Parade``."""
        return self.image_id.split("/", 1)[0]

    @property
    def name(self) -> str:
        """The image name without extension, e.g. ``0_Parade_marchingband_1_5``."""
        return self.image_id.split("/", 1)[1]

    @property
    def num_faces(self) -> int:
        """Number of boxes K."""
        return int(self.boxes_xywh.shape[0])


def split_image_id(image_id: str) -> tuple[str, str]:
    """Split ``EVENT/NAME`` into its two parts, checking the form.

    Raises:
        ValueError: when ``image_id`` is not exactly two non-empty parts or has an extension.
    """
    if not isinstance(image_id, str):
        raise TypeError(f"image_id must be a str, got {type(image_id).__name__}")
    parts = image_id.split("/")
    if len(parts) != 2 or not all(parts) or any(p != p.strip() for p in parts):
        raise ValueError(f"image_id must be 'EVENT/NAME', got {image_id!r}")
    if parts[1].lower().endswith(".jpg"):
        raise ValueError(f"image_id must not carry the .jpg extension, got {image_id!r}")
    return parts[0], parts[1]


@dataclass(frozen=True)
class WiderImageGT:
    """Ground truth of one image for evaluation.

    Attributes:
        image_id: ``EVENT/NAME``.
        boxes_xywh: (K, 4) int32 ``x y w h`` pixels.
        attributes: name -> (K,) uint8.
        keep: setting name -> (k,) int64 0-based indices into ``boxes_xywh`` of the faces that
            count in that setting (ascending). Only the settings the source defines are present.
    """

    image_id: str
    boxes_xywh: np.ndarray
    attributes: dict[str, np.ndarray]
    keep: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class WiderGroundTruth:
    """Ground truth of a WIDER FACE split, in file order (event by event).

    Attributes:
        images: one :class:`WiderImageGT` per image, in the order of the source file.
        events: event names in first-seen order.
        settings: the settings whose keep lists are known (``()`` for a txt-only source).
        source: where it was read from (for messages).
    """

    images: tuple[WiderImageGT, ...]
    events: tuple[str, ...]
    settings: tuple[str, ...] = ()
    source: str = ""
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, int] = {}
        for i, img in enumerate(self.images):
            if img.image_id in index:
                raise ValueError(f"{self.source}: image {img.image_id!r} appears twice")
            index[img.image_id] = i
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.images)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._index

    def __getitem__(self, image_id: str) -> WiderImageGT:
        try:
            return self.images[self._index[image_id]]
        except KeyError:
            raise KeyError(f"{image_id!r} is not an image of {self.source or 'this GT'}") from None

    def __iter__(self) -> Iterator[WiderImageGT]:
        return iter(self.images)

    @property
    def image_ids(self) -> list[str]:
        """Image ids in file order."""
        return [img.image_id for img in self.images]

    def num_faces(self, setting: str | None = None) -> int:
        """Number of boxes (``setting=None``) or of kept faces in ``setting``."""
        if setting is None:
            return int(sum(len(img.boxes_xywh) for img in self.images))
        if setting not in self.settings:
            raise KeyError(f"setting {setting!r} not available; have {list(self.settings)}")
        return int(sum(len(img.keep[setting]) for img in self.images))

    @classmethod
    def from_records(
        cls,
        records: Sequence[WiderImageRecord],
        keep: Mapping[str, Sequence[np.ndarray]] | None = None,
        source: str = "",
    ) -> WiderGroundTruth:
        """Build from records and optional 0-based keep lists (one per record per setting)."""
        keep = dict(keep or {})
        checked = _check_keep(records, keep)
        images = tuple(
            WiderImageGT(
                image_id=r.image_id,
                boxes_xywh=r.boxes_xywh,
                attributes=r.attributes,
                keep={s: checked[s][i] for s in checked},
            )
            for i, r in enumerate(records)
        )
        settings = tuple(s for s in SETTINGS if s in checked)
        return cls(images=images, events=_events_of(records), settings=settings, source=source)


def _events_of(records: Sequence[WiderImageRecord]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(r.event for r in records))


def _check_keep(
    records: Sequence[WiderImageRecord], keep: Mapping[str, Sequence[np.ndarray]]
) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {}
    for setting, lists in keep.items():
        if setting not in SETTINGS:
            raise ValueError(f"keep: unknown setting {setting!r}; expected one of {SETTINGS}")
        if len(lists) != len(records):
            raise ValueError(f"keep[{setting!r}] has {len(lists)} lists for {len(records)} records")
        checked = []
        for rec, idx in zip(records, lists, strict=True):
            arr = np.asarray(idx).reshape(-1)
            if arr.size and not np.issubdtype(arr.dtype, np.integer):
                if np.any(arr != np.round(arr)):
                    raise TypeError(f"keep[{setting!r}] for {rec.image_id!r}: not integers")
            arr = arr.astype(np.int64)
            if arr.size and (arr.min() < 0 or arr.max() >= rec.num_faces):
                raise ValueError(
                    f"keep[{setting!r}] for {rec.image_id!r}: indices must be in "
                    f"0..{rec.num_faces - 1}, got {arr.tolist()}"
                )
            if arr.size > 1 and np.any(np.diff(arr) <= 0):
                raise ValueError(
                    f"keep[{setting!r}] for {rec.image_id!r}: indices must ascend strictly, "
                    f"got {arr.tolist()}"
                )
            checked.append(arr)
        out[setting] = checked
    return out


# ----------------------------------------------------------------------------------------
# Annotation txt (wider_face_{train,val}_bbx_gt.txt)


class _Lines:
    """Line cursor over a text file that reports 1-based line numbers."""

    def __init__(self, path: Path) -> None:
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 text ({exc})") from None
        self.path = path
        self.lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if self.lines and self.lines[-1] == "":
            self.lines.pop()
        self.pos = 0

    def at_end(self) -> bool:
        while self.pos < len(self.lines) and not self.lines[self.pos].strip():
            self.pos += 1
        return self.pos >= len(self.lines)

    def next(self, expected: str) -> tuple[int, str]:
        if self.pos >= len(self.lines):
            raise ValueError(
                f"{self.path}: line {self.pos + 1}: expected {expected}, got end of file"
            )
        self.pos += 1
        return self.pos, self.lines[self.pos - 1].strip()

    def fail(self, lineno: int, expected: str, got: str) -> ValueError:
        return ValueError(f"{self.path}: line {lineno}: expected {expected}, got {got!r}")


def _parse_face_line(cur: _Lines, lineno: int, text: str) -> list[int]:
    expected = "10 integers 'x y w h blur expression illumination invalid occlusion pose'"
    fields = text.split()
    if len(fields) != 10:
        raise cur.fail(lineno, expected, text)
    try:
        return [int(f) for f in fields]
    except ValueError:
        raise cur.fail(lineno, expected, text) from None


def _image_id_from_path(cur: _Lines, lineno: int, text: str) -> str:
    if not text.lower().endswith(".jpg") or text.count("/") != 1:
        raise cur.fail(lineno, "an image path 'EVENT/NAME.jpg'", text)
    image_id = text[: -len(".jpg")]
    try:
        split_image_id(image_id)
    except ValueError:
        raise cur.fail(lineno, "an image path 'EVENT/NAME.jpg'", text) from None
    return image_id


def _read_block(cur: _Lines) -> WiderImageRecord:
    lineno, text = cur.next("an image path 'EVENT/NAME.jpg'")
    image_id = _image_id_from_path(cur, lineno, text)
    lineno, text = cur.next("the number of faces")
    if not text.isdigit():
        raise cur.fail(lineno, "the number of faces (a non-negative integer)", text)
    count = int(text)
    rows = []
    for _ in range(count):
        lineno, text = cur.next(f"a face line ({count} faces for {image_id})")
        rows.append(_parse_face_line(cur, lineno, text))
    if count == 0 and not cur.at_end():
        # The official files hold one dummy line of ten zeros for an image with no face.
        nxt = cur.lines[cur.pos].split()
        if len(nxt) == 10 and all(f.lstrip("-").isdigit() for f in nxt):
            lineno, text = cur.next("the dummy line of an image with 0 faces")
            if any(int(f) != 0 for f in text.split()):
                raise cur.fail(lineno, "the dummy line of ten zeros (count is 0)", text)
    table = np.asarray(rows, dtype=np.int64).reshape(-1, 10)
    attributes = {a: table[:, 4 + i] for i, a in enumerate(ATTRIBUTE_NAMES)}
    return WiderImageRecord(image_id=image_id, boxes_xywh=table[:, :4], attributes=attributes)


def read_wider_annotations(path: str | os.PathLike[str]) -> list[WiderImageRecord]:
    """Read an annotation file ``wider_face_{train,val}_bbx_gt.txt``.

    Accepts CRLF line endings, a UTF-8 BOM, trailing spaces and blank lines between blocks; an
    image with 0 faces may carry the official dummy line of ten zeros (skipped).

    Args:
        path: the annotation txt.

    Returns:
        One record per image block, in file order; ``path`` is None (see :class:`WiderDataset`).

    Raises:
        ValueError: a malformed file, naming the file, the line number and what was expected.
    """
    cur = _Lines(Path(path))
    records: list[WiderImageRecord] = []
    seen: dict[str, int] = {}
    while not cur.at_end():
        start = cur.pos + 1
        rec = _read_block(cur)
        if rec.image_id in seen:
            raise ValueError(
                f"{path}: line {start}: image {rec.image_id!r} already listed at line "
                f"{seen[rec.image_id]}"
            )
        seen[rec.image_id] = start
        records.append(rec)
    return records


def write_wider_annotations(
    path: str | os.PathLike[str], records: Sequence[WiderImageRecord]
) -> None:
    """Write the official annotation txt format.

    Each block is ``EVENT/NAME.jpg``, the face count, then one line
    ``x y w h blur expression illumination invalid occlusion pose `` per face (with the
    official trailing space); an image with no face gets the dummy line of ten zeros.
    """
    lines: list[str] = []
    for rec in records:
        if not isinstance(rec, WiderImageRecord):
            raise TypeError(f"records must hold WiderImageRecord, got {type(rec).__name__}")
        lines.append(f"{rec.image_id}.jpg")
        lines.append(str(rec.num_faces))
        if rec.num_faces == 0:
            lines.append("0 " * 10)
            continue
        table = np.concatenate(
            [rec.boxes_xywh.astype(np.int64)]
            + [rec.attributes[a].astype(np.int64)[:, None] for a in ATTRIBUTE_NAMES],
            axis=1,
        )
        lines.extend(" ".join(str(v) for v in row) + " " for row in table.tolist())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------
# Evaluation .mat files (eval_tools/ground_truth)


def _cell_column(values: Sequence[Any]) -> np.ndarray:
    cell = np.empty((len(values), 1), dtype=object)
    for i, v in enumerate(values):
        cell[i, 0] = v
    return cell


def _mat_records(
    records: Sequence[WiderImageRecord],
) -> tuple[list[str], list[list[int]], list[WiderImageRecord]]:
    """Group records by event (first-seen order); an image with no box gets ``[0 0 0 0]``."""
    events = list(_events_of(records))
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
    checked = _check_keep(records, {s: keep[s] for s in SETTINGS})
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


def _mat_cells(mat: dict[str, Any], var: str, path: Path, length: int | None = None) -> list:
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
    path: str | os.PathLike[str],
) -> tuple[list[WiderImageRecord], list[np.ndarray] | None]:
    """Read one evaluation ``.mat`` file (``wider_face_val.mat`` or a setting file).

    Returns:
        (records in file order, keep lists) where the keep lists are 0-based int64 arrays, one
        per record, or None when the file has no ``gt_list`` (``wider_face_val.mat``).

    Raises:
        ValueError: a missing variable or a cell of the wrong shape, naming file and variable.
    """
    path = Path(path)
    mat = scipy.io.loadmat(path, mat_dtype=True)
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


def load_wider_gt_dir(gt_dir: str | os.PathLike[str]) -> WiderGroundTruth:
    """Load the official evaluation ground truth from a folder holding the four ``.mat`` files.

    The boxes and attributes come from ``wider_face_val.mat``; the keep lists from
    ``wider_{easy,medium,hard}_val.mat``, whose image order must be the same.

    Raises:
        FileNotFoundError: a file is missing (all missing files are named).
        ValueError: the files disagree on the image list or the boxes.
    """
    gt_dir = Path(gt_dir)
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


# ----------------------------------------------------------------------------------------
# Dataset root


def wider_annotation_path(root: str | os.PathLike[str], split: str) -> Path:
    """``ROOT/wider_face_split/wider_face_{split}_bbx_gt.txt``."""
    return Path(root) / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"


def wider_images_dir(root: str | os.PathLike[str], split: str) -> Path:
    """``ROOT/WIDER_{split}/images``."""
    return Path(root) / f"WIDER_{split}" / "images"


def wider_gt_dir(root: str | os.PathLike[str]) -> Path:
    """``ROOT/eval_tools/ground_truth`` (the four evaluation ``.mat`` files of val)."""
    return Path(root) / "eval_tools" / "ground_truth"


class WiderDataset:
    """A WIDER FACE split under a dataset root (see the module docstring for the layout).

    Args:
        root: the dataset root.
        split: ``train``, ``val`` or ``test``.

    Raises:
        ValueError: unknown split. FileNotFoundError: neither annotation nor image folder.
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "val") -> None:
        if split not in SPLITS:
            raise ValueError(f"WIDER FACE split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.annotation_path = wider_annotation_path(root, split)
        self.images_dir = wider_images_dir(root, split)
        if not self.annotation_path.is_file() and not self.images_dir.is_dir():
            raise FileNotFoundError(
                f"{self.root}: no WIDER FACE {split} split (neither {self.annotation_path} "
                f"nor {self.images_dir} exists)"
            )
        self._records: list[WiderImageRecord] | None = None

    def has_annotations(self) -> bool:
        """Whether the split's annotation txt exists."""
        return self.annotation_path.is_file()

    def records(self) -> list[WiderImageRecord]:
        """Annotation records in file order (with ``path`` set); raises without a txt."""
        if self._records is None:
            if not self.has_annotations():
                raise FileNotFoundError(f"{self.annotation_path}: annotation file not found")
            self._records = [
                WiderImageRecord(r.image_id, r.boxes_xywh, r.attributes, str(self.image_path(r)))
                for r in read_wider_annotations(self.annotation_path)
            ]
        return self._records

    def image_path(self, record_or_id: WiderImageRecord | str) -> Path:
        """``ROOT/WIDER_{split}/images/EVENT/NAME.jpg`` of an image id or record."""
        image_id = record_or_id if isinstance(record_or_id, str) else record_or_id.image_id
        event, name = split_image_id(image_id)
        return self.images_dir / event / f"{name}.jpg"

    def _tree_ids(self) -> Iterator[str]:
        if not self.images_dir.is_dir():
            return
        for event in sorted(p for p in self.images_dir.iterdir() if p.is_dir()):
            for img in sorted(event.iterdir()):
                if img.is_file() and img.suffix.lower() == ".jpg":
                    yield f"{event.name}/{img.stem}"

    def iter_manifest(self) -> Iterator[ManifestEntry]:
        """Yield one entry per image (``image_id = EVENT/NAME``) in annotation order, or in
        sorted image-tree order when there is no annotation txt. Sizes are unknown (None)."""
        if self.has_annotations():
            for rec in self.records():
                yield ManifestEntry(image_id=rec.image_id, path=str(self.image_path(rec)))
        else:
            for image_id in self._tree_ids():
                yield ManifestEntry(image_id=image_id, path=str(self.image_path(image_id)))

    def ground_truth(self) -> WiderGroundTruth:
        """The evaluation ground truth: the ``.mat`` files of val when present (with keep lists),
        else the annotation txt (no keep lists)."""
        gt_dir = wider_gt_dir(self.root)
        if self.split == "val" and (gt_dir / ALL_FACES_MAT).is_file():
            return load_wider_gt_dir(gt_dir)
        return WiderGroundTruth.from_records(self.records(), source=str(self.annotation_path))

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: root, split, sources, image and face counts."""
        gt_dir = wider_gt_dir(self.root)
        info: dict[str, Any] = {
            "dataset": "wider",
            "root": str(self.root),
            "split": self.split,
            "images_dir": str(self.images_dir),
            "annotation": str(self.annotation_path) if self.has_annotations() else None,
            "eval_ground_truth": str(gt_dir) if (gt_dir / ALL_FACES_MAT).is_file() else None,
        }
        if self.has_annotations():
            recs = self.records()
            info["num_images"] = len(recs)
            info["num_faces"] = int(sum(r.num_faces for r in recs))
            info["num_events"] = len(_events_of(recs))
        else:
            info["num_images"] = sum(1 for _ in self._tree_ids())
        return info


# ----------------------------------------------------------------------------------------
# Detection (submission) files


def format_wider_detections(name: str, boxes_xyxy: np.ndarray, scores: np.ndarray) -> str:
    """One official detection file: ``NAME``, the count, then ``x y w h score`` lines.

    Rounding, as the DSFD release's ``write_to_txt`` does it, adapted to exclusive corners:
    ``x = floor(x1)``, ``y = floor(y1)``, ``w = ceil(x2 - x1)``, ``h = ceil(y2 - y1)`` and the
    score with 3 decimals. The release writes ``ceil(x2 - x1 + 1)`` because its x2 is the last
    pixel (inclusive); ours is one past it, so the ``+ 1`` is not added and a box keeps its
    width (up to the ceiling). Arithmetic is float64 on the float32 values.

    Args:
        name: the image name (line 1), without event or extension.
        boxes_xyxy: (n, 4) float ``x1 y1 x2 y2`` pixels, x2/y2 exclusive.
        scores: (n,) float.
    """
    xyxy = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(xyxy) != len(sc):
        raise ValueError(f"{name}: {len(xyxy)} boxes but {len(sc)} scores")
    if not (np.all(np.isfinite(xyxy)) and np.all(np.isfinite(sc))):
        raise ValueError(f"{name}: boxes and scores must be finite")
    xy = np.floor(xyxy[:, :2]).astype(np.int64)
    wh = np.ceil(xyxy[:, 2:] - xyxy[:, :2]).astype(np.int64)
    lines = [name, str(len(sc))]
    lines.extend(
        f"{x} {y} {w} {h} {s:.3f}"
        for (x, y), (w, h), s in zip(xy.tolist(), wh.tolist(), sc.tolist(), strict=True)
    )
    return "\n".join(lines) + "\n"
