"""FDDB files: fold lists, ellipse lists, detection files and image sizes (numpy only).

Layout of an FDDB root (the official distribution)::

    ROOT/FDDB-folds/FDDB-fold-01.txt               image paths, one per line, no extension
    ROOT/FDDB-folds/FDDB-fold-01-ellipseList.txt   per image: path, face count, K ellipse lines
    ...                                            folds 01..10
    ROOT/originalPics/<path>.jpg                   the images

An ellipse line is ``ra rb angle cx cy  1``: major and minor axis radius (pixels), angle of the
major axis (radians), centre (pixels) and a constant 1 in the score slot. The standard protocol
concatenates folds 1..10 in order. Detection files use the same block structure with
``x y w h score`` lines (format ``rect``, the official ``-f 0``) or ``ra rb angle cx cy score``
lines (format ``ellipse``, ``-f 1``).

Readers tolerate a UTF-8 byte-order mark, CRLF line ends, trailing spaces, blank lines between
blocks, counts written as ``5.0`` (read as 5, as the official program does) and extra columns
after the ones they need (ignored, as the official program does). Anything else that is
malformed raises ``ValueError`` naming the file, the 1-based line number, what was expected and
what was found.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from pipeline.datasets.manifest import ManifestEntry

DetFormat = Literal["rect", "ellipse"]
NUM_FOLDS = 10
FOLDS_DIR = "FDDB-folds"
IMAGES_DIR = "originalPics"
IMAGE_EXT = ".jpg"

_COUNT_RE = re.compile(r"^\+?\d+(\.0*)?$")
_FIELDS = {"rect": 4, "ellipse": 5}
_FIELD_NAMES = {"rect": "x y w h score", "ellipse": "ra rb angle cx cy score"}


def fold_list_name(fold: int) -> str:
    """File name of fold ``fold``'s image list, e.g. ``FDDB-fold-01.txt`` (fold is 1-based)."""
    if fold < 1:
        raise ValueError(f"fold numbers start at 1, got {fold}")
    return f"FDDB-fold-{fold:02d}.txt"


def ellipse_list_name(fold: int) -> str:
    """File name of fold ``fold``'s annotations, e.g. ``FDDB-fold-01-ellipseList.txt``."""
    if fold < 1:
        raise ValueError(f"fold numbers start at 1, got {fold}")
    return f"FDDB-fold-{fold:02d}-ellipseList.txt"


@dataclass(frozen=True, eq=False)
class FddbImage:
    """The annotated faces of one image.

    Attributes:
        image_id: the fold path, e.g. ``2002/08/11/big/img_591``.
        ellipses: float64 array (K, 5) of ``ra rb angle cx cy`` (pixels, radians).
    """

    image_id: str
    ellipses: np.ndarray = field(repr=False)

    @property
    def num_faces(self) -> int:
        """Number of annotated faces K."""
        return int(self.ellipses.shape[0])


@dataclass(frozen=True, eq=False)
class FddbDetections:
    """The detections of one image, in file (or table) order.

    Attributes:
        image_id: the fold path of the image.
        regions: float64 array (K, 4) of ``x y w h`` (format ``rect``; pixels, top-left corner
            and size) or (K, 5) of ``ra rb angle cx cy`` (format ``ellipse``).
        scores: float64 array (K,) of detection scores (any real numbers; only order matters).
    """

    image_id: str
    regions: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)

    @property
    def num_detections(self) -> int:
        """Number of detections K."""
        return int(self.scores.shape[0])


# ------------------------------------------------------------------------------------ reading


def _read_lines(path: str | os.PathLike[str]) -> list[str]:
    """Lines of a text file without line ends or trailing white space (BOM and CRLF removed)."""
    text = Path(path).read_bytes().decode("utf-8-sig")
    return [line.rstrip() for line in text.splitlines()]


def _parse_count(text: str, path: object, line_no: int, image_id: str) -> int:
    stripped = text.strip()
    if not _COUNT_RE.match(stripped):
        raise ValueError(
            f"{path}:{line_no}: expected the number of regions of image {image_id!r} "
            f"(an integer such as 5 or 5.0), got {text!r}"
        )
    return int(stripped.split(".")[0])


