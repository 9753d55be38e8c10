"""The file journal of a generated benchmark: every folder and file ``dsfd synth`` creates in
``DIR``, recorded before it is created, so that a later run replaces exactly those.

A new run over ``DIR`` replaces an earlier benchmark only when ``DIR`` holds nothing but what
the journal ``.dsfd-synth-files.jsonl`` records, unchanged (sha256); it then deletes exactly
those files and folders. Anything else in ``DIR`` (a user's file, an edited file, a link) makes
it refuse before changing anything, naming the first such entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pipeline.datasets.synthetic import GENERATOR_NAME, is_synthetic_benchmark

JOURNAL_FILE = ".dsfd-synth-files.jsonl"
_JOURNAL_HEADER: dict[str, Any] = {"generator": GENERATOR_NAME, "journal_version": 1}
_FILE_KEYS = frozenset({"file", "size", "sha256", "gone"})


def file_digest(path: Path) -> tuple[int, str]:
    """``(size in bytes, hex sha256)`` of a file, read in blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


class FileJournal:
    """Records, as generation goes, every folder and file the generator creates in ``root``.

    The journal ``root/.dsfd-synth-files.jsonl`` holds one JSON object per line: the header
    ``{"generator": GENERATOR_NAME, "journal_version": 1}`` (written by
    :func:`prepare_output_dir`), then ``{"dir": REL}`` before a folder is created,
    ``{"file": REL}`` before a file is created or replaced, ``{"file": REL, "size": N,
    "sha256": H}`` once it is complete and ``{"file": REL, "gone": true}`` once it was renamed
    away. ``REL`` is the ``/``-separated path relative to ``root``; the last line about a file
    gives its state. Each line is flushed before the change it announces, so a killed run
    leaves a journal that covers everything it created.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._fh = open(root / JOURNAL_FILE, "a", encoding="utf-8")  # closed by close()

    def close(self) -> None:
        """Close the journal file."""
        self._fh.close()

    def _log(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, sort_keys=True) + "\n")
        self._fh.flush()

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def make_dirs(self, folder: Path) -> None:
        """Create ``folder`` (under the root) and its missing parents, recording each."""
        missing: list[Path] = []
        while folder != self.root and not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        for item in reversed(missing):
            self._log({"dir": self._rel(item)})
            item.mkdir()

    def will_write(self, path: Path) -> None:
        """Record that ``path`` is about to be created or replaced; its folder is made."""
        self.make_dirs(path.parent)
        self._log({"file": self._rel(path)})

    def wrote(self, path: Path) -> None:
        """Record the size and sha256 of the complete file ``path``."""
        size, digest = file_digest(path)
        self._log({"file": self._rel(path), "size": size, "sha256": digest})

    def gone(self, path: Path) -> None:
        """Record that ``path`` was renamed away (it must not exist any more)."""
        self._log({"file": self._rel(path), "gone": True})


def _check_rel(value: object, where: str) -> str:
    """A journal path: relative, ``/``-separated, with no empty, ``.`` or ``..`` part."""
    if not isinstance(value, str) or value.startswith("/") or "\\" in value:
        raise ValueError(f"{where}: bad path {value!r}")
    if value == JOURNAL_FILE or any(p in ("", ".", "..") for p in value.split("/")):
        raise ValueError(f"{where}: bad path {value!r}")
    return value


def _journal_records(path: Path) -> list[Any]:
    """The parsed lines of a journal; a last line cut short (no newline) that does not parse
    is dropped, since its change was never made."""
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for number, line in enumerate(lines[:-1], start=1):
        try:
            records.append(json.loads(line))
        except ValueError:
            raise ValueError(f"{path}:{number}: not a JSON object") from None
    if lines[-1]:
        try:
            records.append(json.loads(lines[-1]))
        except ValueError:
            pass
    return records


def read_journal(root: str | os.PathLike[str]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """What the journal in ``root`` records: files (``REL`` -> last record) and folders.

    Raises:
        FileNotFoundError: ``root`` has no journal.
        ValueError: the journal is not this generator's, or a line is malformed or names a
            path outside ``root``.
    """
    path = Path(root) / JOURNAL_FILE
    records = _journal_records(path)
    if not records or records[0] != _JOURNAL_HEADER:
        raise ValueError(f"{path}: not a file list of {GENERATOR_NAME} (header {records[:1]})")
    files: dict[str, dict[str, Any]] = {}
    dirs: set[str] = set()
    for number, record in enumerate(records[1:], start=2):
        where = f"{path}:{number}"
        if isinstance(record, dict) and set(record) == {"dir"}:
            dirs.add(_check_rel(record["dir"], where))
        elif isinstance(record, dict) and "file" in record and set(record) <= _FILE_KEYS:
            files[_check_rel(record["file"], where)] = record
        else:
            raise ValueError(f"{where}: unexpected record {record!r}")
    return files, dirs


def _unproven(root: Path, rel: str, files: dict[str, dict[str, Any]]) -> str | None:
    """Why the non-folder entry ``rel`` is not provably the generator's, or None."""
    record = files.get(rel)
    if record is None or record.get("gone"):
        return f"{rel} was not written by dsfd synth"
    if "sha256" not in record:
        return None  # created by a run that stopped before the file was complete
    path = root / rel
    if path.is_symlink() or not path.is_file():
        return f"{rel} is no longer the file dsfd synth wrote"
    if file_digest(path) != (record["size"], record["sha256"]):
        return f"{rel} was changed since dsfd synth wrote it"
    return None


