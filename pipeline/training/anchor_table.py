"""The matched-anchor table of ``dsfd anchors``: one Parquet row per augmented face.

This module computes the table and writes it and ``summary.json``; the per-policy statistics
and the figures are computed and drawn from the table by ``reports`` (``jobs/anchors.py`` joins
the two), so nothing here imports ``reports``.

For each policy the same sequence of images is used (sample ``k`` augments image
``k mod num_images``), each policy with its own generator seeded by ``(seed, policy)``, so the two
policies see the same faces and differ only by the augmentation.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dsfd.anchor_stats import AnchorStatsConfig, face_match_stats
from dsfd.anchors import FIRST_SHOT_ANCHORS, SECOND_SHOT_ANCHORS
from dsfd.augment import AugmentConfig
from dsfd.matching import MatchConfig
from pipeline.datasets.face_record import FaceRecord, image_hw_of
from pipeline.datasets.wider.kinds import GT_CANVAS_WH
from pipeline.schema import write_table_atomic

ANCHOR_TABLE_SCHEMA = pa.schema(
    [
        pa.field("policy", pa.string(), nullable=False),
        pa.field("sample", pa.int32(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("image_width", pa.int32(), nullable=False),
        pa.field("image_height", pa.int32(), nullable=False),
        pa.field("mode", pa.string(), nullable=False),
        pa.field("face_index", pa.int32(), nullable=False),
        pa.field("face_scale", pa.float32(), nullable=False),
        pa.field("num_matched", pa.int32(), nullable=False),
    ]
)
TABLE_NAME = "anchor_stats.parquet"


@dataclass(frozen=True)
class AnchorJob:
    """Settings of one ``dsfd anchors`` run.

    Attributes:
        policies: augmentation policies to compare (``"ssd"``, ``"iam"``).
        samples: augmented samples per policy (``None``: one per image).
        seed: base seed.
        image_size: square training input in pixels.
        shot: ``"second"`` (anchors 16..512, Table 1) or ``"first"`` (8..256).
        pos_thresh: matching IoU threshold.
    """

    policies: tuple[str, ...] = ("ssd", "iam")
    samples: int | None = None
    seed: int = 0
    image_size: int = 640
    shot: str = "second"
    pos_thresh: float = 0.4

    def __post_init__(self) -> None:
        bad = [p for p in self.policies if p not in ("ssd", "iam")]
        if bad or not self.policies:
            raise ValueError(f"policies must be among 'ssd', 'iam', got {self.policies}")
        if self.shot not in ("first", "second"):
            raise ValueError(f"shot must be 'first' or 'second', got {self.shot!r}")
        if self.samples is not None and self.samples <= 0:
            raise ValueError(f"samples must be positive, got {self.samples}")

    def stats_config(self, policy: str) -> AnchorStatsConfig:
        """The :class:`AnchorStatsConfig` of one policy."""
        return AnchorStatsConfig(
            augment=AugmentConfig(image_size=self.image_size, policy=policy),  # type: ignore[arg-type]
            match=MatchConfig(pos_thresh=self.pos_thresh),
            anchors=SECOND_SHOT_ANCHORS if self.shot == "second" else FIRST_SHOT_ANCHORS,
        )


def _policy_rows(
    records: Sequence[FaceRecord], sizes: Sequence[tuple[int, int]], policy: str, job: AnchorJob
) -> dict[str, list[Any]]:
    config = job.stats_config(policy)
    rng = np.random.default_rng([job.seed, zlib.crc32(policy.encode())])
    cols: dict[str, list[Any]] = {name: [] for name in ANCHOR_TABLE_SCHEMA.names}
    total = job.samples if job.samples is not None else len(records)
    for sample in range(total):
        k = sample % len(records)
        rec, (height, width) = records[k], sizes[k]
        stats = face_match_stats(rec.boxes_xyxy, (height, width), rng, config)
        m = len(stats.face_scale)
        cols["policy"] += [policy] * m
        cols["sample"] += [sample] * m
        cols["image_id"] += [rec.image_id] * m
        cols["image_width"] += [width] * m
        cols["image_height"] += [height] * m
        cols["mode"] += [stats.mode] * m
        cols["face_index"] += stats.face_index.tolist()
        cols["face_scale"] += stats.face_scale.tolist()
        cols["num_matched"] += stats.num_matched.tolist()
    return cols


def collect_anchor_table(records: Sequence[FaceRecord], job: AnchorJob) -> pa.Table:
    """Augment, match and count for every policy of ``job``.

    Args:
        records: images with their face boxes (and a size, or a readable image file).
        job: policies, sample count, seed, training size and anchor design.

    Returns:
        A table with :data:`ANCHOR_TABLE_SCHEMA`.
    """
    if not records:
        raise ValueError("dsfd anchors: the dataset has no images")
    sizes = [image_hw_of(r) for r in records]
    tables = []
    for policy in job.policies:
        cols = _policy_rows(records, sizes, policy, job)
        tables.append(pa.table(cols, schema=ANCHOR_TABLE_SCHEMA))
    return pa.concat_tables(tables)


def size_assumption(assumed_size: bool) -> str | None:
    """The image-size assumption of a boxes-only source, in words (None when sizes are real)."""
    if not assumed_size:
        return None
    width, height = GT_CANVAS_WH
    return (
        f"images absent: each image assumed to be a canvas of max({width}, right-most box "
        f"edge) x max({height}, lowest box edge) pixels"
    )


def anchor_note(job: AnchorJob, dataset: str, assumption: str | None) -> str:
    """The line printed under each figure: dataset, training input, shot, assumption."""
    note = f"dataset {dataset}; training input {job.image_size}x{job.image_size}; {job.shot} shot"
    return f"{note}; {assumption}" if assumption else note


def write_anchor_table(table: pa.Table, out_dir: str | os.PathLike[str]) -> Path:
    """Write the table as ``OUT/anchor_stats.parquet`` (atomically); returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_table_atomic(table, out / TABLE_NAME)
    return out / TABLE_NAME


def write_anchor_summary(
    out_dir: str | os.PathLike[str],
    job: AnchorJob,
    dataset: str,
    assumption: str | None,
    policies: dict[str, Any],
) -> dict[str, Any]:
    """Write ``OUT/summary.json``: dataset, the job's config, the size assumption and the
    per-policy statistics ``policies`` (computed from the table by the caller).

    Returns:
        The summary written.
    """
    summary = {
        "dataset": dataset,
        "config": asdict(job),
        "image_size_assumption": assumption,
        "policies": policies,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out / "summary.json")
    return summary
