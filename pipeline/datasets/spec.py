"""Dataset SPEC strings: one way to name any image source on the command line.

Forms::

    wider:ROOT[:split]        a WIDER FACE root (split train, val or test; default val)
    fddb:ROOT                 an FDDB root (FDDB-folds/ and originalPics/)
    folder:PATH               every image under a folder, recursively
    list:FILE                 the images named in a list file
    synthetic:DIR[:split]     the WIDER part of a generated benchmark (= wider:DIR/wider[:split])
    synthetic-fddb:DIR        the FDDB part of a generated benchmark (= fddb:DIR/fddb)

``open_dataset`` returns a :class:`DatasetSource`. For ``wider``/``synthetic`` it is a
:class:`~pipeline.datasets.wider.WiderDataset` and for ``fddb``/``synthetic-fddb`` an
:class:`~pipeline.datasets.fddb.FddbDataset` (subclasses that add ``name``), so their ground
truth readers stay available.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pipeline.datasets.fddb import FddbDataset
from pipeline.datasets.folder import FolderDataset
from pipeline.datasets.listfile import ListFileDataset
from pipeline.datasets.manifest import ManifestEntry
from pipeline.datasets.wider import SPLITS, WiderDataset

VALID_FORMS = (
    "wider:ROOT[:train|val|test], fddb:ROOT, folder:PATH, list:FILE, "
    "synthetic:DIR[:train|val], synthetic-fddb:DIR"
)
KINDS = ("wider", "fddb", "folder", "list", "synthetic", "synthetic-fddb")


@runtime_checkable
class DatasetSource(Protocol):
    """What every dataset offers the pipeline.

    Attributes:
        name: the canonical spec of the source (kind and absolute path).
    """

    name: str

    def iter_manifest(self) -> Iterator[ManifestEntry]:
        """Yield the images in a deterministic order, streamed."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able identity of the source (``kind``, ``root``/``path``, ``split``, counts
        when cheap): two runs over the same source describe it the same way."""
        ...


class WiderSource(WiderDataset):
    """A :class:`WiderDataset` opened from a spec (adds ``name`` and ``kind``)."""

    def __init__(self, root: Path, split: str, kind: str, synth: dict[str, Any] | None = None):
        super().__init__(root, split)
        self.kind = kind
        self.name = f"{kind}:{root.parent if kind == 'synthetic' else root}:{split}"
        self._synth = synth

    def describe(self) -> dict[str, Any]:
        """The reader's description plus ``kind`` (and the generator's seed and version)."""
        info = {**super().describe(), "kind": self.kind}
        if self._synth is not None:
            info["synthetic"] = _synth_identity(self._synth)
        return info


class FddbSource(FddbDataset):
    """An :class:`FddbDataset` opened from a spec (adds ``name`` and ``kind``)."""

    def __init__(self, root: Path, kind: str, synth: dict[str, Any] | None = None):
        super().__init__(root)
        self.kind = kind
        self.name = f"{kind}:{root.parent if kind == 'synthetic-fddb' else root}"
        self._synth = synth

    def describe(self) -> dict[str, Any]:
        """The reader's description plus ``kind`` (and the generator's seed and version)."""
        info: dict[str, Any] = {**super().describe(), "kind": self.kind}
        if self._synth is not None:
            info["synthetic"] = _synth_identity(self._synth)
        return info


def _synth_identity(info: dict[str, Any]) -> dict[str, Any]:
    return {k: info.get(k) for k in ("generator_version", "seed", "counts")}


def _error(spec: str, reason: str) -> ValueError:
    return ValueError(f"dataset spec {spec!r}: {reason}; valid forms: {VALID_FORMS}")


def _path_and_split(spec: str, rest: str, default: str) -> tuple[Path, str]:
    """Split ``ROOT[:split]``; a suffix is a split unless the whole text is an existing path."""
    if ":" in rest and not os.path.exists(os.path.expanduser(rest)):
        root, split = rest.rsplit(":", 1)
        if split not in SPLITS:
            raise _error(spec, f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    else:
        root, split = rest, default
    if not root:
        raise _error(spec, "empty path")
    return Path(root).expanduser().absolute(), split


def _existing_dir(spec: str, rest: str, what: str) -> Path:
    if not rest:
        raise _error(spec, "empty path")
    path = Path(rest).expanduser().absolute()
    if not path.is_dir():
        raise _error(spec, f"{what} {path} not found or not a directory")
    return path


def _open_synthetic(spec: str, kind: str, rest: str) -> DatasetSource:
    # Imported here: the generator pulls in Pillow, which other spec kinds do not need.
    from pipeline.datasets.synthetic import FDDB_DIR, WIDER_DIR, read_synth_info

    if kind == "synthetic":
        directory, split = _path_and_split(spec, rest, "val")
    else:
        directory, split = _existing_dir(spec, rest, "benchmark folder"), "val"
    if not directory.is_dir():
        raise _error(
            spec,
            f"benchmark folder {directory} not found (make one with "
            f"`dsfd synth --out {directory}`)",
        )
    try:
        synth = read_synth_info(directory)
    except ValueError as exc:
        raise _error(spec, str(exc)) from None
    if kind == "synthetic":
        if split not in ("train", "val"):
            raise _error(spec, f"a synthetic benchmark has splits train and val, not {split!r}")
        return WiderSource(directory / WIDER_DIR, split, kind, synth)
    if not (directory / FDDB_DIR).is_dir():
        raise _error(spec, f"{directory} was generated without an FDDB part")
    return FddbSource(directory / FDDB_DIR, kind, synth)


class LimitedSource:
    """The first ``limit`` images of another source, in its order (a quick subset, e.g. for
    the costly multi-scale test). Everything else is the wrapped source's."""

    def __init__(self, source: DatasetSource, limit: int):
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
        self.source = source
        self.limit = limit
        self.name = f"{source.name}[:{limit}]"

    def iter_manifest(self) -> Iterator[ManifestEntry]:
        """The wrapped manifest, stopped after ``limit`` entries."""
        return itertools.islice(self.source.iter_manifest(), self.limit)

    def describe(self) -> dict[str, Any]:
        """The wrapped description plus ``limit`` (so a resume sees a changed subset)."""
        return {**self.source.describe(), "limit": self.limit}

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.source, attr)


