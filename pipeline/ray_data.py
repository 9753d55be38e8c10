"""Face detection as a Ray Data batch UDF, for pipelines that already use Ray Data::

    import ray
    from ray.data import ActorPoolStrategy
    from pipeline.ray_data import DetectBatch

    ds = ray.data.read_images("s3://bucket/photos/", include_paths=True, mode="RGB")
    ds = ds.map_batches(DetectBatch, fn_constructor_args=("shipped",),
                        fn_constructor_kwargs={"max_size": 1024, "keep_score": 0.5},
                        batch_format="pyarrow", batch_size=16,
                        compute=ActorPoolStrategy(size=2), num_cpus=1)
    ds.drop_columns(["image"]).write_parquet("s3://bucket/faces/")

:class:`DetectBatch` loads the detector once per actor (``open_detector``, configured as the
``run`` workers configure it; every model spec ``dsfd run`` takes) and adds two columns to
each batch: ``boxes``, a list of ``[x1, y1, x2, y2]`` float32 pixel boxes per image (the run
directory's convention), and ``scores``, the matching float32 scores. The boxes are those
``dsfd run`` finds on the same pixels with the same settings. It returns a ``pyarrow.Table``
with an explicit type for the new columns (``list<fixed_size_list<float32, 4>>`` and
``list<float32>``), so the Parquet that ``write_parquet`` writes is plain: pandas, pyarrow
and DuckDB read it without Ray.

Decoding is Ray Data's (``read_images``: Pillow, without the EXIF rotation that
``pipeline.images`` applies); the ``run`` pipeline remains the resumable, exactly-once path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.actors import WorkerSettings, open_worker_detector
from pipeline.detectors.base import FaceDetector

BOXES_TYPE = pa.list_(pa.list_(pa.float32(), 4))
SCORES_TYPE = pa.list_(pa.float32())


def detect_images(detector: FaceDetector, images: Sequence[np.ndarray], *, batch_size: int = 1,
                  max_size: int | None = None, multiscale: bool = False,
                  keep_score: float | None = None) -> list[np.ndarray]:
    """Run ``detector`` over decoded images as the ``run`` workers do.

    Args:
        detector: an opened detector (``pipeline.detectors.open_detector``).
        images: ``(H, W, 3)`` uint8 RGB arrays.
        batch_size: images per forward pass (single scale).
        max_size: downscale images whose longer side exceeds this (boxes come back in the
            given pixels), or None.
        multiscale: the official multi-scale test instead of one scale.
        keep_score: keep only boxes scoring at least this, or None.

    Returns:
        One ``(N, 5)`` float32 array ``[x1, y1, x2, y2, score]`` per image.
    """
    out: list[np.ndarray] = []
    for start in range(0, len(images), max(1, batch_size)):
        chunk = [_pixels(image) for image in images[start:start + max(1, batch_size)]]
        if multiscale:
            results = [detector.detect_multiscale(p, max_size=max_size) for p in chunk]
        else:
            prepared = [detector.prepare(p, max_size=max_size) for p in chunk]
            results = detector.detect_prepared(prepared, [p.shape[:2] for p in chunk])
        for boxes in results:
            found = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
            if keep_score is not None:
                found = found[found[:, 4] >= np.float32(keep_score)]
            out.append(found)
    return out


def _pixels(image: Any) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 array, or a one-line ``ValueError`` saying what arrived."""
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"DetectBatch: each image must be an (H, W, 3) uint8 array (read_images"
                         f"(..., mode='RGB')), got {pixels.dtype} {pixels.shape}")
    return pixels


def _column_images(column: Any) -> list[np.ndarray]:
    """The images of a batch column: a numpy array (4-D, or an object array of 3-D arrays) or
    a pyarrow (chunked) tensor column."""
    if isinstance(column, np.ndarray):
        return list(column)
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    images: list[np.ndarray] = []
    for chunk in chunks:
        images.extend(chunk.to_numpy(zero_copy_only=False))
    return images


