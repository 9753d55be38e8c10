"""Dataset SPEC strings: one grammar, one registry of dataset kinds, for every command.

A SPEC is ``KIND:REST``. ``dsfd run``, ``label``, ``train`` and ``anchors`` all resolve it
here; each kind is registered by one :func:`register` line in its own module::

    wider:ROOT[:split]        a WIDER FACE root (split train, val or test)
    wider-gt:GT_DIR|MAT_FILE  the boxes of the official evaluation file wider_face_val.mat
    fddb:ROOT                 an FDDB root (FDDB-folds/ and originalPics/)
    folder:PATH               every image under a folder, recursively
    list:FILE                 the images named in a list file
    manifest:URI              the images of a Parquet, CSV or JSON-lines manifest (options
                              path_column, id_column; see pipeline.datasets.manifest_files)
    synthetic:DIR[:split]     the WIDER part of a generated benchmark (= wider:DIR/wider[:split])
    synthetic-fddb:DIR        the FDDB part of a generated benchmark (= fddb:DIR/fddb)

A kind offers up to three things: the images (:func:`open_dataset`, a
:class:`~pipeline.datasets.source.DatasetSource`, for ``run`` and ``label``), the evaluation
ground truth (:func:`ground_truth`) and the face boxes of each image (:func:`face_records`, for
``train`` and ``anchors``). A split a SPEC leaves out is ``val`` for the images and ground
truth and the caller's ``default_split`` (``train``) for face records. No Ray, no torch.

Every ROOT, DIR, PATH, FILE or URI may be an object-storage location (``wider:s3://bucket/
wider:val``, ``list:s3://bucket/lists/a.txt``; see :mod:`pipeline.storage`): the kind is the
text before the first ``:``, and a split is looked for only after the ``scheme://``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipeline.datasets.face_record import FaceRecord
from pipeline.datasets.source import DatasetSource
from pipeline.storage import Location, ObjectPath, StorageError, is_remote, location, scheme_of

_BUILTIN_MODULES = (
    "pipeline.datasets.wider.kinds",
    "pipeline.datasets.fddb.kinds",
    "pipeline.datasets.folder",
    "pipeline.datasets.listfile",
    "pipeline.datasets.synthetic",
    "pipeline.datasets.manifest_files",
)
"""Modules holding the ``register`` lines of the built-in kinds (imported on first use)."""


@dataclass(frozen=True)
class DatasetSpec:
    """A SPEC split at its first ``:`` (``text`` is the whole string, for messages), with
    the options of the kind that the command line gave (``(name, value)`` pairs)."""

    text: str
    kind: str
    rest: str
    options: tuple[tuple[str, str], ...] = ()

    def error(self, reason: str) -> ValueError:
        """A one-line ``ValueError`` quoting the spec and listing the valid forms."""
        return spec_error(self.text, reason)

    def path(self) -> Location:
        """``REST`` as a location: an absolute local path (``~`` expanded) or an
        object-storage URI (``s3://bucket/prefix``, see :mod:`pipeline.storage`); an empty
        ``REST`` or an unsupported scheme is an error."""
        return self._location(self.rest)

    def _location(self, text: str) -> Location:
        if not text or text.endswith("://"):
            raise self.error("empty path")
        try:
            where = location(text)
        except ValueError as exc:
            raise self.error(str(exc)) from None
        return where if isinstance(where, ObjectPath) else where.absolute()

    def existing_dir(self, what: str) -> Location:
        """``REST`` as a location that must be a directory (on object storage: a prefix with
        objects under it); ``what`` names it."""
        path = self.path()
        if not path.is_dir():
            raise self.error(f"{what} {path} not found or not a directory")
        return path

    def path_and_split(self, default: str, splits: Sequence[str]) -> tuple[Location, str]:
        """Split ``PATH[:split]``: the text after the last ``:`` (a ``scheme://`` excepted) is
        a split unless the whole of ``REST`` is an existing path; a split outside ``splits``
        is an error. On object storage a known split name is taken without a request."""
        rest = self.rest
        scheme = scheme_of(rest)
        body = rest[len(scheme) + 3:] if scheme else rest
        root, split = rest, default
        if ":" in body:
            head, tail = rest.rsplit(":", 1)
            remote = is_remote(rest)
            if (remote and tail in splits) or not _exists(self, rest):
                if tail not in splits:
                    raise self.error(
                        f"unknown split {tail!r} (expected one of {', '.join(splits)})"
                    )
                root, split = head, tail
        return self._location(root), split


def _exists(spec: DatasetSpec, text: str) -> bool:
    """Whether the local path or object-storage location ``text`` exists."""
    try:
        return location(text).exists()
    except (ValueError, StorageError) as exc:
        raise spec.error(str(exc)) from None


Opener = Callable[[DatasetSpec], DatasetSource]
GroundTruthReader = Callable[[DatasetSpec], Any]
FaceRecordReader = Callable[[DatasetSpec, str], list[FaceRecord]]


@dataclass(frozen=True)
class DatasetKind:
    """One registered kind (see :func:`register`)."""

    kind: str
    open: Opener
    grammar: str
    ground_truth: GroundTruthReader | None = None
    face_records: FaceRecordReader | None = None
    options: tuple[str, ...] = ()


_KINDS: dict[str, DatasetKind] = {}
_loaded = False


def register(
    kind: str,
    open: Opener,
    *,
    grammar: str | None = None,
    ground_truth: GroundTruthReader | None = None,
    face_records: FaceRecordReader | None = None,
    options: Sequence[str] = (),
) -> None:
    """Register a dataset kind, so that every command accepts ``KIND:...`` specs.

    Args:
        kind: the prefix before the first ``:`` (letters, digits and ``-``).
        open: ``open(spec) -> DatasetSource`` (the images; a missing path raises
            ``spec.error(...)``, ``FileNotFoundError`` or ``NotADirectoryError``).
        grammar: the form shown in messages and help (default ``KIND:PATH``).
        ground_truth: ``ground_truth(spec)``: the evaluation ground truth, when the kind has one.
        face_records: ``face_records(spec, default_split) -> list[FaceRecord]``: the face boxes
            of each image, when the kind has them.
        options: names of the options the kind takes besides its spec (e.g. ``path_column``
            from ``--path-column``); they reach ``open`` as ``spec.options``.

    Raises:
        ValueError: a malformed or already registered kind.
    """
    if not kind or not all(c.isalnum() or c == "-" for c in kind):
        raise ValueError(f"dataset kind must be letters, digits and '-', got {kind!r}")
    if kind in _KINDS:
        raise ValueError(f"dataset kind {kind!r} is already registered")
    _KINDS[kind] = DatasetKind(kind, open, grammar or f"{kind}:PATH", ground_truth, face_records,
                               tuple(options))


def unregister(kind: str) -> None:
    """Remove a registered kind (for plugins and tests); an unknown kind is an error."""
    _load_builtin()
    if kind not in _KINDS:
        raise ValueError(f"dataset kind {kind!r} is not registered")
    del _KINDS[kind]


def _load_builtin() -> None:
    """Import the modules of the built-in kinds (their ``register`` lines run once)."""
    global _loaded
    if not _loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _loaded = True


def _ordered() -> list[DatasetKind]:
    """The kinds: built-in ones in :data:`_BUILTIN_MODULES` order (whatever imported them
    first), then the others in registration order."""
    _load_builtin()
    modules = list(_BUILTIN_MODULES)

    def rank(item: tuple[int, DatasetKind]) -> tuple[int, int]:
        """(position of the registering module among the built-in ones, registration order)"""
        module = getattr(item[1].open, "__module__", "")
        return (modules.index(module) if module in modules else len(modules), item[0])

    return [k for _, k in sorted(enumerate(_KINDS.values()), key=rank)]


def dataset_kinds() -> tuple[str, ...]:
    """Every registered kind: the built-in ones first, in a fixed order."""
    return tuple(k.kind for k in _ordered())


def valid_forms() -> str:
    """The grammar of every registered kind, comma separated (for messages and help)."""
    return ", ".join(k.grammar for k in _ordered())


def spec_error(spec: str, reason: str) -> ValueError:
    """``ValueError("dataset spec 'SPEC': REASON; valid forms: ...")``, one line."""
    return ValueError(f"dataset spec {spec!r}: {reason}; valid forms: {valid_forms()}")


def parse_spec(spec: str) -> tuple[DatasetSpec, DatasetKind]:
    """Split ``spec`` into its kind and the rest, and find the kind.

    Raises:
        TypeError: ``spec`` is not a string. ValueError: no ``KIND:`` prefix or an unknown kind
            (the message lists the registered forms).
    """
    if not isinstance(spec, str):
        raise TypeError(f"dataset spec must be a string, got {type(spec).__name__}")
    _load_builtin()
    kind, sep, rest = spec.partition(":")
    if not sep:
        raise spec_error(spec, "no KIND: prefix")
    if rest.startswith("//") and kind not in _KINDS:  # s3://bucket/... without a kind
        raise spec_error(spec, f"a {kind}:// location needs a KIND: prefix "
                               f"(e.g. folder:{spec} or wider:{spec})")
    if kind not in _KINDS:
        raise spec_error(spec, f"unknown dataset kind {kind!r}")
    return DatasetSpec(spec, kind, rest), _KINDS[kind]


def _call(parsed: DatasetSpec, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except (FileNotFoundError, NotADirectoryError, StorageError) as exc:
        raise parsed.error(str(exc)) from None


def open_dataset(spec: str, options: Mapping[str, str | None] | None = None) -> DatasetSource:
    """Open the images a ``spec`` names (see the module docstring for the forms).

    Args:
        spec: the dataset spec.
        options: options of the kind (None values are left out), e.g. ``{"path_column":
            "uri"}`` for ``manifest:``; a kind refuses options it does not take.

    Raises:
        ValueError: unknown kind, missing path, bad split, unreadable layout or an option the
            kind does not take; the one-line message names the spec.
    """
    parsed, entry = parse_spec(spec)
    given = tuple((k, str(v)) for k, v in (options or {}).items() if v is not None)
    unknown = [k for k, _ in given if k not in entry.options]
    if unknown:
        having = [k.kind for k in _ordered() if unknown[0] in k.options]
        raise parsed.error(f"option {unknown[0]!r} does not apply to kind {entry.kind!r}"
                           + (f" (only to {', '.join(having)})" if having else ""))
    parsed = replace(parsed, options=given)
    source: DatasetSource = _call(parsed, lambda: entry.open(parsed))
    return source


def ground_truth(spec: str) -> Any:
    """The evaluation ground truth of ``spec``: a ``WiderGroundTruth`` for the WIDER kinds,
    a list of ``FddbImage`` for the FDDB kinds.

    Raises:
        ValueError: as :func:`open_dataset`, or the kind has no ground truth.
    """
    parsed, entry = parse_spec(spec)
    reader = entry.ground_truth
    if reader is None:
        having = [k.kind for k in _ordered() if k.ground_truth is not None]
        raise parsed.error(f"kind {entry.kind!r} has no ground truth (kinds with one: "
                           f"{', '.join(having)})")
    return _call(parsed, lambda: reader(parsed))


def face_records(spec: str, default_split: str = "train") -> list[FaceRecord]:
    """The face boxes of every image of ``spec``, in the dataset's file order.

    Args:
        spec: a dataset spec whose kind has face records (``wider``, ``wider-gt``,
            ``synthetic``).
        default_split: the split when the spec names none.

    Raises:
        ValueError: as :func:`open_dataset`, or the kind has no face boxes.
    """
    parsed, entry = parse_spec(spec)
    reader = entry.face_records
    if reader is None:
        having = [k.kind for k in _ordered() if k.face_records is not None]
        raise parsed.error(f"kind {entry.kind!r} has no face boxes (kinds with them: "
                           f"{', '.join(having)})")
    records: list[FaceRecord] = _call(parsed, lambda: reader(parsed, default_split))
    return records
