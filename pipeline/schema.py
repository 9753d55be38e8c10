"""Table schemas of a run directory, and their atomic writers and readers (no Ray, no torch).

A run directory holds::

    RUN_DIR/run.json                          config, model, versions, shard plan
    RUN_DIR/detections/part-NNNNN.parquet     one row per box
    RUN_DIR/images/part-NNNNN.parquet         one row per image

Boxes are float32 pixels of the original image, ``xyxy`` with x2/y2 exclusive (no +1
convention); writers of official formats apply their own rounding.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

DETECTIONS_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("x1", pa.float32(), nullable=False),
        pa.field("y1", pa.float32(), nullable=False),
        pa.field("x2", pa.float32(), nullable=False),
        pa.field("y2", pa.float32(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
    ]
)

IMAGES_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("status", pa.string(), nullable=False),  # "ok" | "error"
        pa.field("error", pa.string()),
        pa.field("num_detections", pa.int32(), nullable=False),
        pa.field("seconds", pa.float64(), nullable=False),
    ]
)

DETECTIONS_DIR = "detections"
IMAGES_DIR = "images"
TMP_PREFIX = ".tmp-"


def part_name(shard_index: int) -> str:
    """File name of shard ``shard_index``'s part, e.g. ``part-00007.parquet``."""
    if shard_index < 0:
        raise ValueError(f"shard_index must be >= 0, got {shard_index}")
    return f"part-{shard_index:05d}.parquet"


def write_table_atomic(table: pa.Table, path: str | os.PathLike[str]) -> None:
    """Write ``table`` to ``path`` so that the file appears only complete.

    The table is written to a hidden temporary name in the same folder, flushed to disk and
    renamed over ``path``; a crash leaves at most a ``.tmp-*`` file, never a partial part.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def part_files(run_dir: str | os.PathLike[str], table: str) -> list[Path]:
    """Complete part files of ``table`` ("detections" or "images"), sorted by name."""
    if table not in (DETECTIONS_DIR, IMAGES_DIR):
        raise ValueError(f"table must be {DETECTIONS_DIR!r} or {IMAGES_DIR!r}, got {table!r}")
    folder = Path(run_dir) / table
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("part-*.parquet") if p.is_file())


def read_run_table(run_dir: str | os.PathLike[str], table: str) -> pa.Table:
    """All complete parts of one table of a run directory, concatenated in part order."""
    schema = DETECTIONS_SCHEMA if table == DETECTIONS_DIR else IMAGES_SCHEMA
    files = part_files(run_dir, table)
    if not files:
        return schema.empty_table()
    tables = [pq.read_table(f, schema=schema) for f in files]
    return pa.concat_tables(tables)


def iter_run_parts(run_dir: str | os.PathLike[str], table: str) -> Iterator[pa.Table]:
    """Yield each complete part of ``table`` in turn (for streaming consumers)."""
    schema = DETECTIONS_SCHEMA if table == DETECTIONS_DIR else IMAGES_SCHEMA
    for f in part_files(run_dir, table):
        yield pq.read_table(f, schema=schema)
