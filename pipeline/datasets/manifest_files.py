"""``manifest:URI`` datasets: images named (or held) by a Parquet, CSV or JSON-lines table.

A manifest is one file (``.parquet``/``.pq``, ``.csv``, ``.jsonl``/``.ndjson``/``.json``, one
JSON object per line) or a folder of Parquet files (every ``*.parquet`` below it, in sorted
path order), at a local path or any URI that ``pyarrow.fs`` opens (``s3://``, ``gs://``,
``file://``). No Ray, no torch.

Columns:
    image column (``path_column``, default ``path``): each row's image, either a path or URI
        (text; a relative path is relative to the manifest's folder, or to the folder itself
        for a folder of Parquet files) or, in Parquet only, the image itself: a binary column
        of encoded image bytes, or a struct column with a ``bytes`` field (as Hugging Face
        image datasets store their ``image`` column: ``{"bytes": ..., "path": ...}``).
    id column (``id_column``, optional): the image id (any scalar, written as text). Without
        it the id is the path as written, or ``FILE#ROW`` for embedded images (``FILE``
        relative to the manifest, ``ROW`` the 0-based row within that file).

Streaming: the manifest is read in record batches of the id and path columns only
(:data:`BATCH_ROWS` rows at a time), so the driver holds one batch, never the whole table, and
embedded bytes are never read on the driver: an embedded image is an :class:`EmbeddedEntry`
(file, row), whose path reads ``FILE#row=ROW``, and the worker that runs its shard reads the
bytes of its rows itself (:func:`load_embedded`).

Bad rows stop the listing with a one-line ``ValueError`` naming the file and the row (0-based,
the header not counted) or, for JSON lines, the line (1-based): a null or empty path, a null id,
a line that is not a JSON object. Duplicate ids are not detected (that would hold every id).
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.datasets.manifest import ManifestEntry
from pipeline.datasets.registry import DatasetSpec, register
from pipeline.storage import filesystem_for

BATCH_ROWS = 8192
"""Rows read per record batch while listing (the driver holds one batch of id/path text)."""

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl",
           ".ndjson": "jsonl", ".json": "jsonl"}
"""File extension (lower case) -> manifest format."""

DEFAULT_PATH_COLUMN = "path"


@dataclass(frozen=True)
class EmbeddedEntry(ManifestEntry):
    """An image stored inside a Parquet manifest: row ``row`` (0-based) of ``file`` (a local
    path or a URI).

    ``path`` reads ``FILE#row=ROW``; ``data`` is None on the driver and filled with the
    encoded bytes by :func:`load_embedded` in the worker that runs the entry's shard.
    """

    file: str = ""
    row: int = 0
    column: str = ""
    data: bytes | None = field(default=None, repr=False, compare=False)


def _location(uri: str) -> tuple[pafs.FileSystem, str]:
    """The file system and path of a manifest location (a local path, ``file://``,
    ``s3://``, ``gs://`` or any other URI ``pyarrow.fs`` opens).

    Raises:
        ValueError: a URI that ``pyarrow.fs`` does not open (the reason in one line).
    """
    try:
        return filesystem_for(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise ValueError(f"cannot open {uri}: {str(exc).splitlines()[0]}") from None


def _display(fs: pafs.FileSystem, path: str) -> str:
    """A file as the user can name it: the local path, or ``SCHEME://PATH``."""
    if isinstance(fs, pafs.LocalFileSystem):
        return path
    return f"{fs.type_name}://{path}"


def _join(base: str, relative: str) -> str:
    """``relative`` resolved against the folder ``base`` (a local path or a URI)."""
    if "://" in relative or os.path.isabs(relative):
        return relative
    if "://" in base:
        return posixpath.join(base, relative)
    return os.path.join(base, relative)


@dataclass(frozen=True)
class _ImageColumn:
    """How the image column holds each image: ``path`` text, ``binary`` bytes, or ``struct``
    (a struct with a ``bytes`` field)."""

    name: str
    holds: str


def _image_column(schema: pa.Schema, name: str, where: str, fmt: str) -> _ImageColumn:
    """Check that ``schema`` has the image column ``name`` and say what it holds."""
    if name not in schema.names:
        raise ValueError(f"manifest {where}: no column {name!r} (columns: "
                         f"{', '.join(schema.names) or 'none'}); name the image column with "
                         "--path-column")
    kind = schema.field(name).type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or fmt != "parquet":
        return _ImageColumn(name, "path")
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return _ImageColumn(name, "binary")
    if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0:
        return _ImageColumn(name, "struct")
    raise ValueError(f"manifest {where}: column {name!r} is {kind}, not a path (text), image "
                     "bytes (binary) or a struct with a 'bytes' field")


class ManifestDataset:
    """The images of a manifest (see the module docstring for formats and columns).

    Args:
        uri: the manifest file or folder of Parquet files (local path or URI).
        path_column: the image column (paths/URIs, or embedded bytes in Parquet).
        id_column: the image-id column, or None (ids from the path or the row).

    Raises:
        FileNotFoundError: ``uri`` does not exist, or a folder holds no Parquet file.
        ValueError: an unknown format or a missing column (one line naming the file).
    """

    def __init__(self, uri: str, path_column: str = DEFAULT_PATH_COLUMN,
                 id_column: str | None = None) -> None:
        self.fs, root = _location(uri)
        info = self.fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"manifest {uri} not found")
        self.root = root
        self.display = _display(self.fs, root)
        self.path_column = path_column
        self.id_column = id_column
        if info.type == pafs.FileType.Directory:
            selector = pafs.FileSelector(root, recursive=True)
            found = [f for f in self.fs.get_file_info(selector)
                     if f.type == pafs.FileType.File and f.path.endswith(".parquet")
                     and not any(p.startswith((".", "_")) for p in
                                 posixpath.relpath(f.path, root).split("/"))]
            if not found:
                raise FileNotFoundError(f"manifest folder {self.display} holds no .parquet file")
            self.files = sorted(f.path for f in found)
            self.size_bytes = sum(int(f.size or 0) for f in found)
            self.format, self.base = "parquet", self.display
        else:
            ext = os.path.splitext(root)[1].lower()
            if ext not in FORMATS:
                raise ValueError(f"manifest {self.display}: unknown format {ext or '(none)'!r} "
                                 f"(expected {', '.join(sorted(FORMATS))} or a folder of "
                                 ".parquet files)")
            self.files = [root]
            self.size_bytes = int(info.size or 0)
            self.format = FORMATS[ext]
            self.base = _display(self.fs, posixpath.dirname(root) if "://" in self.display
                                 else os.path.dirname(root))
        self.name = f"manifest:{self.display}"
        self.image = self._check_columns()

    def _check_columns(self) -> _ImageColumn:
        """The image column of the first file (and the id column); JSON lines are checked
        row by row instead (a line may lack a key)."""
        first = self.files[0]
        where = _display(self.fs, first)
        if self.format == "jsonl":
            return _ImageColumn(self.path_column, "path")
        if self.format == "parquet":
            schema = self._parquet(first).schema_arrow
        else:
            with self._csv_reader(first, columns=None) as reader:
                schema = reader.schema
        if self.id_column is not None and self.id_column not in schema.names:
            raise ValueError(f"manifest {where}: no column {self.id_column!r} (columns: "
                             f"{', '.join(schema.names)}); name the id column with --id-column")
        return _image_column(schema, self.path_column, where, self.format)

    @property
    def embedded(self) -> bool:
        """Whether the images are stored in the manifest (bytes) rather than named by path."""
        return self.image.holds != "path"

    def _parquet(self, path: str) -> pq.ParquetFile:
        return pq.ParquetFile(self.fs.open_input_file(path))

    def _csv_reader(self, path: str, columns: list[str] | None) -> Any:
        types = {c: pa.string() for c in (columns or [])}
        convert = pa_csv.ConvertOptions(include_columns=columns, column_types=types,
                                        strings_can_be_null=True)
        return pa_csv.open_csv(self.fs.open_input_stream(path), convert_options=convert,
                               read_options=pa_csv.ReadOptions(block_size=1 << 20))

    def iter_manifest(self) -> Iterator[ManifestEntry]:
        """Yield one entry per row, file by file, in row order (streamed in batches)."""
        for path in self.files:
            if self.format == "jsonl":
                yield from self._jsonl_entries(path)
            elif self.embedded:
                yield from self._embedded_entries(path)
            else:
                yield from self._table_entries(path, self._batches(path))

    def _columns(self) -> list[str]:
        return [self.path_column] + ([self.id_column] if self.id_column else [])

    def _batches(self, path: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        columns = columns if columns is not None else self._columns()
        if self.format == "parquet":
            yield from self._parquet(path).iter_batches(batch_size=BATCH_ROWS, columns=columns)
            return
        with self._csv_reader(path, columns) as reader:
            yield from reader

    def _ids(self, batch: pa.RecordBatch, where: str, first_row: int) -> list[str] | None:
        if self.id_column is None:
            return None
        ids = batch.column(self.id_column)
        if ids.null_count:
            row = first_row + next(i for i, v in enumerate(ids.is_null().to_pylist()) if v)
            raise ValueError(f"manifest {where}: row {row}: null in id column "
                             f"{self.id_column!r}")
        return [str(v) for v in ids.to_pylist()]

    def _table_entries(self, path: str,
                       batches: Iterator[pa.RecordBatch]) -> Iterator[ManifestEntry]:
        where = _display(self.fs, path)
        row = 0
        for batch in batches:
            values = batch.column(self.path_column).to_pylist()
            ids = self._ids(batch, where, row)
            for i, value in enumerate(values):
                if value is None or not str(value).strip():
                    raise ValueError(f"manifest {where}: row {row + i}: "
                                     f"{'null' if value is None else 'empty'} path in column "
                                     f"{self.path_column!r}")
                written = str(value).strip()
                yield ManifestEntry(image_id=written if ids is None else ids[i],
                                    path=_join(self.base, written))
            row += len(values)

    def _embedded_entries(self, path: str) -> Iterator[ManifestEntry]:
        where = _display(self.fs, path)
        relative = posixpath.relpath(path, self.root) if len(self.files) > 1 or \
            path != self.root else posixpath.basename(path)
        row = 0
        for count, ids in self._embedded_ids(path, where):
            for i in range(count):
                yield EmbeddedEntry(
                    image_id=f"{relative}#{row + i}" if ids is None else ids[i],
                    path=f"{where}#row={row + i}", file=where, row=row + i,
                    column=self.path_column)
            row += count

    def _embedded_ids(self, path: str, where: str) -> Iterator[tuple[int, list[str] | None]]:
        """``(rows, ids or None)`` per batch: the id column only, or without one just the
        row counts of the row groups (from the footer: nothing of the table is read)."""
        if self.id_column is None:
            metadata = self._parquet(path).metadata
            for group in range(metadata.num_row_groups):
                yield metadata.row_group(group).num_rows, None
            return
        row = 0
        for batch in self._batches(path, [self.id_column]):
            yield batch.num_rows, self._ids(batch, where, row)
            row += batch.num_rows

    def _jsonl_entries(self, path: str) -> Iterator[ManifestEntry]:
        where = _display(self.fs, path)
        with self.fs.open_input_stream(path) as stream:
            for number, raw in enumerate(_lines(stream), start=1):
                text = raw.strip()
                if not text:
                    continue
                try:
                    record = json.loads(text)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise ValueError(f"manifest {where}: line {number}: not JSON ({exc})") \
                        from None
                if not isinstance(record, dict):
                    raise ValueError(f"manifest {where}: line {number}: not a JSON object")
                value = record.get(self.path_column)
                if not isinstance(value, str) or not value.strip():
                    what = "no" if value is None else f"a {type(value).__name__}, not a"
                    raise ValueError(f"manifest {where}: line {number}: {what} path in key "
                                     f"{self.path_column!r}")
                image_id = value.strip()
                if self.id_column is not None:
                    if record.get(self.id_column) is None:
                        raise ValueError(f"manifest {where}: line {number}: no id in key "
                                         f"{self.id_column!r}")
                    image_id = str(record[self.id_column])
                yield ManifestEntry(image_id=image_id, path=_join(self.base, value.strip()))

    def num_rows(self) -> int | None:
        """Rows of a Parquet manifest from the files' footers (None for CSV and JSON lines:
        counting them needs a full read)."""
        if self.format != "parquet":
            return None
        return sum(self._parquet(p).metadata.num_rows for p in self.files)

    def describe(self) -> dict[str, Any]:
        """Kind, location, format, columns, files, bytes and (Parquet) rows: cheap, from the
        listing and the footers."""
        return {"kind": "manifest", "uri": self.display, "format": self.format,
                "path_column": self.path_column, "id_column": self.id_column,
                "embedded": self.embedded, "num_files": len(self.files),
                "size_bytes": self.size_bytes, "num_rows": self.num_rows()}


def _lines(stream: Any) -> Iterator[bytes]:
    """The lines of a ``pyarrow`` input stream, read in 1 MiB blocks."""
    pending = b""
    while True:
        block = stream.read(1 << 20)
        if not block:
            break
        pending += block
        *lines, pending = pending.split(b"\n")
        yield from lines
    if pending:
        yield pending


def load_embedded(entries: Sequence[ManifestEntry]) -> tuple[ManifestEntry, ...]:
    """``entries`` with the encoded bytes of each :class:`EmbeddedEntry` filled in.

    Runs in the worker: for each manifest file it reads only the row groups that hold the
    entries' rows, and of them only the image column. Other entries pass unchanged. A null
    image (or a null ``bytes`` field) leaves ``data`` as ``b""`` (the decoder reports an
    empty file).
    """
    wanted: dict[tuple[str, str], list[int]] = {}
    for position, entry in enumerate(entries):
        if isinstance(entry, EmbeddedEntry):
            wanted.setdefault((entry.file, entry.column), []).append(position)
    if not wanted:
        return tuple(entries)
    out = list(entries)
    for (file, column), positions in wanted.items():
        fs, path = _location(file)
        rows = {out[p].row: p for p in positions}  # type: ignore[attr-defined]
        for row, data in _read_rows(pq.ParquetFile(fs.open_input_file(path)), column, rows):
            entry = out[rows[row]]
            if isinstance(entry, EmbeddedEntry):
                out[rows[row]] = replace(entry, data=data)
    return tuple(out)


def image_source(entry: ManifestEntry) -> str | bytes:
    """What the decoder reads for ``entry``: its bytes once :func:`load_embedded` filled them
    in, else its path."""
    if isinstance(entry, EmbeddedEntry) and entry.data is not None:
        return entry.data
    return entry.path


def _read_rows(parquet: pq.ParquetFile, column: str,
               rows: dict[int, int]) -> Iterator[tuple[int, bytes]]:
    """``(row, bytes)`` for the wanted rows of ``column`` (binary, or a struct's ``bytes``)."""
    lo, hi = min(rows), max(rows)
    start = 0
    for group in range(parquet.num_row_groups):
        count = parquet.metadata.row_group(group).num_rows
        if start <= hi and start + count > lo:
            table = parquet.read_row_group(group, columns=[column])
            values = table.column(column)
            if pa.types.is_struct(values.type):
                values = pa.chunked_array([chunk.field("bytes") for chunk in values.chunks],
                                          values.type.field("bytes").type)
            for row in range(max(lo, start), min(hi + 1, start + count)):
                if row in rows:
                    value = values[row - start].as_py()
                    yield row, value if value is not None else b""
        start += count


def open_manifest(spec: DatasetSpec) -> ManifestDataset:
    """``manifest:URI`` as a source; options ``path_column`` and ``id_column``."""
    if not spec.rest:
        raise spec.error("empty manifest location")
    options = dict(spec.options)
    return ManifestDataset(spec.rest, path_column=options.get("path_column")
                           or DEFAULT_PATH_COLUMN, id_column=options.get("id_column"))


register("manifest", open_manifest, grammar="manifest:URI",
         options=("path_column", "id_column"))