def limit_dataset(source: DatasetSource, limit: int | None) -> DatasetSource:
    """``source`` itself when ``limit`` is None, else its first ``limit`` images."""
    return source if limit is None else LimitedSource(source, limit)


def open_dataset(spec: str) -> DatasetSource:
    """Open the dataset named by ``spec`` (see the module docstring for the forms).

    Raises:
        ValueError: unknown kind, missing path, bad split or unreadable layout; the one-line
            message names the spec and lists the valid forms.
    """
    if not isinstance(spec, str):
        raise TypeError(f"dataset spec must be a string, got {type(spec).__name__}")
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in KINDS:
        raise _error(spec, f"unknown dataset kind {kind!r}" if sep else "no KIND: prefix")
    try:
        if kind == "wider":
            root, split = _path_and_split(spec, rest, "val")
            if not root.is_dir():
                raise _error(spec, f"WIDER FACE root {root} not found or not a directory")
            return WiderSource(root, split, kind)
        if kind == "fddb":
            return FddbSource(_existing_dir(spec, rest, "FDDB root"), kind)
        if kind == "folder":
            return FolderDataset(_existing_dir(spec, rest, "image folder"))
        if kind == "list":
            path = Path(rest).expanduser()
            if not rest or not path.is_file():
                raise _error(spec, f"list file {path.absolute()} not found or not a file")
            return ListFileDataset(path)
        return _open_synthetic(spec, kind, rest)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise _error(spec, str(exc)) from None