def _parse_numbers(text: str, count: int, what: str, path: object, line_no: int) -> list[float]:
    tokens = text.split()
    if len(tokens) < count:
        raise ValueError(
            f"{path}:{line_no}: expected {count} numbers ({what}), got {len(tokens)}: {text!r}"
        )
    values: list[float] = []
    for token in tokens[:count]:
        try:
            value = float(token)
        except ValueError:
            raise ValueError(
                f"{path}:{line_no}: expected {count} numbers ({what}), found {token!r} in {text!r}"
            ) from None
        if not math.isfinite(value):
            raise ValueError(f"{path}:{line_no}: expected finite numbers ({what}), got {text!r}")
        values.append(value)
    return values


def _iter_blocks(
    path: str | os.PathLike[str], num_values: int, what: str
) -> Iterator[tuple[str, np.ndarray, int]]:
    """Yield (image_id, float64 array (K, num_values), line number of the name) per block."""
    lines = _read_lines(path)
    n = len(lines)
    i = 0
    while i < n:
        if not lines[i].strip():
            i += 1  # blank lines between blocks
            continue
        name_line = i + 1
        image_id = lines[i].strip()
        if i + 1 >= n:
            raise ValueError(
                f"{path}:{name_line + 1}: file ends after image {image_id!r}; expected its "
                f"number of regions"
            )
        count = _parse_count(lines[i + 1], path, i + 2, image_id)
        rows = np.empty((count, num_values), dtype=np.float64)
        for k in range(count):
            j = i + 2 + k
            if j >= n:
                raise ValueError(
                    f"{path}:{j + 1}: file ends inside image {image_id!r}: expected {count} "
                    f"region lines ({what}), found {k}"
                )
            rows[k] = _parse_numbers(lines[j], num_values, what, path, j + 1)
        yield image_id, rows, name_line
        i += 2 + count


def read_fold_list(path: str | os.PathLike[str]) -> list[str]:
    """Image ids of a fold list (``FDDB-fold-XX.txt``), in file order; blank lines skipped."""
    return [line.strip() for line in _read_lines(path) if line.strip()]


def read_ellipse_list(path: str | os.PathLike[str]) -> list[FddbImage]:
    """Read an annotation file (``FDDB-fold-XX-ellipseList.txt`` or a concatenation).

    Returns:
        One ``FddbImage`` per block, in file order; ``ellipses`` is float64 (K, 5)
        ``ra rb angle cx cy`` (the trailing constant column is not kept).

    Raises:
        ValueError: a malformed line (file, line number, expectation and text in the message).
    """
    return [
        FddbImage(image_id, rows)
        for image_id, rows, _ in _iter_blocks(path, 5, "ra rb angle cx cy [1]")
    ]


def read_detections(path: str | os.PathLike[str], det_format: DetFormat) -> list[FddbDetections]:
    """Read an official FDDB detection file (one file for the whole image list).

    Args:
        path: the detection file.
        det_format: ``"rect"`` (lines ``x y w h score``, official ``-f 0``) or ``"ellipse"``
            (lines ``ra rb angle cx cy score``, official ``-f 1``).

    Returns:
        One ``FddbDetections`` per block, in file order; detections in line order.
    """
    if det_format not in _FIELDS:
        raise ValueError(f"det_format must be 'rect' or 'ellipse', got {det_format!r}")
    num_regions = _FIELDS[det_format]
    out = []
    for image_id, rows, _ in _iter_blocks(path, num_regions + 1, _FIELD_NAMES[det_format]):
        out.append(FddbDetections(image_id, rows[:, :num_regions].copy(), rows[:, -1].copy()))
    return out


def check_same_images(
    annotations: Sequence[FddbImage], detections: Sequence[FddbDetections], source: object
) -> None:
    """Raise ValueError unless ``detections`` lists exactly the annotated images, in order.

    The official program compares the names line by line and aborts on a mismatch; so do we,
    naming the first differing position.
    """
    for k, (ann, det) in enumerate(zip(annotations, detections, strict=False)):
        if ann.image_id != det.image_id:
            raise ValueError(
                f"{source}: image {k + 1} is {det.image_id!r} but the annotations list "
                f"{ann.image_id!r} there; detections must follow the annotation order"
            )
    if len(annotations) != len(detections):
        raise ValueError(
            f"{source}: {len(detections)} images, but the annotations list {len(annotations)}"
        )


