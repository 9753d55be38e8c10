"""Table schemas of a run directory and the atomic Parquet writer (no Ray, no torch). Reading
and writing run directories goes through :class:`pipeline.rundir.RunDir`.

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


def write_table_atomic(table: pa.Table, path: str | os.PathLike[str], *,
                       tmp_prefix: str = TMP_PREFIX) -> None:
    """Write ``table`` to ``path`` so that the file appears only complete.

    The table is written to a hidden temporary name in the same folder (``tmp_prefix`` +
    a random hex + the name), flushed to disk and renamed over ``path``; a crash leaves at
    most such a temporary file, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{tmp_prefix}{uuid.uuid4().hex}-{path.name}")
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
