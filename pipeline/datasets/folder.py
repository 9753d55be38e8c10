"""A plain folder of images, streamed (no annotations, no Ray, no torch).

The tree is walked depth first with ``os.scandir``; the entries of each directory are sorted
by name (code-point order), so the order is deterministic and only one directory listing per
level of the current path is held in memory, never the whole tree. Hidden entries (names that
start with ``.``) are skipped. Symbolic links to files and directories are followed, except a
link back to a directory already on the current path (a cycle, skipped: its images are listed
through the real path).

Nothing the walk meets is dropped silently and nothing in the tree stops it: an entry named
like an image that is not a readable regular file (a dangling link, a link loop, a pipe), an
entry whose type cannot be read (it may be a folder), and a folder that cannot be listed are
yielded like images, so that each becomes an ``error`` row whose reason the decoder gives
(``pipeline.images``). Only the root itself must be listable.

Image ids are paths relative to the root with ``/`` separators and with the extension, e.g.
``party/img_001.jpg``, passed through :func:`escape_path`: ids are stored as UTF-8 text in
Parquet and JSON, so a byte of a file name that is not valid UTF-8 (possible on POSIX) is
written ``\\xNN`` and a literal backslash ``\\\\`` (so a file literally named ``caf\\xe9.jpg``
and one whose raw name holds the byte 0xE9 get different ids). The entry's ``path`` is the
raw file-system path, which opens the file; stored as text it goes through the same
:func:`escape_path`, and :func:`unescape_path` turns the stored text back into the exact path.

The folder may also be an object-storage prefix (``folder:s3://bucket/photos``, see
:mod:`pipeline.storage`): its objects are listed in key order (byte order of the whole key,
which is not quite the depth-first order of a disk walk), hidden names (a part starting with
``.``) are skipped, ids are the keys relative to the prefix, and each entry's ``path`` is the
object's URI, which the decoder reads directly.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.datasets.manifest import ManifestEntry
from pipeline.datasets.registry import DatasetSpec, register
from pipeline.storage import ObjectPath, is_remote, iter_object_files, location

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
"""Extensions (lower case) of the files taken as images; matched case-insensitively."""

_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4})")


def is_image_name(name: str) -> bool:
    """Whether a file name has one of :data:`IMAGE_EXTENSIONS` (any letter case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _sorted_entries(directory: str) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def _entry_kind(entry: os.DirEntry[str]) -> str:
    """``"dir"`` to walk into, ``"yield"`` for an image or an unreadable entry, or ``"skip"``
    for a file (or pipe, socket, device) not named like an image."""
    try:
        if entry.is_dir():  # follows links
            return "dir"
        if entry.is_file():
            return "yield" if is_image_name(entry.name) else "skip"
    except OSError:
        return "yield"  # its type cannot be read: the decoder reports why
    if is_image_name(entry.name):
        return "yield"  # a dangling link, a link loop, a pipe: an error row, not a gap
    try:
        os.stat(entry.path)
    except OSError:
        return "yield"  # may have been a folder: reported rather than dropped
    return "skip"


_Level = tuple[Iterator[os.DirEntry[str]], tuple[int, int]]


def iter_image_files(root: str | os.PathLike[str]) -> Iterator[str]:
    """Yield the image files under ``root`` in the deterministic depth-first order.

    Besides image files, yields the entries the walk cannot read (see the module docstring),
    so that they become error rows; it never raises for an entry below ``root``.

    Args:
        root: an existing directory.

    Yields:
        Paths (``root`` joined with the relative path, as strings).

    Raises:
        OSError: ``root`` itself cannot be listed.
    """
    top = os.fspath(root)
    # Stack of (directory listing iterator, identity of the directory) along the current path.
    stack: list[_Level] = [(iter(_sorted_entries(top)), _identity(top))]
    while stack:
        entries, _ = stack[-1]
        entry = next(entries, None)
        if entry is None:
            stack.pop()
            continue
        kind = _entry_kind(entry)
        if kind == "yield":
            yield entry.path
        elif kind == "dir":
            try:
                ident = _identity(entry.path)
                if any(ident == on_path for _, on_path in stack):
                    continue  # a link back to a directory on the current path
                listing = _sorted_entries(entry.path)
            except OSError:
                yield entry.path  # a folder that cannot be listed: an error row
                continue
            stack.append((iter(listing), ident))


def utf8_id(text: str) -> str:
    """``text`` as valid UTF-8: bytes undecodable by the file system (``surrogateescape``)
    become ``\\xNN`` escapes; valid text is returned unchanged.

    Not reversible (a literal ``\\xNN`` in valid text stays as it is); for messages. Ids and
    stored paths use :func:`escape_path`.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "backslashreplace")
    return text


def _escape_char(char: str) -> str:
    if char == "\\":
        return "\\\\"
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte the file system could not decode
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF:  # any other lone surrogate
        return f"\\u{code:04x}"
    return char


def escape_path(text: str) -> str:
    """A file-system string as valid UTF-8 text, reversibly (an injective map).

    A backslash becomes ``\\\\``, an undecodable byte (a ``surrogateescape`` character
    U+DC80..U+DCFF) ``\\xNN`` with two lower-case hex digits, any other lone surrogate
    ``\\uXXXX``; everything else is kept. Text that is valid UTF-8 and holds no backslash is
    returned unchanged. :func:`unescape_path` inverts it.
    """
    if "\\" not in text:
        try:
            text.encode("utf-8")
            return text
        except UnicodeEncodeError:
            pass
    return "".join(_escape_char(char) for char in text)


def _unescape_token(token: str, text: str) -> str:
    if token == "\\":
        return "\\"
    code = int(token[1:], 16)
    if token[0] == "x" and code >= 0x80:
        return chr(0xDC00 + code)
    if token[0] == "u" and 0xD800 <= code <= 0xDFFF and not 0xDC80 <= code <= 0xDCFF:
        return chr(code)
    raise ValueError(f"not an escaped path: {text!r} holds the escape \\{token}")


def unescape_path(text: str) -> str:
    """The file-system string that :func:`escape_path` turned into ``text``.

    The result opens the exact file (``open``, ``os.stat``; ``os.fsencode`` gives its raw
    bytes).

    Raises:
        ValueError: ``text`` holds a backslash that does not start one of the escapes
            :func:`escape_path` writes (so it is not such a text).
    """
    if "\\" not in text:
        return text
    parts: list[str] = []
    pos = 0
    while (start := text.find("\\", pos)) >= 0:
        match = _ESCAPE.match(text, start)
        if match is None:
            raise ValueError(f"not an escaped path: {text!r} has a lone backslash at {start}")
        parts += [text[pos:start], _unescape_token(match.group(1), text)]
        pos = match.end()
    parts.append(text[pos:])
    return "".join(parts)


def _identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


class FolderDataset:
    """Every image file under a folder (see the module docstring for order and ids).

    Args:
        root: the folder.

    Raises:
        NotADirectoryError: ``root`` is not an existing directory.
        OSError: ``root`` cannot be listed (e.g. ``PermissionError``), checked here so that a
            job fails before it starts any worker.
    """

    def __init__(self, root: str | os.PathLike[str] | ObjectPath) -> None:
        self.remote: ObjectPath | None = None
        if isinstance(root, ObjectPath) or is_remote(root):
            prefix = location(root)
            assert isinstance(prefix, ObjectPath)
            if not prefix.is_dir():
                raise NotADirectoryError(f"image folder not found (no objects under the "
                                         f"prefix): {prefix}")
            self.remote = prefix
            self.name = f"folder:{prefix}"
            return
        path = Path(root).expanduser()
        if not path.is_dir():
            raise NotADirectoryError(f"image folder not found or not a directory: {path}")
        try:
            with os.scandir(path):
                pass
        except OSError as exc:
            raise type(exc)(exc.errno, f"image folder cannot be listed: {exc.strerror}",
                            str(path)) from None
        self.root = path.absolute()
        self.name = f"folder:{self.root}"

    def iter_manifest(self) -> Iterator[ManifestEntry]:
        """Yield one entry per image (and per unreadable entry, see the module docstring);
        ``image_id`` is the escaped relative posix path, ``path`` the raw path, sizes None.
        Distinct entries have distinct ids."""
        if self.remote is not None:
            yield from self._iter_remote(self.remote)
            return
        prefix = len(os.fspath(self.root)) + 1
        for path in iter_image_files(self.root):
            relative = path[prefix:]
            image_id = relative.replace(os.sep, "/") if os.sep != "/" else relative
            yield ManifestEntry(image_id=escape_path(image_id), path=path)

    @staticmethod
    def _iter_remote(prefix: ObjectPath) -> Iterator[ManifestEntry]:
        for obj in iter_object_files(prefix):
            if is_image_name(obj.name):
                yield ManifestEntry(image_id=escape_path(obj.relative_to(prefix)),
                                    path=str(obj))

    def describe(self) -> dict[str, Any]:
        """``{"kind": "folder", "root": ...}``; the image count is not included because it
        needs a walk of the whole tree."""
        return {"kind": "folder", "root": str(self.remote or self.root)}


def open_folder(spec: DatasetSpec) -> FolderDataset:
    """``folder:PATH`` (or ``folder:s3://bucket/prefix``) as a source."""
    if is_remote(spec.rest):
        try:
            return FolderDataset(spec.rest)
        except (OSError, ValueError) as exc:
            raise spec.error(str(exc)) from None
    return FolderDataset(spec.existing_dir("image folder"))


register("folder", open_folder, grammar="folder:PATH|URI")
