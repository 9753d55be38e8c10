"""A plain folder of images, streamed (no annotations, no Ray, no torch).

The tree is walked depth first with ``os.scandir``; the entries of each directory are sorted
by name (code-point order), so the order is deterministic and only one directory listing per
level of the current path is held in memory, never the whole tree. Hidden entries (names that
start with ``.``) are skipped. Symbolic links to files and directories are followed, except a
link back to a directory already on the current path (a cycle).

Image ids are paths relative to the root with ``/`` separators and with the extension, e.g.
``party/img_001.jpg``. A file name that is not valid UTF-8 (possible on POSIX) keeps its raw
``path`` (so it still opens) but gets an id with the offending bytes written as ``\\xNN``
escapes (``caf\\xe9.jpg``), since ids are stored as UTF-8 text in Parquet and JSON.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.datasets.manifest import ManifestEntry

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
"""Extensions (lower case) of the files taken as images; matched case-insensitively."""


def is_image_name(name: str) -> bool:
    """Whether a file name has one of :data:`IMAGE_EXTENSIONS` (any letter case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _sorted_entries(directory: str) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def iter_image_files(root: str | os.PathLike[str]) -> Iterator[str]:
    """Yield the image files under ``root`` in the deterministic depth-first order.

    Args:
        root: an existing directory.

    Yields:
        Paths (``root`` joined with the relative path, as strings).
    """
    top = os.fspath(root)
    # Stack of (directory listing iterator, identity of the directory) along the current path.
    stack = [(iter(_sorted_entries(top)), _identity(top))]
    while stack:
        entries, _ = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        if entry.is_dir():  # follows links
            ident = _identity(entry.path)
            if ident in {ident_ for _, ident_ in stack}:
                continue  # a link back to a directory on the current path
            stack.append((iter(_sorted_entries(entry.path)), ident))
        elif entry.is_file() and is_image_name(entry.name):
            yield entry.path


def utf8_id(text: str) -> str:
    """``text`` as valid UTF-8: bytes undecodable by the file system (``surrogateescape``)
    become ``\\xNN`` escapes; valid text is returned unchanged."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "backslashreplace")
    return text


def _identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


class FolderDataset:
    """Every image file under a folder (see the module docstring for order and ids).

    Args:
        root: the folder.

    Raises:
        NotADirectoryError: ``root`` is not an existing directory.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise NotADirectoryError(f"image folder not found or not a directory: {path}")
        self.root = path.absolute()
        self.name = f"folder:{self.root}"

    def iter_manifest(self) -> Iterator[ManifestEntry]:
        """Yield one entry per image; ``image_id`` is the relative posix path, sizes None."""
        prefix = len(os.fspath(self.root)) + 1
        for path in iter_image_files(self.root):
            relative = path[prefix:]
            image_id = relative.replace(os.sep, "/") if os.sep != "/" else relative
            yield ManifestEntry(image_id=utf8_id(image_id), path=path)

    def describe(self) -> dict[str, Any]:
        """``{"kind": "folder", "root": ...}``; the image count is not included because it
        needs a walk of the whole tree."""
        return {"kind": "folder", "root": str(self.root)}
