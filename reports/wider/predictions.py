"""WIDER FACE predictions as the two evaluators read them (numpy and pyarrow only).

Two sources:

* a folder of official-format txt files ``PRED_DIR/EVENT/NAME.txt`` (line 1 the name, line 2
  the count, then ``x y w h score`` lines);
* a run directory (Parquet ``detections`` table, float32 ``x1 y1 x2 y2`` pixels with x2/y2
  exclusive), read through :class:`pipeline.rundir.RunDir`. Its boxes become the txt semantics
  ``x = x1, y = y1, w = x2 - x1, h = y2 - y1`` (float64 of the float32 values, no rounding),
  its scores float64 of the float32 values, in row order (the order an export would write).

Each flavour (:mod:`reports.wider.flavours`) reads txt files the way its tool does:

* ``matlab`` (official ``read_pred.m``): loops over the ground-truth images; a missing file is
  reported and means no detections; reads the count on line 2 and exactly that many lines; a
  line's box is its first 4 numbers and its score the **last** number; a count larger than the
  lines, a line with fewer than 4 numbers or a non-numeric line drops the image's detections
  ("Invalid format"); detections are then sorted by score, descending, with a stable sort.
* ``pyport`` (wondervictor ``evaluation.py``): lists every event folder and file; the image key
  is line 1 after the last ``/`` with trailing ``.jpg`` characters stripped; ignores the count
  and parses every line after line 2 split on single spaces (a trailing space or blank line
  crashes it); no sorting; a ground-truth image without a file crashes it (``KeyError``).
  Where the port would crash, :class:`WiderPortCrash` says so instead of inventing a number.

Both flavours refuse what neither tool handles meaningfully and accept what they do:

* a ``nan``/``inf`` score or box coordinate among the values a tool reads raises ValueError
  naming the file and line (the run-directory table and image), as the exporter refuses them;
* boxes of zero or negative width or height are evaluated exactly as the tools evaluate them,
  with one warning per file (:attr:`WiderPredictions.warnings`) giving the first such line and
  how many there are.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.boxes import xyxy_to_xywh
from pipeline.datasets.wider import WiderGroundTruth
from pipeline.rundir import RunDir
from pipeline.storage import Location, ObjectPath, list_dir, location
from reports.wider import flavours
from reports.wider.flavours import Flavour, WiderPortCrash

_NUMBER_SEPARATORS = str.maketrans({",": " ", "\t": " ", "\r": " ", "\f": " ", "\v": " "})


@dataclass(frozen=True)
class ImageDetections:
    """Detections of one image, in the order the evaluator processes them.

    Attributes:
        boxes_xywh: (n, 4) float64 ``x y w h`` pixels.
        scores: (n,) float64 raw scores: the column the evaluator normalises (the last one).
        threshold_scores: None, or (n,) float64 raw values that the pyport thresholds instead of
            the normalised ``scores`` (its files with more than 5 columns: it normalises the
            last column but thresholds the fifth).
    """

    boxes_xywh: np.ndarray
    scores: np.ndarray
    threshold_scores: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])


EMPTY = ImageDetections(np.zeros((0, 4)), np.zeros(0))


@dataclass
class WiderPredictions:
    """Predictions keyed by image id (``EVENT/NAME``), as one flavour reads them.

    Attributes:
        flavour: the name of the flavour that read them (``matlab`` or ``pyport``).
        images: image id -> detections for every ground-truth image the tool finds (matlab:
            sorted; pyport: file order). Images absent here have no detections.
        extra: detections of images the tool reads but that are not in the ground truth
            (pyport normalises scores over them too; matlab never reads them).
        missing: ground-truth images without a prediction file / run row.
        messages: what the official tool would print (missing files, invalid formats).
        warnings: our own notes on inputs the tool accepts silently, one line per file (or
            one for a run directory): boxes of zero or negative width or height.
        source: the folder read.
    """

    flavour: str
    images: dict[str, ImageDetections] = field(default_factory=dict)
    extra: dict[str, ImageDetections] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def num_detections(self) -> int:
        """Detections on ground-truth images."""
        return int(sum(len(d) for d in self.images.values()))


def stable_descending(scores: np.ndarray) -> np.ndarray:
    """Indices sorting ``scores`` descending with ties in input order (MATLAB's
    ``sort(..., 'descend')``, which also puts NaN first)."""
    nan = np.isnan(scores)
    order = np.argsort(-scores, kind="stable")
    if nan.any():
        order = np.concatenate([np.flatnonzero(nan), order[~nan[order]]])
    return order


def in_processing_order(det: ImageDetections, flavour: Flavour) -> ImageDetections:
    """``det`` in the order ``flavour`` processes an image's detections: sorted by score
    (stable, descending) where the flavour sorts, else as read."""
    if not flavour.sorts_detections:
        return det
    order = stable_descending(det.scores)
    return ImageDetections(det.boxes_xywh[order], det.scores[order])


# ----------------------------------------------------------------------------------------
# Input checks shared by both flavours and the run directory

FIRST_BOX_LINE = 3  # 1-based line of a txt file's first detection (after name and count)


def refuse_non_finite(
    values: np.ndarray, names: Sequence[str], locate: Callable[[int], str]
) -> None:
    """Raise ValueError at the first row holding a ``nan`` or ``inf`` among ``values``.

    Args:
        values: (n, m) float64, the numbers a tool reads from each of n detections.
        names: m column names (``x``, ``score``, ...), used in the message.
        locate: row index -> where that row is (``PATH: line N``), used in the message.

    Raises:
        ValueError: ``WHERE: COLUMN is nan; ...`` for the first non-finite value.
    """
    bad = ~np.isfinite(values)
    if not bad.any():
        return
    row = int(np.flatnonzero(bad.any(axis=1))[0])
    col = int(np.flatnonzero(bad[row])[0])
    raise ValueError(
        f"{locate(row)}: {names[col]} is {float(values[row, col])!r}; scores and box coordinates "
        "must be finite numbers"
    )


def degenerate_rows(boxes_xywh: np.ndarray) -> np.ndarray:
    """(k,) int64 indices of the boxes ((n, 4) ``x y w h``) with ``w <= 0`` or ``h <= 0``."""
    return np.flatnonzero((boxes_xywh[:, 2] <= 0) | (boxes_xywh[:, 3] <= 0))


def _boxes(count: int) -> str:
    return f"{count} box" if count == 1 else f"{count} boxes"


def degenerate_warning(boxes_xywh: np.ndarray, where: str) -> str | None:
    """The one-line warning for a txt file's degenerate boxes, or None if it has none.

    Args:
        boxes_xywh: (n, 4) float64 boxes in file order (row k on line ``k + 3``).
        where: the file, as shown to the user.
    """
    rows = degenerate_rows(boxes_xywh)
    if len(rows) == 0:
        return None
    return (
        f"{where}: line {int(rows[0]) + FIRST_BOX_LINE}: {_boxes(len(rows))} with zero or "
        "negative width or height (evaluated as the official tools do)"
    )


def _txt_line(where: str) -> Callable[[int], str]:
    return lambda row: f"{where}: line {row + FIRST_BOX_LINE}"


# ----------------------------------------------------------------------------------------
# matlab flavour: read_pred.m


def _matlab_numbers(line: str) -> list[float] | None:
    """The numbers ``str2num`` finds on a line of plain numbers, or None if it is not one."""
    tokens = line.translate(_NUMBER_SEPARATORS).split()
    try:
        values = [float(t) for t in tokens if "_" not in t]
    except ValueError:
        return None
    return values if len(values) == len(tokens) else None


MATLAB_COLUMNS = ("x", "y", "w", "h", "score")  # score: the last number on the line


def matlab_txt_rows(text: str) -> np.ndarray | None:
    """The rows ``read_pred.m`` reads from one prediction file, in file order.

    Returns:
        (n, 5) float64 ``x y w h score`` (box = first 4 numbers, score = last number; row k
        from line ``k + 3``), (0, 5) for a count of 0 or less, or None for "Invalid format"
        (the tool then drops the image's detections).
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) < 2:
        return None
    count_values = _matlab_numbers(lines[1])
    if count_values is None or len(count_values) != 1 or not math.isfinite(count_values[0]):
        return None
    count = count_values[0]
    if count != int(count):
        return None
    if count <= 0:
        return np.zeros((0, 5))
    n = int(count)
    if len(lines) < n + 2:
        return None
    rows = np.empty((n, 5), dtype=np.float64)
    for k in range(n):
        values = _matlab_numbers(lines[k + 2])
        if values is None or len(values) < 4:
            return None
        rows[k, :4] = values[:4]
        rows[k, 4] = values[-1]
    return rows


