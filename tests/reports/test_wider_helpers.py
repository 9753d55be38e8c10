"""Shared builders for the WIDER evaluator tests (tiny ground truth, run directories)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.datasets.wider import ATTRIBUTE_NAMES, SETTINGS, WiderGroundTruth, WiderImageRecord
from pipeline.schema import DETECTIONS_SCHEMA, IMAGES_SCHEMA
from tests.rundir_support import write_run_dir as write_parts


def tiny_gt(
    boxes: dict[str, list[list[int]]],
    keep: dict[str, list[int]] | None = None,
    attributes: dict[str, dict[str, list[int]]] | None = None,
) -> WiderGroundTruth:
    """Ground truth with every face kept in every setting unless ``keep`` says otherwise."""
    records, keeps = [], {s: [] for s in SETTINGS}
    for image_id, b in boxes.items():
        k = len(b)
        attrs = {a: np.zeros(k, np.uint8) for a in ATTRIBUTE_NAMES}
        for a, v in (attributes or {}).get(image_id, {}).items():
            attrs[a] = np.asarray(v, np.uint8)
        records.append(WiderImageRecord(image_id, np.asarray(b, np.int32).reshape(-1, 4), attrs))
        for s in SETTINGS:
            keeps[s].append(np.asarray((keep or {}).get(image_id, range(k)), np.int64))
    return WiderGroundTruth.from_records(records, keeps)


def write_run_dir(run_dir: Path, rows: list[tuple], image_ids: list[str], shards: int = 1) -> None:
    """Write detections rows (image_id, x1, y1, x2, y2, score) and an images table, split
    round-robin by image into ``shards`` part files, through the run directory's writer."""
    pairs = []
    for k in range(shards):
        ids = image_ids[k::shards]
        part = [r for r in rows if r[0] in ids]
        cols = list(zip(*part, strict=True)) if part else [[]] * 6
        det = pa.table(
            {
                n: pa.array(c, type=f.type)
                for n, c, f in zip(DETECTIONS_SCHEMA.names, cols, DETECTIONS_SCHEMA, strict=True)
            },
            schema=DETECTIONS_SCHEMA,
        )
        counts = [sum(1 for r in part if r[0] == i) for i in ids]
        img = pa.table(
            {
                "image_id": ids,
                "path": [f"/x/{i}.jpg" for i in ids],
                "width": pa.array([1024] * len(ids), pa.int32()),
                "height": pa.array([768] * len(ids), pa.int32()),
                "status": ["ok"] * len(ids),
                "error": pa.array([None] * len(ids), pa.string()),
                "num_detections": pa.array(counts, pa.int32()),
                "seconds": [0.1] * len(ids),
            },
            schema=IMAGES_SCHEMA,
        )
        pairs.append((det, img))
    write_parts(run_dir, pairs)
