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

The list may be an object in a bucket (``list:s3://bucket/lists/val.txt``, read as a stream
through :mod:`pipeline.storage`); a relative line then names the object under the list's
folder in the bucket (``a/1.jpg`` -> ``s3://bucket/lists/a/1.jpg``; ``..`` is refused, object
keys have no parent step), and a line that is itself a URI (``s3://other/x.jpg``) is used as
it is, in a list on a disk too.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from typing import Any

from pipeline.datasets.manifest import ManifestEntry
from pipeline.datasets.registry import DatasetSpec, register
from pipeline.storage import Location, ObjectPath, location, open_binary, scheme_of

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def iter_list_lines(path: str | os.PathLike[str] | ObjectPath) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, entry)`` for each image line of a list file (1-based numbers),
    streamed from a disk or a bucket.

    Raises:
        ValueError: a malformed line (file and line number in the message).
    """
    with open_binary(path) as fh:
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

    def __init__(self, path: str | os.PathLike[str] | ObjectPath) -> None:
        file = location(path)
        if not file.is_file():
            raise FileNotFoundError(f"image list file not found: {file}")
        self.path: Location = file if isinstance(file, ObjectPath) else file.absolute()
        self.base_dir = self.path.parent
        self.name = f"list:{self.path}"

    def _image_path(self, number: int, entry: str) -> str:
        """The path or URI an image line names (see the module docstring)."""
        if scheme_of(entry) is not None or os.path.isabs(entry):
            return entry
        if isinstance(self.base_dir, ObjectPath):
            try:
                return str(self.base_dir / entry)
            except ValueError as exc:
                raise ValueError(f"{self.path}:{number}: {exc}") from None
        return os.path.join(self.base_dir, entry)

    def iter_manifest(self) -> Iterator[ManifestEntry]:
        """Yield one entry per image line; ``image_id`` is the line as written, sizes None."""
        for number, entry in iter_list_lines(self.path):
            yield ManifestEntry(image_id=entry, path=self._image_path(number, entry))

    def describe(self) -> dict[str, Any]:
        """Kind, path, number of images and the SHA-256 of the list file (one streamed pass)."""
        digest = hashlib.sha256()
        with open_binary(self.path) as fh:
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
    """``list:FILE`` (or ``list:s3://bucket/list.txt``) as a source."""
    if not spec.rest:
        raise spec.error("list file not found (empty path)")
    path = spec.path()
    if not path.is_file():
        raise spec.error(f"list file {path} not found or not a file")
    return ListFileDataset(path)


register("list", open_list, grammar="list:FILE|URI")