def first_unproven_entry(
    root: str | os.PathLike[str], files: dict[str, dict[str, Any]], dirs: set[str]
) -> str | None:
    """The first entry under ``root`` (depth first, sorted) that the journal does not prove
    to be the generator's, with the reason; None when every entry is proven.

    A folder is proven when the journal records creating it (a link never is); a file when
    its last record is complete and its size and sha256 still match, or when it was being
    written when a run stopped.
    """
    top = Path(root)
    for current, dirnames, filenames in os.walk(top):
        here = Path(current).relative_to(top)
        names = sorted(dirnames + filenames)
        dirnames.sort()
        for name in names:
            rel = (here / name).as_posix()
            if rel == JOURNAL_FILE:
                continue
            if name in dirnames and not (top / rel).is_symlink():
                if rel not in dirs:
                    return f"{rel}/ was not created by dsfd synth"
                continue
            problem = _unproven(top, rel, files)
            if problem is not None:
                return problem
    return None


def _remove_recorded(root: Path, files: dict[str, dict[str, Any]], dirs: set[str]) -> None:
    """Delete the recorded files that exist, then the recorded folders, deepest first."""
    for rel, record in sorted(files.items()):
        if not record.get("gone") and os.path.lexists(root / rel):
            (root / rel).unlink()
    for rel in sorted(dirs, key=lambda r: (-r.count("/"), r)):
        if (root / rel).is_dir():
            (root / rel).rmdir()


def prepare_output_dir(out_dir: str | os.PathLike[str]) -> Path:
    """Make ``out_dir`` ready for a generation and start its journal (see :class:`FileJournal`).

    A missing folder is created and an empty one is used. A folder holding an earlier
    benchmark of this generator loses exactly the files and folders its journal records; that
    happens only when every entry under ``out_dir`` is one the journal records, unchanged.
    ``out_dir`` itself is never removed.

    Raises:
        ValueError: ``out_dir`` is a file, or a non-empty folder without this generator's
            journal, or one holding an entry the generator did not write or a file changed
            since (the one-line message names the first). Nothing is changed then.
    """
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        files, dirs = _earlier_benchmark(path)
        _remove_recorded(path, files, dirs)
    path.mkdir(parents=True, exist_ok=True)
    (path / JOURNAL_FILE).write_text(json.dumps(_JOURNAL_HEADER) + "\n", encoding="utf-8")
    return path


def _earlier_benchmark(path: Path) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The journal of the earlier benchmark in the non-empty folder ``path``, checked against
    the folder's content; raises ValueError (one line) when anything is not proven."""
    if not (path / JOURNAL_FILE).is_file():
        what = (
            "a synthetic benchmark without the list of its files (written by an older dsfd)"
            if is_synthetic_benchmark(path)
            else "no synthetic benchmark"
        )
        raise ValueError(
            f"{path}: folder is not empty and holds {what}; refusing to write into it "
            "(nothing was changed): empty it yourself or choose another --out"
        )
    try:
        files, dirs = read_journal(path)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{path}: unreadable file list ({exc}); refusing to write into it"
        ) from None
    problem = first_unproven_entry(path, files, dirs)
    if problem is not None:
        raise ValueError(
            f"{path}: {problem}; refusing to replace the benchmark (nothing was changed): "
            "move it out of the folder or choose another --out"
        )
    return files, dirs