def parse_matlab_file(text: str, where: str) -> tuple[ImageDetections | None, str | None]:
    """Parse one prediction file as ``read_pred.m`` does, checking what it reads.

    Args:
        text: the file's contents.
        where: the file, as shown in messages.

    Returns:
        (detections sorted by score, stable and descending, ``EMPTY`` for a count of 0 or less,
        None for "Invalid format"; the degenerate-box warning or None).

    Raises:
        ValueError: a ``nan``/``inf`` among the numbers the tool reads (file and line).
    """
    rows = matlab_txt_rows(text)
    if rows is None:
        return None, None
    if len(rows) == 0:
        return EMPTY, None
    refuse_non_finite(rows, MATLAB_COLUMNS, _txt_line(where))
    det = in_processing_order(ImageDetections(rows[:, :4], rows[:, 4]), flavours.MATLAB)
    return det, degenerate_warning(rows[:, :4], where)


def parse_matlab_txt(text: str, where: str = "<prediction file>") -> ImageDetections | None:
    """:func:`parse_matlab_file` without the warning: sorted detections, ``EMPTY`` or None."""
    return parse_matlab_file(text, where)[0]


def _read_text(path: Location) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def _file_test(folder: Location) -> Callable[[Location], bool]:
    """``is_file`` for paths below ``folder``; below an object-storage prefix answered from one
    listing, not one request per image."""
    if isinstance(folder, Path):
        return lambda path: path.is_file()
    keys = {f"{folder.scheme}://{info.path}" for info in folder.walk_files()}
    return lambda path: str(path) in keys


