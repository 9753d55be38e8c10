"""Exports that are a folder of files: image ids as file paths, and a folder that appears
whole and replaces only what an earlier export provably wrote (no torch, no Ray).

The files are written into a new hidden folder beside ``OUT`` (``.tmp-<uuid>-NAME``) and
renamed into place, so ``OUT`` never holds a partial export; on a failure the temporary files
are removed. ``OUT`` may be missing, an empty folder, or an earlier export of the same
exporter: a receipt ``.NAME.dsfd-export.json`` beside ``OUT`` records the exporter and the
sha256 of every file written, and an earlier export is replaced only when everything under
``OUT`` is a file of the receipt, unchanged, or a folder leading to one (no links). Anything
else stops the export before a file is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from pipeline.datasets.folder import is_image_name

RECEIPT_SUFFIX = ".dsfd-export.json"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Receipt = dict[str, list[str]]
"""Relative path (``/``-separated) -> the sha256s accepted for that file."""


def id_path_parts(image_id: str, fmt: str) -> tuple[list[str], str]:
    """``(folders, name)`` of an image id read as a relative file path, for ``fmt`` files.

    A leading ``/`` and ``.`` parts are ignored; a known image extension (any case) is
    removed from the name (``x/y/z.png`` -> ``(["x", "y"], "z")``).

    Raises:
        TypeError: ``image_id`` is not a str.
        ValueError: the id has a ``..`` or empty part, a control character, a part with
            leading or trailing spaces, or nothing left for the name.
    """
    if not isinstance(image_id, str):
        raise TypeError(f"image_id must be a str, got {type(image_id).__name__}")
    parts = [p for p in image_id.removeprefix("/").split("/") if p != "."]
    bad = next((p for p in parts if p in ("", "..") or p != p.strip() or _CONTROL.search(p)),
               None)
    if bad is not None or not parts:
        raise ValueError(f"image id {image_id!r} cannot be mapped to a {fmt} file "
                         f"(bad part {bad!r})")
    name = parts[-1]
    if is_image_name(name):
        name = os.path.splitext(name)[0]
    if not name or name != name.strip():
        raise ValueError(f"image id {image_id!r} leaves no usable {fmt} file name ({name!r})")
    return parts[:-1], name


def _parents(rel: str) -> Iterator[str]:
    """The folders leading to ``rel``, outermost first (``a/b/c.txt`` -> ``a``, ``a/b``)."""
    parts = rel.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        yield "/".join(parts[:depth])


def _clash(image_id: str, rel: str, files: Mapping[str, str], folders: Mapping[str, str],
           reserved: Mapping[str, str]) -> str | None:
    """Why ``rel`` cannot become the file of ``image_id``; None when it can."""
    if rel in reserved:
        return f"image id {image_id!r} maps to {rel}, which holds {reserved[rel]}"
    if rel in files:
        return f"image ids {files[rel]!r} and {image_id!r} both map to {rel}"
    if rel in folders:
        return (f"image id {image_id!r} maps to {rel}, the folder of the file of "
                f"{folders[rel]!r}")
    for parent in _parents(rel):
        if parent in reserved:
            return f"image id {image_id!r} needs {parent} as a folder; it holds {reserved[parent]}"
        if parent in files:
            return (f"image id {image_id!r} needs {parent} as a folder; it is the file of "
                    f"{files[parent]!r}")
    return None


def plan_files(image_ids: Iterable[str], path_of: Callable[[str], str], *,
               reserved: Mapping[str, str] | None = None) -> dict[str, str]:
    """``image_id -> relative path`` of every id's file, checked before anything is written.

    Args:
        image_ids: the ids (repeats are planned once).
        path_of: the relative ``/``-separated path of an id's file (raises ValueError for
            an id it cannot map).
        reserved: paths of the export's own files -> what they hold.

    Raises:
        ValueError: an id cannot be mapped, two ids map to the same file (both named), an id
            maps to a reserved file, or one path is needed as a file and as a folder.
    """
    reserved = dict(reserved or {})
    files: dict[str, str] = {}  # relative path -> its image id
    folders: dict[str, str] = {}  # folder -> the first image id whose file it holds
    plan: dict[str, str] = {}
    for image_id in image_ids:
        if image_id in plan:
            continue
        rel = path_of(image_id)
        why = _clash(image_id, rel, files, folders, reserved)
        if why is not None:
            raise ValueError(f"{why}; nothing was written")
        files[rel] = image_id
        plan[image_id] = rel
        for parent in _parents(rel):
            folders.setdefault(parent, image_id)
    return plan


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def receipt_path(out: Path) -> Path:
    """Where the receipt of the export ``out`` lies: ``.NAME.dsfd-export.json`` beside it."""
    return out.parent / f".{out.name}{RECEIPT_SUFFIX}"


def earlier_export(out: Path, header: Mapping[str, object], fmt: str) -> Receipt:
    """The files of an earlier export by the exporter of ``header`` in ``out``; empty when
    ``out`` is missing or an empty folder.

    Raises:
        ValueError: ``out`` is not a folder, or holds anything the receipt does not prove
            this exporter wrote (the first such entry is named).
    """
    if os.path.islink(out) or (out.exists() and not out.is_dir()):
        raise ValueError(f"{out}: exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return {}
    try:
        receipt = json.loads(receipt_path(out).read_text(encoding="utf-8"))
        files = receipt["files"]
        if {k: receipt[k] for k in header} != dict(header) or not isinstance(files, dict):
            raise ValueError("not a receipt of this exporter")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{out}: folder is not empty and is not an earlier {fmt} export "
                         f"({receipt_path(out).name}: {exc}); refusing to write into it"
                         ) from None
    problem = _unproven_entry(out, files, fmt)
    if problem is not None:
        raise ValueError(f"{out}: {problem}; refusing to replace the earlier export "
                         "(nothing was written)")
    return files


def _entries(folder: Path, prefix: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """``(relative path, entry)`` of everything under ``folder``, sorted, depth first; the
    entries of a folder follow it, links are not followed."""
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        rel = f"{prefix}{entry.name}"
        yield rel, entry
        if entry.is_dir(follow_symlinks=False):
            yield from _entries(Path(entry.path), f"{rel}/")


def _unproven_entry(out: Path, files: Receipt, fmt: str) -> str | None:
    """The first entry under ``out`` that is neither a file of ``files`` with one of its
    recorded sha256s nor a real folder leading to one; None when all are."""
    folders = {p for rel in files for p in _parents(rel)}
    for rel, entry in _entries(out, ""):
        if entry.is_dir(follow_symlinks=False):
            if rel not in folders:
                return f"{rel} was not written by the {fmt} export"
        elif rel not in files or not entry.is_file(follow_symlinks=False):
            return f"{rel} was not written by the {fmt} export"
        elif sha256(Path(entry.path).read_bytes()) not in files[rel]:
            return f"{rel} was changed since the {fmt} export wrote it"
    return None


def _write_receipt(out: Path, header: Mapping[str, object], files: Receipt) -> None:
    """Replace the receipt of ``out`` atomically (temporary file, then rename)."""
    path = receipt_path(out)
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        tmp.write_text(json.dumps({**header, "files": files}, sort_keys=True) + "\n",
                       encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class FileTree:
    """The files of one export, written into a new temporary folder beside ``out`` and
    renamed into place by :meth:`publish`; :meth:`discard` removes what is left of them.

    Args:
        out: the export folder (absolute).
        header: the receipt's identification of the exporter (``{"exporter": ...,
            "version": ...}``).
    """

    def __init__(self, out: Path, header: Mapping[str, object]) -> None:
        self.out = out
        self.header = dict(header)
        self.tmp = out.parent / f".tmp-{uuid.uuid4().hex}-{out.name}"
        self.digests: dict[str, str] = {}
        self._dirs: list[str] = []  # folders created, in order (parents first)
        self._made: set[str] = set()
        out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir()

    def has(self, rel: str) -> bool:
        """Whether the file ``rel`` was written."""
        return rel in self.digests

    def write(self, rel: str, data: bytes) -> None:
        """Write the new file ``rel`` (``/``-separated) with its folders.

        Raises:
            ValueError: the file exists already: two ids map to it on a case-insensitive
                file system.
        """
        for parent in _parents(rel):
            if parent not in self._made:
                try:
                    (self.tmp / parent).mkdir()
                except FileExistsError:
                    raise ValueError(f"two image ids map to the folder {parent} on this file "
                                     "system (letter case?); nothing was written") from None
                self._dirs.append(parent)
                self._made.add(parent)
        try:
            with open(self.tmp / rel, "xb") as fh:
                self.digests[rel] = ""  # created: removed by discard() on a failure
                fh.write(data)
        except FileExistsError:
            raise ValueError(f"two image ids map to {rel} on this file system (letter case?); "
                             "nothing was written") from None
        self.digests[rel] = sha256(data)

    def publish(self, earlier: Receipt) -> None:
        """Replace the earlier export (checked by :func:`earlier_export`) by the new files."""
        union = {rel: sorted({*earlier.get(rel, []), digest})
                 for rel, digest in self.digests.items()}
        _write_receipt(self.out, self.header, {**earlier, **union})  # proves both meanwhile
        for rel in earlier:
            (self.out / rel).unlink(missing_ok=True)
        old_folders = {p for rel in earlier for p in _parents(rel)}
        for folder in sorted(old_folders, key=lambda p: -p.count("/")):  # deepest first
            if (self.out / folder).is_dir():
                (self.out / folder).rmdir()
        os.replace(self.tmp, self.out)  # over a missing or an empty folder
        _write_receipt(self.out, self.header, {rel: [d] for rel, d in self.digests.items()})
        self.digests, self._dirs, self._made = {}, [], set()

    def discard(self) -> None:
        """Remove the files and folders this export created that were not published."""
        for rel in self.digests:
            (self.tmp / rel).unlink(missing_ok=True)
        for folder in reversed(self._dirs):
            if (self.tmp / folder).is_dir():
                (self.tmp / folder).rmdir()
        if self.tmp.is_dir():
            self.tmp.rmdir()
