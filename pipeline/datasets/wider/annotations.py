"""WIDER FACE annotation txt (``wider_face_{train,val}_bbx_gt.txt``): reader and writer.

Quirks handled (see the evaluation protocol notes, section A.1): an image with 0 faces has one
dummy line of ten zeros; CRLF line ends, a UTF-8 BOM, trailing spaces and blank lines between
blocks are accepted. Malformed input raises ``ValueError`` naming file, line and expectation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.datasets.wider.records import ATTRIBUTE_NAMES, WiderImageRecord, split_image_id
from pipeline.storage import Location, ObjectPath, location


class _Lines:
    """Line cursor over a text file that reports 1-based line numbers."""

    def __init__(self, path: Location) -> None:
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


def read_wider_annotations(
    path: str | os.PathLike[str] | ObjectPath,
) -> list[WiderImageRecord]:
    """Read an annotation file ``wider_face_{train,val}_bbx_gt.txt``.

    Accepts CRLF line endings, a UTF-8 BOM, trailing spaces and blank lines between blocks; an
    image with 0 faces may carry the official dummy line of ten zeros (skipped).

    Args:
        path: the annotation txt (a local path or an object-storage URI).

    Returns:
        One record per image block, in file order; ``path`` is None (see :class:`WiderDataset`).

    Raises:
        ValueError: a malformed file, naming the file, the line number and what was expected.
    """
    cur = _Lines(location(path))
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
