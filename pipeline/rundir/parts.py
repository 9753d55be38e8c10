"""Shard part pairs: their names, the one writer, and the check of a part's footer.

A shard is complete when both ``detections/part-NNNNN.parquet`` and
``images/part-NNNNN.parquet`` exist; the images part is written last (renamed into place on a
disk; on object storage each part is written under its final key in one object write). Both parts
carry, in their Parquet key-value metadata, the shard's manifest digest, the run's id and
config digest and their own row counts, so a resume and every reader can prove a part belongs
to the run and is whole. The images part also carries the run's identity (config, model,
dataset), from which a lost ``run.json`` can be rebuilt.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.rundir.errors import OutputWriteError
from pipeline.schema import (
    DETECTIONS_DIR,
    DETECTIONS_SCHEMA,
    IMAGES_DIR,
    IMAGES_SCHEMA,
    TMP_PREFIX,
    write_table_atomic,
)
from pipeline.storage import Location, ObjectPath, arrow_file, location

PART_KEY = b"dsfd.shard"
RUN_KEY = b"dsfd.run"
TABLES = (DETECTIONS_DIR, IMAGES_DIR)
_PART_RE = re.compile(r"^part-(\d{5,})\.parquet$")


def part_name(shard_index: int) -> str:
    """File name of shard ``shard_index``'s part, e.g. ``part-00007.parquet``."""
    if shard_index < 0:
        raise ValueError(f"shard_index must be >= 0, got {shard_index}")
    return f"part-{shard_index:05d}.parquet"


def part_index(name: str) -> int | None:
    """The shard index of an exact part file name, else None (``part-3.png`` is not one)."""
    found = _PART_RE.match(name)
    if found is None or part_name(int(found[1])) != name:
        return None
    return int(found[1])


def tmp_prefix(run_id: str) -> str:
    """Prefix of the run's own temporary files (only these are ever removed as leftovers)."""
    return f"{TMP_PREFIX}{run_id}-"


@dataclass(frozen=True)
class PartInfo:
    """What a part's footer says: its table, shard, row count and our metadata (or why not).

    ``problem`` is None for a whole part of ours; else one line (truncated, not Parquet, no
    dsfd metadata, row count differs from the recorded one).
    """

    path: Location
    table: str
    index: int
    num_rows: int
    meta: dict[str, Any]
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def inspect_part(path: Location, table: str) -> PartInfo:
    """Read ``path``'s footer (not its rows) and check it against its own metadata."""
    index = part_index(path.name)
    if index is None:
        raise ValueError(f"{path}: not a part file name")
    try:
        where, fs = arrow_file(path)
        meta_file = pq.read_metadata(where, filesystem=fs)
    except (OSError, pa.ArrowException) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return PartInfo(path, table, index, 0, {}, f"unreadable Parquet ({reason})")
    raw = (meta_file.metadata or {}).get(PART_KEY)
    if raw is None:
        return PartInfo(path, table, index, meta_file.num_rows, {},
                        "no dsfd metadata: not written by this pipeline")
    try:
        meta = dict(json.loads(raw))
    except (ValueError, TypeError):
        return PartInfo(path, table, index, meta_file.num_rows, {}, "corrupt dsfd metadata")
    problem = None
    if meta.get("num_rows") is not None and meta["num_rows"] != meta_file.num_rows:
        problem = f"{meta_file.num_rows} rows where {meta['num_rows']} were written"
    elif meta.get("index") != index:
        problem = f"holds shard {meta.get('index')}, not {index}"
    return PartInfo(path, table, index, meta_file.num_rows, meta, problem)


def read_run_identity(path: Location) -> dict[str, Any] | None:
    """The run identity an images part carries (for rebuilding ``run.json``), or None."""
    try:
        where, fs = arrow_file(path)
        raw = (pq.read_metadata(where, filesystem=fs).metadata or {}).get(RUN_KEY)
        return None if raw is None else dict(json.loads(raw))
    except (OSError, pa.ArrowException, ValueError, TypeError):
        return None


def _os_reason(exc: OSError) -> str:
    """``exc``'s reason in the system's words (``No space left on device``); Arrow's errors
    carry the errno only in their text (``... Detail: [errno 28] ...``)."""
    if exc.errno:
        return os.strerror(exc.errno)
    found = re.search(r"\[errno (\d+)\]", str(exc), flags=re.IGNORECASE)
    if found:
        return os.strerror(int(found[1]))
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as the bytes of a whole Parquet file."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


@dataclass(frozen=True)
class ShardWriter:
    """Writes shard part pairs of one run (picklable: it travels to the Ray actors).

    Attributes:
        root: the run directory (a local path or an object-storage URI).
        run_id: the run's id (``run.json``), stored in every part and in temporary names.
        config_digest: the run's config digest, stored in every part.
        identity: the run's identity as JSON text (stored in images parts, for repair).
    """

    root: str
    run_id: str
    config_digest: str
    identity: str

    def write(self, shard_index: int, shard_digest: str, detections: pa.Table,
              images: pa.Table) -> None:
        """Write one shard's part pair: detections first, then the images part (marks it done).

        Args:
            shard_index: the shard number.
            shard_digest: the shard's manifest digest (``pipeline.shards.shard_digest``).
            detections: table with :data:`DETECTIONS_SCHEMA` (one row per box).
            images: table with :data:`IMAGES_SCHEMA` (one row per image of the shard).

        Raises:
            ValueError: a table has another schema.
            OutputWriteError: a part could not be written (its temporary file is removed).
        """
        for name, table, schema in (("detections", detections, DETECTIONS_SCHEMA),
                                    ("images", images, IMAGES_SCHEMA)):
            if not table.schema.equals(schema):
                raise ValueError(f"{name} table schema differs from the run's: "
                                 + "; ".join(str(f) for f in table.schema))
        status = images.column("status").to_pylist()
        common = {"index": shard_index, "digest": shard_digest, "run_id": self.run_id,
                  "config_digest": self.config_digest, "num_images": images.num_rows,
                  "num_errors": sum(s != "ok" for s in status),
                  "num_detections": detections.num_rows}
        root = location(self.root)
        try:
            for table_name, table in ((DETECTIONS_DIR, detections), (IMAGES_DIR, images)):
                meta = {PART_KEY: json.dumps({**common, "table": table_name,
                                              "num_rows": table.num_rows}).encode("utf-8")}
                if table_name == IMAGES_DIR:
                    meta[RUN_KEY] = self.identity.encode("utf-8")
                target = root / table_name / part_name(shard_index)
                if isinstance(target, ObjectPath):
                    # no rename on object storage: the part is serialised here and written
                    # under its final key in one object write (whole or not at all)
                    target.write_bytes(_parquet_bytes(table.replace_schema_metadata(meta)))
                    continue
                write_table_atomic(table.replace_schema_metadata(meta), target,
                                   tmp_prefix=tmp_prefix(self.run_id))
        except OSError as exc:
            raise OutputWriteError(f"cannot write shard {shard_index} to {root}: "
                                   f"{_os_reason(exc)}; free space or fix the folder, then run "
                                   "the same command again to resume") from exc