def _children(folder: Location) -> list[tuple[Location, bool]]:
    """``(path, is a folder)`` of each entry directly in ``folder``, sorted by name."""
    if isinstance(folder, Path):
        return [(p, p.is_dir()) for p in sorted(folder.iterdir())]
    return [(e.path, not e.is_file) for e in list_dir(folder)]


def read_matlab_txt_dir(pred_dir: Location, gt: WiderGroundTruth) -> WiderPredictions:
    """Read ``PRED_DIR/EVENT/NAME.txt`` for every ground-truth image, as ``read_pred.m``
    (a local folder or an object-storage prefix).

    Raises:
        ValueError: a ``nan``/``inf`` among the numbers the tool reads (file and line).
    """
    out = WiderPredictions(flavour=flavours.MATLAB.name, source=str(pred_dir))
    is_file = _file_test(pred_dir)
    for img in gt:
        event, name = img.image_id.split("/", 1)
        path = pred_dir / event / f"{name}.txt"
        if not is_file(path):
            out.missing.append(img.image_id)
            out.messages.append(f"Can not find the prediction file {event} {name}")
            continue
        det, warning = parse_matlab_file(_read_text(path), str(path))
        if det is None:
            out.messages.append(f"Invalid format {event} {name}")
        elif len(det):
            out.images[img.image_id] = det
        if warning is not None:
            out.warnings.append(warning)
    return out


# ----------------------------------------------------------------------------------------
# pyport flavour: evaluation.py (get_preds / read_pred_file)