class DetectBatch:
    """A Ray Data ``map_batches`` callable class: faces found in each batch of images.

    Args:
        model_spec: any model spec of ``dsfd run --model`` (``shipped``, a checkpoint of ours,
            ``release-r152:PATH``, ``onnx:PATH``, a plugin's name, ...), loaded once per actor.
        image_column: the column of decoded ``(H, W, 3)`` uint8 images (``read_images``'
            ``image``).
        batch_size: images per forward pass (single scale).
        max_size: downscale images whose longer side exceeds this many pixels, or None.
        multiscale: the official multi-scale test.
        keep_score: keep only boxes scoring at least this (None: every box the detector
            keeps, score > 0.01).
        dtype: forward precision (``float32``, ``tf32``, ``bfloat16``, ``float16``).
        optimize, bucket, memory_budget: DSFD inference settings, as the ``run`` workers take
            them (:class:`pipeline.actors.WorkerSettings`; the defaults are theirs).
        device: ``cpu``, ``cuda`` or None: CUDA when Ray gave the actor a GPU
            (``map_batches(..., num_gpus=1)``), else the CPU.
        num_threads: torch intra-op threads, or None (Ray sets them from the actor's
            ``num_cpus``).
    """

    def __init__(self, model_spec: str = "shipped", *, image_column: str = "image",
                 batch_size: int = 1, max_size: int | None = None, multiscale: bool = False,
                 keep_score: float | None = None, dtype: str = "float32",
                 optimize: bool = True, bucket: bool | None = None,
                 memory_budget: float | None = None, device: str | None = None,
                 num_threads: int | None = None) -> None:
        import torch

        if num_threads is not None:
            torch.set_num_threads(max(1, int(num_threads)))
        if device is None:
            import ray

            device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
        settings = WorkerSettings(model=model_spec, multiscale=multiscale, max_size=max_size,
                                  batch_size=batch_size, keep_score=keep_score, dtype=dtype,
                                  use_gpu=device == "cuda", optimize=optimize, bucket=bucket,
                                  memory_budget=memory_budget)
        self.detector = open_worker_detector(settings, device)
        self.image_column = image_column
        self.options: dict[str, Any] = {"batch_size": batch_size, "max_size": max_size,
                                        "multiscale": multiscale, "keep_score": keep_score}

    @property
    def identity(self) -> dict[str, Any]:
        """The detector's identity (name, checksum, ...), as a run records it."""
        return dict(self.detector.identity)

    def __call__(self, batch: pa.Table | Mapping[str, np.ndarray]) -> pa.Table:
        """The batch with ``boxes`` and ``scores`` added (its other columns kept).

        Args:
            batch: a ``pyarrow.Table`` (``batch_format="pyarrow"``) or a dict of numpy
                columns (the default ``"numpy"`` format) with the image column.

        Returns:
            A ``pyarrow.Table``: the input columns, then ``boxes`` and ``scores``.
        """
        names = batch.column_names if isinstance(batch, pa.Table) else list(batch)
        if self.image_column not in names:
            raise ValueError(f"DetectBatch: the batch has no column {self.image_column!r} "
                             f"(columns: {', '.join(names)}); pass image_column=")
        column = batch.column(self.image_column) if isinstance(batch, pa.Table) \
            else batch[self.image_column]
        found = detect_images(self.detector, _column_images(column), **self.options)
        boxes = pa.array([b[:, :4].tolist() for b in found], BOXES_TYPE)
        scores = pa.array([b[:, 4].tolist() for b in found], SCORES_TYPE)
        table = batch if isinstance(batch, pa.Table) else _to_table(batch)
        return table.append_column("boxes", boxes).append_column("scores", scores)


def _to_table(batch: Mapping[str, np.ndarray]) -> pa.Table:
    """A dict of numpy columns as Ray Data stores it (tensor columns as Ray's tensor type)."""
    from ray.data.block import BlockAccessor

    table: pa.Table = BlockAccessor.batch_to_block(dict(batch))
    return table