# ------------------------------------------------------------------------------------ writing


def _format_ellipse_block(image_id: str, ellipses: np.ndarray) -> list[str]:
    ellipses = np.asarray(ellipses, dtype=np.float64).reshape(-1, 5)
    lines = [image_id, str(ellipses.shape[0])]
    lines += [
        f"{ra:.6f} {rb:.6f} {angle:.6f} {cx:.6f} {cy:.6f}  1"
        for ra, rb, angle, cx, cy in ellipses.tolist()
    ]
    return lines


def _check_image_id(image_id: object) -> str:
    if not isinstance(image_id, str) or not image_id or image_id != image_id.strip():
        raise ValueError(f"image ids must be non-empty strings without edge spaces: {image_id!r}")
    if "\n" in image_id or "\r" in image_id:
        raise ValueError(f"image ids must be one line: {image_id!r}")
    return image_id


def _write_text(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)


def write_fold_list(path: str | os.PathLike[str], image_ids: Sequence[str]) -> None:
    """Write a fold list: one image id per line (``\\n`` line ends)."""
    _write_text(Path(path), [_check_image_id(i) for i in image_ids])


def write_ellipse_list(
    path: str | os.PathLike[str], images: Sequence[tuple[str, np.ndarray] | FddbImage]
) -> None:
    """Write an annotation file in the official format.

    Args:
        path: output file.
        images: ``(image_id, ellipses)`` pairs or ``FddbImage``s; ellipses (K, 5) float
            ``ra rb angle cx cy``. Written as the id, the count K, then K lines
            ``%.6f %.6f %.6f %.6f %.6f  1`` (two spaces before the final 1).
    """
    lines: list[str] = []
    for item in images:
        image_id, ellipses = (item.image_id, item.ellipses) if isinstance(item, FddbImage) else item
        array = np.asarray(ellipses, dtype=np.float64)
        if array.size and (array.ndim != 2 or array.shape[1] != 5):
            raise ValueError(f"ellipses of {image_id!r} must have shape (K, 5), got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"ellipses of {image_id!r} hold non-finite values")
        lines += _format_ellipse_block(_check_image_id(image_id), array)
    _write_text(Path(path), lines)


def write_fddb_folds(
    root: str | os.PathLike[str], folds: Sequence[Sequence[tuple[str, np.ndarray]]]
) -> list[Path]:
    """Write ``root/FDDB-folds/`` in the official layout.

    For XX = 01..len(folds) this writes ``FDDB-fold-XX.txt`` (the image ids) and
    ``FDDB-fold-XX-ellipseList.txt`` (the annotations, see ``write_ellipse_list``).

    Args:
        root: dataset root; ``FDDB-folds/`` is created inside it.
        folds: per fold, a sequence of ``(image_id, ellipses)`` with image ids like
            ``synth/big/img_00001`` (no extension) and ellipses float (K, 5)
            ``ra rb angle cx cy`` in pixels and radians.

    Returns:
        The written paths, fold list then ellipse list for each fold.
    """
    if not folds:
        raise ValueError("write_fddb_folds needs at least one fold")
    folder = Path(root) / FOLDS_DIR
    written: list[Path] = []
    for number, fold in enumerate(folds, start=1):
        ids = [image_id for image_id, _ in fold]
        list_path, ell_path = folder / fold_list_name(number), folder / ellipse_list_name(number)
        write_fold_list(list_path, ids)
        write_ellipse_list(ell_path, list(fold))
        written += [list_path, ell_path]
    return written


def write_detections(
    path: str | os.PathLike[str], detections: Sequence[FddbDetections], det_format: DetFormat
) -> None:
    """Write an official detection file; numbers are written with ``repr`` (exact round trip)."""
    if det_format not in _FIELDS:
        raise ValueError(f"det_format must be 'rect' or 'ellipse', got {det_format!r}")
    width = _FIELDS[det_format]
    lines: list[str] = []
    for det in detections:
        regions = np.asarray(det.regions, dtype=np.float64).reshape(-1, width)
        scores = np.asarray(det.scores, dtype=np.float64).reshape(-1)
        if regions.shape[0] != scores.shape[0]:
            raise ValueError(
                f"{det.image_id!r}: {regions.shape[0]} regions, {scores.shape[0]} scores"
            )
        lines += [_check_image_id(det.image_id), str(scores.shape[0])]
        for row, score in zip(regions.tolist(), scores.tolist(), strict=True):
            lines.append(" ".join(repr(float(v)) for v in [*row, score]))
    _write_text(Path(path), lines)


# -------------------------------------------------------------------------------- image sizes


def read_image_sizes_tsv(path: str | os.PathLike[str]) -> dict[str, tuple[int, int]]:
    """Read a size table: a header line, then ``name<TAB>width<TAB>height`` per image.

    Returns:
        image id -> (width, height) in pixels.
    """
    sizes: dict[str, tuple[int, int]] = {}
    lines = _read_lines(path)
    if not lines:
        raise ValueError(f"{path}: empty size table; expected a header 'name width height'")
    header = lines[0].split("\t") if "\t" in lines[0] else lines[0].split()
    if [h.strip().lower() for h in header[:3]] != ["name", "width", "height"]:
        raise ValueError(f"{path}:1: expected the header 'name width height', got {lines[0]!r}")
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        try:
            name, width, height = parts[0].strip(), int(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            raise ValueError(
                f"{path}:{line_no}: expected 'name<TAB>width<TAB>height' with integer sizes, "
                f"got {line!r}"
            ) from None
        if width <= 0 or height <= 0:
            raise ValueError(f"{path}:{line_no}: sizes must be positive, got {line!r}")
        sizes[name] = (width, height)
    return sizes


def write_image_sizes_tsv(
    path: str | os.PathLike[str], sizes: Mapping[str, tuple[int, int]]
) -> None:
    """Write a size table (header ``name width height``, tab separated) in mapping order."""
    lines = ["name\twidth\theight"]
    lines += [f"{_check_image_id(k)}\t{int(w)}\t{int(h)}" for k, (w, h) in sizes.items()]
    _write_text(Path(path), lines)


def read_image_sizes_from_dir(
    image_dir: str | os.PathLike[str], image_ids: Sequence[str], ext: str = IMAGE_EXT
) -> dict[str, tuple[int, int]]:
    """Sizes of ``image_dir/<image_id><ext>`` read from the file headers (Pillow, no decode).

    Raises:
        FileNotFoundError: an image is missing (the official program needs every image too).
    """
    from PIL import Image

    sizes: dict[str, tuple[int, int]] = {}
    for image_id in image_ids:
        path = Path(image_dir) / f"{image_id}{ext}"
        if not path.is_file():
            raise FileNotFoundError(f"image of {image_id!r} not found: {path}")
        with Image.open(path) as img:
            sizes[image_id] = (int(img.width), int(img.height))
    return sizes


# ------------------------------------------------------------------------------------ dataset


class FddbDataset:
    """An FDDB root holding ``FDDB-folds/`` and ``originalPics/``.

    Args:
        root: the dataset root.
        folds: which folds (1-based) to use, in order; default all folds found, 1..10.
        folds_dir: where the fold files are, if not ``ROOT/FDDB-folds``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        folds: Sequence[int] | None = None,
        folds_dir: str | os.PathLike[str] | None = None,
    ):
        self.root = Path(root)
        self.folds_dir = Path(folds_dir) if folds_dir is not None else self.root / FOLDS_DIR
        folder = self.folds_dir
        if not folder.is_dir():
            raise NotADirectoryError(f"FDDB folds folder not found: {folder}")
        if folds is None:
            folds = []
            while (folder / fold_list_name(len(folds) + 1)).is_file():
                folds.append(len(folds) + 1)
            if not folds:
                raise FileNotFoundError(f"no {fold_list_name(1)} in {folder}")
        self.folds = list(folds)
        for k in self.folds:
            for name in (fold_list_name(k), ellipse_list_name(k)):
                if not (folder / name).is_file():
                    raise FileNotFoundError(f"missing FDDB file {folder / name}")

    def fold_image_ids(self, fold: int) -> list[str]:
        """Image ids of one fold, in list order."""
        return read_fold_list(self.folds_dir / fold_list_name(fold))

    def image_ids(self) -> list[str]:
        """All image ids in the standard order (the chosen folds concatenated)."""
        return [i for k in self.folds for i in self.fold_image_ids(k)]

    def image_path(self, image_id: str) -> Path:
        """Path of an image: ``ROOT/originalPics/<image_id>.jpg``."""
        return self.root / IMAGES_DIR / f"{image_id}{IMAGE_EXT}"

    def iter_manifest(self) -> Iterator[ManifestEntry]:
        """Yield one ``ManifestEntry`` per image in the standard order (sizes unknown: None)."""
        for k in self.folds:
            for image_id in self.fold_image_ids(k):
                yield ManifestEntry(image_id=image_id, path=str(self.image_path(image_id)))

    def annotations(self) -> list[FddbImage]:
        """Ground truth of every image in the standard order.

        Raises:
            ValueError: a fold's ellipse list does not list the fold's images in order.
        """
        out: list[FddbImage] = []
        for k in self.folds:
            ids = self.fold_image_ids(k)
            ell_path = self.folds_dir / ellipse_list_name(k)
            images = read_ellipse_list(ell_path)
            got = [im.image_id for im in images]
            if got != ids:
                first = next(
                    (n for n, (a, b) in enumerate(zip(ids, got, strict=False)) if a != b),
                    min(len(ids), len(got)),
                )
                raise ValueError(
                    f"{ell_path}: image {first + 1} differs from {fold_list_name(k)} "
                    f"({len(got)} vs {len(ids)} images)"
                )
            out += images
        return out

    def describe(self) -> dict[str, object]:
        """JSON-able summary: root, folds, image and face counts per fold and in total."""
        per_fold = []
        for k in self.folds:
            images = read_ellipse_list(self.folds_dir / ellipse_list_name(k))
            per_fold.append(
                {"fold": k, "images": len(images), "faces": sum(i.num_faces for i in images)}
            )
        return {
            "dataset": "fddb",
            "root": str(self.root),
            "folds": per_fold,
            "num_images": sum(int(f["images"]) for f in per_fold),
            "num_faces": sum(int(f["faces"]) for f in per_fold),
            "images_dir": str(self.root / IMAGES_DIR),
        }


def read_annotations(path: str | os.PathLike[str]) -> list[FddbImage]:
    """Annotations from an ellipse-list file, an ``FDDB-folds/`` folder or an FDDB root.

    A folder gives all of its folds (01, 02, ... while they exist) concatenated in order, the
    standard protocol; each fold's ellipse list must follow its fold list.
    """
    p = Path(path)
    if p.is_dir():
        if (p / FOLDS_DIR).is_dir():
            return FddbDataset(p).annotations()
        if (p / fold_list_name(1)).is_file():
            return FddbDataset(p, folds_dir=p).annotations()
        raise FileNotFoundError(f"{p} holds neither {FOLDS_DIR}/ nor {fold_list_name(1)}")
    if not p.is_file():
        raise FileNotFoundError(f"annotation file or folder not found: {p}")
    return read_ellipse_list(p)


__all__ = [
    "FOLDS_DIR",
    "IMAGES_DIR",
    "NUM_FOLDS",
    "DetFormat",
    "FddbDataset",
    "FddbDetections",
    "FddbImage",
    "check_same_images",
    "ellipse_list_name",
    "fold_list_name",
    "read_annotations",
    "read_detections",
    "read_ellipse_list",
    "read_fold_list",
    "read_image_sizes_from_dir",
    "read_image_sizes_tsv",
    "write_detections",
    "write_ellipse_list",
    "write_fddb_folds",
    "write_fold_list",
    "write_image_sizes_tsv",
]
