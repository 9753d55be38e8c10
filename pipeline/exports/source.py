"""The boxes of each image of a run, as every exporter reads them (no torch, no Ray).

One shard's detections are in memory at a time (:meth:`pipeline.rundir.RunDir.
detections_by_image` filters by score while reading); the run is never copied to filter it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.boxes import clip_boxes_xyxy
from pipeline.rundir import RunDir, RunDirError


@dataclass(frozen=True)
class ImageBoxes:
    """The boxes of one ``ok`` row of the images table.

    Attributes:
        image_id: the run's image id.
        width, height: the image size in pixels from the images table (None if unknown).
        boxes_xyxy: (K, 4) float32 ``x1 y1 x2 y2`` pixels, x2/y2 exclusive (K may be 0).
        scores: (K,) float32.
        repeat: a later row of an id listed before (a list file with a repeated line); it
            carries no boxes, since its detections were given with the first listing.
    """

    image_id: str
    width: int | None
    height: int | None
    boxes_xyxy: np.ndarray
    scores: np.ndarray
    repeat: bool


def count_errors(images: pa.Table) -> int:
    """Rows of the images table whose status is not ``ok`` (unreadable images)."""
    return images.num_rows - int(pc.sum(pc.equal(images["status"], "ok")).as_py() or 0)


def ok_image_ids(images: pa.Table) -> list[str]:
    """The ids of the ``ok`` rows of the images table, in run order (repeats kept)."""
    ok = images.filter(pc.equal(images["status"], "ok"))
    return [str(i) for i in ok["image_id"].to_pylist()]


def _repeated_ok_ids(images: pa.Table) -> set[str]:
    """Ids on more than one ``ok`` row (usually none, so the set stays small)."""
    ok = images.filter(pc.equal(images["status"], "ok"))["image_id"]
    counts = pc.value_counts(ok).flatten()  # [values, counts]
    return {str(v) for v, c in zip(counts[0].to_pylist(), counts[1].to_pylist(), strict=True)
            if c > 1}


def _ok_rows(images: pa.Table) -> Iterator[tuple[str, int | None, int | None]]:
    """``(image_id, width, height)`` of the ``ok`` rows, one table chunk at a time."""
    for batch in images.to_batches():
        columns = [batch.column(batch.schema.get_field_index(c)).to_pylist()
                   for c in ("image_id", "status", "width", "height")]
        for image_id, status, width, height in zip(*columns, strict=True):
            if status == "ok":
                yield image_id, width, height


def _clip(image_id: str, boxes: np.ndarray, scores: np.ndarray, width: int | None,
          height: int | None) -> tuple[np.ndarray, np.ndarray]:
    if width is None or height is None:
        raise ValueError(f"image {image_id!r} has no width/height in the images table; "
                         "cannot clip its boxes")
    clipped, keep = clip_boxes_xyxy(boxes, width, height)
    return clipped[keep], scores[keep]


def iter_image_boxes(run: RunDir, images: pa.Table, *, min_score: float, clip: bool
                     ) -> Iterator[ImageBoxes]:
    """The boxes of every ``ok`` row of ``images``, in run order.

    Args:
        run: the run directory.
        images: ``run.images()``, read once by the caller (its rows set the order).
        min_score: keep boxes whose float32 score is at least this.
        clip: clip boxes to their image and drop those left without area.

    Raises:
        ValueError: ``clip`` and an image with boxes has no size in the images table.
        RunDirError: the run's shards changed since ``images`` was read.
    """
    repeated = _repeated_ok_ids(images)
    seen: set[str] = set()
    stream = run.detections_by_image(min_score=min_score)
    for image_id, width, height in _ok_rows(images):
        got = next(stream, None)
        if got is None or got[0] != image_id:
            raise RunDirError(f"{run.root}: the run changed while it was being exported "
                              f"(image {image_id!r} moved); export again once it has finished")
        _, boxes, scores = got
        repeat = image_id in seen
        if image_id in repeated:
            seen.add(image_id)
        if repeat:
            boxes, scores = boxes[:0], scores[:0]
        elif clip and len(boxes):
            boxes, scores = _clip(image_id, boxes, scores, width, height)
        yield ImageBoxes(image_id, width, height, boxes, scores, repeat)
