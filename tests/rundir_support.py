"""Writing a run directory in tests through the real API (no Ray, no model): every reader
checks part metadata and config digests, so tests build runs the way the pipeline does."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.datasets.manifest import ManifestEntry
from pipeline.rundir import RunDir
from pipeline.schema import DETECTIONS_SCHEMA, IMAGES_SCHEMA
from pipeline.shards import shard_digest

DEFAULT_CONFIG: dict[str, Any] = {"model": {"name": "test", "checksum": "0"}, "dataset": {}}


def write_run_dir(root: str | Path, shards: Sequence[tuple[pa.Table, pa.Table]], *,
                  config: dict[str, Any] | None = None,
                  record: dict[str, Any] | None = None) -> RunDir:
    """Write ``shards`` (``(detections, images)`` table pairs, shard 0, 1, ...) as a finished
    run into ``root`` and return it opened for reading.

    Args:
        root: the run directory (created).
        shards: one ``(detections, images)`` pair per shard, in the run's schemas.
        config: the run's config (``run.json`` ``config``); a small default otherwise.
        record: other ``run.json`` fields (``dataset_spec``, ``model``, ``timing``, ...).
    """
    config = dict(DEFAULT_CONFIG if config is None else config)
    with RunDir.open_for_writing(root) as run:
        writer = run.begin({"config": config, **(record or {})})
        for index, (detections, images) in enumerate(shards):
            entries = [ManifestEntry(i, p) for i, p in zip(images["image_id"].to_pylist(),
                                                           images["path"].to_pylist(),
                                                           strict=True)]
            writer.write(index, shard_digest(entries), detections, images)
        run.finish(lambda rec: rec.update(plan={"complete": True, "num_shards": len(shards)}))
    return RunDir.open(root)


def add_shard(root: str | Path, index: int, detections: pa.Table, images: pa.Table, *,
              config: dict[str, Any] | None = None) -> RunDir:
    """Write one more shard into the run at ``root`` (begun with ``config`` when new)."""
    with RunDir.open_for_writing(root) as run:
        record = dict(run.record) if run.record else {
            "config": dict(DEFAULT_CONFIG if config is None else config)}
        writer = run.begin(record)
        entries = [ManifestEntry(i, p) for i, p in zip(images["image_id"].to_pylist(),
                                                       images["path"].to_pylist(), strict=True)]
        writer.write(index, shard_digest(entries), detections, images)
    return RunDir.open(root)


Det = tuple[str, float, float, float, float, float]  # image_id, x1, y1, x2, y2, score


def add_rows(run: Path, sizes: dict[str, tuple[int | None, int | None]], dets: list[Det],
             errors: tuple[str, ...] = (), shard: int = 0, repeat: int = 1) -> Path:
    """One shard of ``sizes``' images (``ok`` unless named in ``errors``; each ``repeat``
    times, as a list file with repeated lines gives) and their detections, written through the
    run writer; returns ``run``."""
    cols: list[Any] = list(zip(*dets, strict=True)) if dets else [[]] * 6
    detections = pa.table(
        {n: pa.array(c, f.type) for n, c, f in zip(DETECTIONS_SCHEMA.names, cols,
                                                   DETECTIONS_SCHEMA, strict=True)},
        schema=DETECTIONS_SCHEMA)
    ids = [i for i in sizes for _ in range(repeat)]
    images = pa.table(
        {"image_id": ids, "path": [f"/photos/{i}" for i in ids],
         "width": pa.array([sizes[i][0] for i in ids], pa.int32()),
         "height": pa.array([sizes[i][1] for i in ids], pa.int32()),
         "status": ["error" if i in errors else "ok" for i in ids],
         "error": pa.array(["cannot open" if i in errors else None for i in ids], pa.string()),
         "num_detections": pa.array([sum(d[0] == i for d in dets) for i in ids], pa.int32()),
         "seconds": [0.1] * len(ids)},
        schema=IMAGES_SCHEMA)
    add_shard(run, shard, detections, images)
    return Path(run)


def write_wider_without_faces(root: Path) -> Path:
    """A WIDER FACE train split of one image and no face (``wider:ROOT:train``)."""
    from PIL import Image

    (root / "WIDER_train" / "images" / "0--Parade").mkdir(parents=True)
    Image.new("RGB", (64, 48)).save(root / "WIDER_train" / "images" / "0--Parade" / "a.jpg")
    (root / "wider_face_split").mkdir()
    (root / "wider_face_split" / "wider_face_train_bbx_gt.txt").write_text(
        "0--Parade/a.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n")
    return root
