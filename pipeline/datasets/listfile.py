"""A text file listing image paths, streamed (no annotations, no Ray, no torch).

Format: UTF-8 (a byte-order mark is allowed), one image path per line. Surrounding spaces are
removed; blank lines and lines whose first non-space character is ``#`` are skipped. A
relative path is relative to the folder of the list file, an absolute one is used as is. The
image id is the path as written on the line: it is valid UTF-8 by construction, so, unlike a
folder's ids, it needs no escape and a backslash in it is kept as written (distinct lines give
distinct ids). A line that is not valid UTF-8 or holds a control character (other than a tab)
is malformed and raises ``ValueError`` naming the file and line, so a list cannot name a file
whose name is not valid UTF-8. Where the entry's ``path`` is stored as text it goes through
:func:`pipeline.datasets.folder.escape_path`, as every stored path does. Duplicate lines are
not detected (that would hold every id in memory) and give duplicate ids.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.datasets.manifest import ManifestEntry
from pipeline.datasets.registry import DatasetSpec, register

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def iter_list_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, entry)`` for each image line of a list file (1-based numbers).

    Raises:
        ValueError: a malformed line (file and line number in the message).
    """
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"{path}:{number}: not valid UTF-8 ({exc.reason} at byte {exc.start})"
                ) from None
            entry = text.strip()
            if not entry or entry.startswith("#"):
                continue
            bad = _CONTROL.search(entry)
            if bad:
                raise ValueError(
                    f"{path}:{number}: control character {bad.group()!r} in image path {entry!r}"
                )
            yield number, entry


class ListFileDataset:
    """The images named by a list file (see the module docstring for the format).

    Args:
        path: the list file.

    Raises:
        FileNotFoundError: ``path`` is not an existing file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"image list file not found: {file}")
        self.path = file.absolute()
        self.base_dir = self.path.parent
        self.name = f"list:{self.path}"

    def iter_manifest(self) -> Iterator[ManifestEntry]:
        """Yield one entry per image line; ``image_id`` is the line as written, sizes None."""
        for _, entry in iter_list_lines(self.path):
            image_path = entry if os.path.isabs(entry) else os.path.join(self.base_dir, entry)
            yield ManifestEntry(image_id=entry, path=image_path)

    def describe(self) -> dict[str, Any]:
        """Kind, path, number of images and the SHA-256 of the list file (one streamed pass)."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        count = sum(1 for _ in iter_list_lines(self.path))
        return {
            "kind": "list",
            "path": str(self.path),
            "num_images": count,
            "sha256": digest.hexdigest(),
        }


def open_list(spec: DatasetSpec) -> ListFileDataset:
    """``list:FILE`` as a source."""
    path = Path(spec.rest).expanduser()
    if not spec.rest or not path.is_file():
        raise spec.error(f"list file {path.absolute()} not found or not a file")
    return ListFileDataset(path)


register("list", open_list, grammar="list:FILE")
