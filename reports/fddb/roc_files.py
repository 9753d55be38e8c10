"""The ROC files of the official FDDB program (``evaluate -r PREFIX``), written and read.

``PREFIXDiscROC.txt`` holds ``TPDisc/N FP threshold`` and ``PREFIXContROC.txt`` holds
``TPCont/N FP``, one line per point ascending in threshold, numbers with 6 significant digits
(the C++ stream default), so the files are byte-identical to the program's.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from reports.fddb.roc import FddbRoc

__all__ = ["read_roc_file", "roc_lines", "write_roc"]


def _g6(value: float) -> str:
    """A number as a C++ stream prints it by default (6 significant digits, %g rules)."""
    return format(float(value), ".6g")


def roc_lines(roc: FddbRoc) -> tuple[list[str], list[str]]:
    """The lines of DiscROC.txt and ContROC.txt, ascending in threshold."""
    disc, cont = [], []
    n = roc.num_faces
    for t, tc, td, fp in zip(
        roc.thresholds.tolist(),
        roc.tp_cont.tolist(),
        roc.tp_disc.tolist(),
        roc.fp.tolist(),
        strict=True,
    ):
        if n:
            cont.append(f"{_g6(tc / n)} {_g6(fp)}")
            disc.append(f"{_g6(td / n)} {_g6(fp)} {_g6(t)}")
        else:
            cont.append("0 0")
            disc.append(f"0 0 {_g6(t)}")
    return disc, cont


def write_roc(prefix: str | os.PathLike[str], roc: FddbRoc) -> tuple[Path, Path]:
    """Write ``PREFIXDiscROC.txt`` and ``PREFIXContROC.txt`` (the official ``-r`` convention).

    Returns:
        The two paths (DiscROC, ContROC).
    """
    disc, cont = roc_lines(roc)
    prefix = os.fspath(prefix)
    paths = (Path(prefix + "DiscROC.txt"), Path(prefix + "ContROC.txt"))
    for path, lines in zip(paths, (disc, cont), strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return paths


def read_roc_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a DiscROC/ContROC text file as float64 (G, 3) or (G, 2): TPR, FP[, threshold]."""
    rows = []
    for line_no, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append([float(v) for v in line.split()])
        except ValueError:
            raise ValueError(f"{path}:{line_no}: expected numbers, got {line!r}") from None
        if len(rows[-1]) not in (2, 3) or len(rows[-1]) != len(rows[0]):
            raise ValueError(f"{path}:{line_no}: expected 2 or 3 columns, got {line!r}")
    return np.array(rows, dtype=np.float64).reshape(len(rows), -1 if rows else 3)
