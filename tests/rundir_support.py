"""Writing a run directory in tests through the real API (no Ray, no model): every reader
checks part metadata and config digests, so tests build runs the way the pipeline does."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.datasets.manifest import ManifestEntry
from pipeline.rundir import RunDir
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
