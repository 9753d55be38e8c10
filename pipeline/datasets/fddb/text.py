"""The text conventions shared by every FDDB file: tolerant line reading, blocks of
``image id / count / K lines``, and atomic writing (package-internal helpers).

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
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from pipeline.storage import ObjectPath, location

_COUNT_RE = re.compile(r"^\+?\d+(\.0*)?$")


def read_lines(path: str | os.PathLike[str] | ObjectPath) -> list[str]:
    """Lines of a text file (a local path or an object-storage URI) without line ends or
    trailing white space (BOM and CRLF removed)."""
    text = location(path).read_bytes().decode("utf-8-sig")
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


def iter_blocks(
    path: str | os.PathLike[str] | ObjectPath, num_values: int, what: str
) -> Iterator[tuple[str, np.ndarray, int]]:
    """Yield (image_id, float64 array (K, num_values), line number of the name) per block."""
    lines = read_lines(path)
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


def check_image_id(image_id: object) -> str:
    """``image_id`` when it is a one-line, non-empty string without edge spaces."""
    if not isinstance(image_id, str) or not image_id or image_id != image_id.strip():
        raise ValueError(f"image ids must be non-empty strings without edge spaces: {image_id!r}")
    if "\n" in image_id or "\r" in image_id:
        raise ValueError(f"image ids must be one line: {image_id!r}")
    return image_id


def write_text_lines(path: Path, lines: Sequence[str]) -> None:
    """Write ``lines`` with ``\\n`` ends, atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)
