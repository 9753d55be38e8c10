"""FDDB annotation text: fold lists (``FDDB-fold-XX.txt``) and ellipse lists
(``FDDB-fold-XX-ellipseList.txt``), read and written in the official format.

An ellipse line is ``ra rb angle cx cy  1``: major and minor axis radius (pixels), angle of the
major axis (radians), centre (pixels) and a constant 1 in the score slot.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.datasets.fddb.text import (
    check_image_id,
    iter_blocks,
    read_lines,
    write_text_lines,
)
from pipeline.storage import ObjectPath

FOLDS_DIR = "FDDB-folds"


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



def read_fold_list(path: str | os.PathLike[str] | ObjectPath) -> list[str]:
    """Image ids of a fold list (``FDDB-fold-XX.txt``), in file order; blank lines skipped."""
    return [line.strip() for line in read_lines(path) if line.strip()]


def read_ellipse_list(path: str | os.PathLike[str] | ObjectPath) -> list[FddbImage]:
    """Read an annotation file (``FDDB-fold-XX-ellipseList.txt`` or a concatenation).

    Returns:
        One ``FddbImage`` per block, in file order; ``ellipses`` is float64 (K, 5)
        ``ra rb angle cx cy`` (the trailing constant column is not kept).

    Raises:
        ValueError: a malformed line (file, line number, expectation and text in the message).
    """
    return [
        FddbImage(image_id, rows)
        for image_id, rows, _ in iter_blocks(path, 5, "ra rb angle cx cy [1]")
    ]


def _format_ellipse_block(image_id: str, ellipses: np.ndarray) -> list[str]:
    ellipses = np.asarray(ellipses, dtype=np.float64).reshape(-1, 5)
    lines = [image_id, str(ellipses.shape[0])]
    lines += [
        f"{ra:.6f} {rb:.6f} {angle:.6f} {cx:.6f} {cy:.6f}  1"
        for ra, rb, angle, cx, cy in ellipses.tolist()
    ]
    return lines



def write_fold_list(path: str | os.PathLike[str], image_ids: Sequence[str]) -> None:
    """Write a fold list: one image id per line (``\\n`` line ends)."""
    write_text_lines(Path(path), [check_image_id(i) for i in image_ids])


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
        lines += _format_ellipse_block(check_image_id(image_id), array)
    write_text_lines(Path(path), lines)


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