def parse_pyport_txt(text: str, where: str) -> tuple[str, np.ndarray]:
    """Parse one file as the port's ``read_pred_file``: (image key, (n, C) float64 table).

    Raises:
        WiderPortCrash: where the port raises (empty file, trailing space, blank line,
            non-numeric value, rows of different lengths).
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [ln + "\n" for ln in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    if not lines:
        raise WiderPortCrash(f"IndexError: {where} is empty")
    key = lines[0].rstrip("\n\r").split("/")[-1].rstrip(".jpg")
    try:
        rows = [[float(a) for a in ln.rstrip("\r\n").split(" ")] for ln in lines[2:]]
    except ValueError as exc:
        raise WiderPortCrash(f"ValueError: {exc} in {where}") from None
    if len({len(r) for r in rows}) > 1:
        raise WiderPortCrash(f"ValueError: lines of different lengths in {where}")
    table = np.asarray(rows, dtype=np.float64)
    return key, table.reshape(len(rows), -1) if rows else np.zeros((0, 5))


def _pyport_detections(table: np.ndarray, where: str) -> ImageDetections:
    """The detections the port takes from one file's (n, C) table, in file order.

    Raises:
        WiderPortCrash: fewer than 5 columns.
        ValueError: a ``nan``/``inf`` in a column the port uses (box, 5th column, last column).
    """
    if table.shape[0] == 0:
        return EMPTY
    columns = table.shape[1]
    if columns < 5:
        raise WiderPortCrash(f"IndexError: {where} has {columns} columns, needs 5")
    if columns == 5:
        refuse_non_finite(table, ("x", "y", "w", "h", "score"), _txt_line(where))
    else:
        used = table[:, [0, 1, 2, 3, 4, columns - 1]]
        names = ("x", "y", "w", "h", "column 5 (thresholded)", "last column (score)")
        refuse_non_finite(used, names, _txt_line(where))
    thr = table[:, 4].copy() if columns > 5 else None
    return ImageDetections(table[:, :4].copy(), table[:, -1].copy(), thr)


def read_pyport_txt_dir(pred_dir: Location, gt: WiderGroundTruth) -> WiderPredictions:
    """Read every file of every event folder, as the port's ``get_preds``; then look up each
    ground-truth image the way its evaluation loop does (crashing where it crashes).

    Raises:
        WiderPortCrash: where the port crashes.
        ValueError: a ``nan``/``inf`` the port would read, in any file (file and line).
    """
    out = WiderPredictions(flavour=flavours.PYPORT.name, source=str(pred_dir))
    found: dict[str, tuple[str, np.ndarray]] = {}
    children = _children(pred_dir)
    for event_dir, event_is_dir in children:
        if not event_is_dir:
            raise WiderPortCrash(f"NotADirectoryError: {event_dir} is not an event folder")
        for file, file_is_dir in _children(event_dir):
            if file_is_dir:
                raise WiderPortCrash(f"IsADirectoryError: {file}")
            key, table = parse_pyport_txt(_read_text(file), str(file))
            image_id = f"{event_dir.name}/{key}"
            if image_id in found:
                raise ValueError(
                    f"{file}: names image {key!r} like {found[image_id][0]}; the port keeps "
                    "whichever its directory listing returns last, so its result is undefined"
                )
            found[image_id] = (str(file), table)
    events = {k.split("/", 1)[0] for k in found} | {p.name for p, is_dir in children if is_dir}
    gt_ids = set(gt.image_ids)
    for img in gt:
        event, name = img.image_id.split("/", 1)
        if event not in events:
            raise WiderPortCrash(f"KeyError: {event!r}, no folder for event {event}")
        if img.image_id not in found:
            raise WiderPortCrash(f"KeyError: {name!r}, no prediction file for {img.image_id}")
    for image_id, (where, table) in found.items():
        det = _pyport_detections(table, where)
        if image_id in gt_ids:
            out.images[image_id] = det
            warning = degenerate_warning(det.boxes_xywh, where)
            if warning is not None:
                out.warnings.append(warning)
        elif len(det):
            out.extra[image_id] = det
    return out


TXT_READERS: dict[str, Callable[[Location, WiderGroundTruth], WiderPredictions]] = {
    flavours.MATLAB.name: read_matlab_txt_dir,
    flavours.PYPORT.name: read_pyport_txt_dir,
}  # flavour name -> how its tool reads a folder of txt files


def read_txt_predictions(
    pred_dir: str | os.PathLike[str] | ObjectPath, gt: WiderGroundTruth,
    flavour: str | Flavour = "matlab",
) -> WiderPredictions:
    """Read a folder of official-format txt files (local, or an object-storage prefix) as
    ``flavour``'s tool does.

    Raises:
        ValueError: an unknown flavour; a ``nan``/``inf`` score or box coordinate the tool
            would read (file and line).
        NotADirectoryError: ``pred_dir`` is not a folder.
        WiderPortCrash: (pyport) where the port would crash.
    """
    reader = TXT_READERS[flavours.flavour(flavour).name]
    folder = location(pred_dir)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: prediction folder not found")
    return reader(folder, gt)


# ----------------------------------------------------------------------------------------
# Run directory (Parquet)


def group_rows(image_ids: np.ndarray) -> Iterable[tuple[str, np.ndarray]]:
    """Group row indices by image id, keeping row order within an image.

    Args:
        image_ids: (N,) object array of image ids.

    Yields:
        (image id, (k,) int64 row indices ascending), images in sorted id order.
    """
    if len(image_ids) == 0:
        return
    uniq, inverse = np.unique(image_ids, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    for rows in np.split(order, bounds):
        yield str(uniq[inverse[rows[0]]]), rows


def group_detection_columns(
    image_ids: np.ndarray, boxes_xyxy: np.ndarray, scores: np.ndarray
) -> Iterable[tuple[str, ImageDetections]]:
    """Group detection rows by image, keeping row order within an image.

    Args:
        image_ids: (N,) object array of ``EVENT/NAME``.
        boxes_xyxy: (N, 4) float32 ``x1 y1 x2 y2`` pixels, x2/y2 exclusive.
        scores: (N,) float32.

    Yields:
        (image id, detections in row order) with ``w = x2 - x1`` and ``h = y2 - y1`` computed
        in float64 from the float32 values.
    """
    xywh = xyxy_to_xywh(boxes_xyxy, dtype=np.float64)  # (N, 4), exact for float32 input
    score64 = scores.astype(np.float64)
    for image_id, rows in group_rows(image_ids):
        yield image_id, ImageDetections(xywh[rows], score64[rows])


def _run_degenerate_warning(images: dict[str, ImageDetections], where: str) -> str | None:
    """One warning for all degenerate boxes on the given images of a run, or None."""
    counts = {i: len(degenerate_rows(d.boxes_xywh)) for i, d in images.items()}
    hit = [i for i, n in counts.items() if n]
    if not hit:
        return None
    num_images = f"{len(hit)} image" if len(hit) == 1 else f"{len(hit)} images"
    return (
        f"{where}: {_boxes(sum(counts.values()))} with zero or negative width or height on "
        f"{num_images} (first: {hit[0]}) (evaluated as the official tools do)"
    )


def _read_run_table(run_dir: Location) -> tuple[np.ndarray, np.ndarray, set[str]]:
    """A run's detection rows and the images it covered.

    Returns:
        (image ids (N,) object, values (N, 5) float32 ``x1 y1 x2 y2 score``, the ids of every
        image in the ``images`` table or with a detection row).

    Raises:
        ValueError: a ``nan``/``inf`` in any detection row (table row and image); a damaged or
            mixed run directory (``pipeline.rundir.RunDirError``, naming the parts).
    """
    run = RunDir.open(run_dir)
    dets = run.detections()
    covered = run.images().column("image_id").to_pylist()
    image_ids = np.asarray(dets.column("image_id").to_numpy(zero_copy_only=False), dtype=object)
    columns = ("x1", "y1", "x2", "y2", "score")
    values = np.stack([dets.column(c).to_numpy() for c in columns], axis=1)  # (N, 5) float32
    where = str(run_dir / "detections")
    refuse_non_finite(
        values.astype(np.float64), columns, lambda r: f"{where}: row {r + 1} (image {image_ids[r]})"
    )
    return image_ids, values, set(covered) | set(np.unique(image_ids).tolist())


def read_run_predictions(
    run_dir: str | os.PathLike[str] | ObjectPath, gt: WiderGroundTruth,
    flavour: str | Flavour = "matlab",
) -> WiderPredictions:
    """Read a run directory's detections (a local folder or an object-storage URI such as
    ``s3://bucket/run``) as ``flavour`` would read its exported txt files.

    Boxes become ``x = x1, w = x2 - x1`` (float64, no rounding); for a run of the official
    network (inclusive corners, see ``pipeline.exports.wider.box_convention``) ``w = x2 - x1
    + 1``, as its submission writes them. An image is *missing* when it is neither in the
    ``images`` table nor has a detection row (an export writes no file for it): matlab treats
    it as no detections, pyport crashes.
    Degenerate boxes on ground-truth images give one warning for the whole run.

    Raises:
        WiderPortCrash: (pyport) a ground-truth image is missing from the run.
        ValueError: an unknown flavour; a ``nan``/``inf`` score or coordinate in any detection
            row (as the exporter refuses it), naming the image and the table row; a damaged or
            mixed run directory (``pipeline.rundir.RunDirError``, naming the parts).
    """
    from pipeline.exports.wider import box_convention

    fl = flavours.flavour(flavour)
    run_dir = location(run_dir)
    image_ids, values, known = _read_run_table(run_dir)
    boxes = values[:, :4].astype(np.float64)
    if box_convention(dict(RunDir.open(run_dir).record or {})) == "inclusive":
        boxes[:, 2:] += 1.0  # the release's x2/y2 are the last pixel: as its export writes w
    out = WiderPredictions(flavour=fl.name, source=str(run_dir))
    for image_id, det in group_detection_columns(image_ids, boxes, values[:, 4]):
        if image_id in gt:
            out.images[image_id] = in_processing_order(det, fl)
        elif fl.reads_every_file:
            out.extra[image_id] = det
    for img in gt:
        if img.image_id not in known:
            event, name = img.image_id.split("/", 1)
            if fl.crashes_on_missing_image:
                raise WiderPortCrash(f"KeyError: {name!r}, image {img.image_id} not in the run")
            out.missing.append(img.image_id)
            out.messages.append(f"Can not find the prediction file {event} {name}")
    if not fl.reads_every_file:  # the tool loops over the ground-truth images, in their order
        out.images = {i.image_id: out.images[i.image_id] for i in gt if i.image_id in out.images}
    warning = _run_degenerate_warning(out.images, str(run_dir / "detections"))
    if warning is not None:
        out.warnings.append(warning)
    return out
