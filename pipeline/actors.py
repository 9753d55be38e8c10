"""The detector worker: loads the model once, runs whole shards, writes their Parquet parts.

:class:`ShardWorker` is a plain class; :mod:`pipeline.runner` turns it into a Ray actor with
the resources of one call site (``ray.remote(ShardWorker).options(...)``). Inside a worker,
image decoding and preparation run on a small thread pool, ahead of the forward pass, so the
two overlap (Pillow and torch release the GIL while they work). The worker returns only a
small :class:`ShardResult`; the rows never travel back to the driver.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.datasets.folder import escape_path, utf8_id
from pipeline.datasets.manifest import ManifestEntry
from pipeline.datasets.manifest_files import image_source, load_embedded
from pipeline.detectors import open_detector
from pipeline.images import DEFAULT_MAX_PIXELS, ImageReadError, decode_image
from pipeline.rundir import ShardWriter
from pipeline.schema import DETECTIONS_SCHEMA, IMAGES_SCHEMA
from pipeline.shards import Shard


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker builds its detector and reads images.

    Attributes:
        model: model spec for ``dsfd.load_model`` (a model name, a checkpoint of ours, or
            ``release-r152:PATH``); a path must be readable on every node.
        multiscale: run the official multi-scale test instead of one scale.
        max_size: downscale images whose longer side exceeds this many pixels before
            detection (boxes are mapped back to the stored image); None keeps every size.
        max_pixels: images with more pixels than this are refused (decompression bombs).
        num_threads: torch intra-op threads (the worker's CPU share).
        decode_threads: threads that decode and prepare images ahead of the forward.
        batch_size: images per forward pass (multi-scale: passes of equal size per forward;
            single-scale bucketed batches are grouped over :data:`GROUP_BATCHES` batches).
        use_gpu: run on the GPU Ray assigned to the worker (CUDA must be available).
        keep_score: store only boxes scoring at least this (None: all the detector keeps).
        dtype: forward precision (``float32``, ``tf32``, ``bfloat16``, ``float16``; see
            :class:`dsfd.Detector`); detector families other than DSFD take float32 only.
        optimize: DSFD: folded BatchNorm + channels-last (:mod:`dsfd.optimize`), used when its
            self-check passes; detections move by float rounding only.
        bucket: DSFD: images of a batch padded to size buckets (the largest stride) share a
            forward, the padding masked. Padding changes what the network sees near the
            image's right and bottom edges, so the boxes move by more than rounding (recorded
            in the run's config; ``--bucket``). Off (None or False): only images of equal
            prepared size share a forward, and batches give the one-image results.
        memory_budget: DSFD: activation bytes one forward may take; larger batches are split
            (estimated from a calibrated bytes-per-pixel figure). None: half of the free GPU
            memory on a GPU, a quarter of the available memory on the CPU.
    """

    model: str
    multiscale: bool = False
    max_size: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    num_threads: int = 1
    decode_threads: int = 2
    batch_size: int = 1
    use_gpu: bool = False
    keep_score: float | None = None
    dtype: str = "float32"
    optimize: bool = True
    bucket: bool | None = None
    memory_budget: float | None = None


@dataclass(frozen=True)
class ShardResult:
    """What a worker reports for one written shard (counts only, a few hundred bytes)."""

    index: int
    num_images: int
    num_errors: int
    num_detections: int
    seconds: float
    write_seconds: float
    pid: int
    node: str


@dataclass
class _Item:
    """One image on its way through a shard: decoded (or failed) and prepared.

    Single-scale: ``tensor`` is the detector's prepared input (downscaled when ``max_size``
    applies); the decoded pixels are not kept. Multi-scale: ``pixels`` is the decoded
    ``(H, W, 3)`` uint8 image until its test has run. ``width``/``height`` are the stored size.
    Both are dropped once the image is detected, so a worker's memory follows the batch, not
    the shard.
    """

    entry: ManifestEntry
    width: int | None = None
    height: int | None = None
    tensor: Any = None
    pixels: np.ndarray | None = None
    error: str | None = None
    seconds: float = 0.0
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))


GROUP_BATCHES = 4
"""Single-scale bucketed batches: a window of this many batches is grouped by size bucket."""


class ShardWorker:
    """Runs the detector over shards and writes each shard's part pair.

    Args:
        settings: model and image settings (see :class:`WorkerSettings`).
        writer: writes the shard part pairs into the run directory (seen by every node).
    """

    def __init__(self, settings: WorkerSettings, writer: ShardWriter) -> None:
        import torch

        self.settings = settings
        self.writer = writer
        torch.set_num_threads(max(1, int(settings.num_threads)))
        device = "cpu"
        if settings.use_gpu:
            if not torch.cuda.is_available():
                raise RuntimeError("a GPU was assigned to this worker but CUDA is unavailable")
            device = "cuda"
        self.detector = open_worker_detector(settings, device)
        self.device = device
        self._pool = ThreadPoolExecutor(max(1, settings.decode_threads),
                                        thread_name_prefix="decode")

    def model_info(self) -> dict[str, Any]:
        """The detector's identity: name, checksum, source, config (JSON-able)."""
        return {k: v for k, v in self.detector.identity.items() if k != "postprocess"}

    def postprocess_config(self) -> dict[str, Any]:
        """The detector's post-processing settings (part of the run's config)."""
        return dict(self.detector.identity.get("postprocess", {}))

    def where(self) -> dict[str, Any]:
        """Process id, host and Ray node of this worker (for tests and logs)."""
        node = ""
        ray = sys.modules.get("ray")  # inside a Ray worker it is imported; never import it here
        if ray is not None and ray.is_initialized():  # asking otherwise would start Ray
            try:
                node = ray.get_runtime_context().get_node_id()
            except Exception:  # noqa: BLE001 - outside Ray there is no node
                node = ""
        return {"pid": os.getpid(), "host": socket.gethostname(), "node": node,
                "device": self.device}

    def _prepare(self, entry: ManifestEntry) -> _Item:
        """Decode (and, single-scale, prepare) one image; runs on a decode thread."""
        start = time.perf_counter()
        item = _Item(entry=entry)
        try:
            image = decode_image(image_source(entry), max_pixels=self.settings.max_pixels)
            item.width, item.height = image.width, image.height
            if self.settings.multiscale:
                item.pixels = image.pixels
            else:
                item.tensor = self.detector.prepare(image.pixels,
                                                    max_size=self.settings.max_size)
        except ImageReadError as exc:
            item.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - any per-image failure becomes an error row
            item.error = f"cannot prepare image: {type(exc).__name__}: {exc}"
            item.width = item.height = None
            item.tensor = item.pixels = None
        item.seconds = time.perf_counter() - start
        return item

    def _decoded(self, entries: tuple[ManifestEntry, ...]) -> Iterator[_Item]:
        """Items in shard order, decoded by the pool with a bounded look-ahead."""
        window = 2 * max(1, self.settings.decode_threads) + self._group_size()
        pending: deque[Future[_Item]] = deque()
        it = iter(entries)
        for entry in it:
            pending.append(self._pool.submit(self._prepare, entry))
            if len(pending) >= window:
                break
        while pending:
            item = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(self._pool.submit(self._prepare, nxt))
            yield item

    def _detect_batch(self, batch: list[_Item]) -> None:
        """Fill ``boxes`` of each item of ``batch``; a failing image becomes an error."""
        start = time.perf_counter()
        try:
            if self.settings.multiscale:
                batched = getattr(self.detector, "detect_multiscale_batch", None)
                if batched is not None:  # passes of equal size share a forward
                    results = batched([i.pixels for i in batch],
                                      max_size=self.settings.max_size)
                else:
                    results = [self.detector.detect_multiscale(
                        i.pixels, max_size=self.settings.max_size)  # type: ignore[arg-type]
                        for i in batch]
            else:  # boxes come back in stored pixels: sizes are the stored (H, W)
                sizes = [(int(i.height), int(i.width)) for i in batch]  # type: ignore[arg-type]
                results = self.detector.detect_prepared([i.tensor for i in batch], sizes)
        except Exception as exc:  # noqa: BLE001
            if len(batch) > 1:  # find the culprit: redo one by one
                for item in batch:
                    self._detect_batch([item])
                return
            batch[0].error = f"detector failed: {type(exc).__name__}: {exc}"
            batch[0].tensor = batch[0].pixels = None
            batch[0].seconds += time.perf_counter() - start
            return
        share = (time.perf_counter() - start) / len(batch)
        keep = self.settings.keep_score
        for item, boxes in zip(batch, results, strict=True):
            item.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
            if keep is not None:
                item.boxes = item.boxes[item.boxes[:, 4] >= np.float32(keep)]
            item.seconds += share
            item.tensor = item.pixels = None

    def _group_size(self) -> int:
        """Images handed to the detector at once: single-scale bucketed batches group a
        window of :data:`GROUP_BATCHES` batches by bucket (fuller batches of mixed sizes)."""
        if self.settings.multiscale or not self.settings.bucket:
            return self.settings.batch_size
        return self.settings.batch_size * GROUP_BATCHES

    def _run_images(self, entries: tuple[ManifestEntry, ...]) -> list[_Item]:
        done: list[_Item] = []
        batch: list[_Item] = []
        group = self._group_size()
        for item in self._decoded(entries):
            done.append(item)
            if item.error is None:
                batch.append(item)
            if len(batch) >= group:
                self._detect_batch(batch)
                batch = []
        if batch:
            self._detect_batch(batch)
        return done

    def process(self, shard: Shard) -> ShardResult:
        """Detect faces in every image of ``shard`` and write its part pair.

        Args:
            shard: the shard to run (entries in manifest order).

        Returns:
            Counts and timings of the shard (the rows are in the files, not here).
        """
        start = time.perf_counter()
        items = self._run_images(load_embedded(shard.entries))  # manifest bytes read here
        detections, images = _tables(items)
        write_start = time.perf_counter()
        self.writer.write(shard.index, shard.digest, detections, images)
        end = time.perf_counter()
        return ShardResult(index=shard.index, num_images=len(items),
                           num_errors=sum(i.error is not None for i in items),
                           num_detections=detections.num_rows, seconds=end - start,
                           write_seconds=end - write_start, pid=os.getpid(),
                           node=self.where()["node"])

    def close(self) -> None:
        """Stop the decode threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def open_worker_detector(settings: WorkerSettings, device: str) -> Any:
    """The detector a worker runs: opened on ``device`` and, for the DSFD family, configured
    for inference as ``settings`` say (also used by :class:`pipeline.ray_data.DetectBatch`, so
    both find the same boxes)."""
    detector = open_detector(settings.model, device, settings.batch_size, dtype=settings.dtype)
    configure = getattr(detector, "configure_inference", None)
    if configure is not None:  # the DSFD family
        configure(optimize=settings.optimize, bucket=bool(settings.bucket),
                  memory_budget=_memory_budget(settings.memory_budget, device))
    return detector


def _memory_budget(budget: float | None, device: str) -> float:
    """The settings' budget, or half of the free GPU memory / a quarter of the available RAM."""
    if budget is not None:
        return budget
    if device == "cuda":
        import torch

        return torch.cuda.mem_get_info()[0] / 2
    import psutil

    return psutil.virtual_memory().available / 4


def describe_model(spec: str, dtype: str = "float32") -> dict[str, Any]:
    """Open ``spec`` on the CPU in this process and return its identity, as a run records it.

    ``dtype`` is checked and recorded (a DSFD identity carries it); ``tf32`` and ``float16``
    are recorded as asked even though the CPU check runs them as float32 / CPU autocast.

    The driver calls this before any actor starts, so bad weights (missing, truncated, another
    architecture, a pickle that would run code) fail once, in one line, without Ray.

    Returns:
        The detector's identity (for DSFD: ``{"name", "checksum", "source", "config",
        "postprocess", "dtype"}``), JSON-able.

    Raises:
        ValueError, FileNotFoundError: the spec names no loadable model (one line).
    """
    return dict(open_detector(spec, "cpu", 1, dtype=dtype).identity)


def _tables(items: list[_Item]) -> tuple[pa.Table, pa.Table]:
    """The shard's detections and images tables (explicit schemas, manifest order).

    Ids and paths are stored as UTF-8: a non-UTF-8 file name keeps ``\\xNN`` escapes (a
    literal backslash becomes ``\\\\``), so ``unescape_path(path)`` reopens the very file.
    """
    ok = [i for i in items if i.error is None]
    boxes = (np.concatenate([i.boxes for i in ok], axis=0) if ok
             else np.zeros((0, 5), np.float32)).astype(np.float32, copy=False)
    det_ids = [utf8_id(i.entry.image_id) for i in ok for _ in range(len(i.boxes))]
    detections = pa.table(
        {"image_id": pa.array(det_ids, pa.string()),
         **{name: pa.array(boxes[:, col], pa.float32())
            for col, name in enumerate(("x1", "y1", "x2", "y2", "score"))}},
        schema=DETECTIONS_SCHEMA)
    widths = [i.width if i.width is not None else i.entry.width for i in items]
    heights = [i.height if i.height is not None else i.entry.height for i in items]
    images = pa.table(
        {"image_id": pa.array([utf8_id(i.entry.image_id) for i in items], pa.string()),
         "path": pa.array([escape_path(i.entry.path) for i in items], pa.string()),
         "width": pa.array(widths, pa.int32()), "height": pa.array(heights, pa.int32()),
         "status": pa.array(["ok" if i.error is None else "error" for i in items], pa.string()),
         "error": pa.array([None if i.error is None else utf8_id(i.error) for i in items],
                           pa.string()),
         "num_detections": pa.array([len(i.boxes) if i.error is None else 0 for i in items],
                                    pa.int32()),
         "seconds": pa.array([i.seconds for i in items], pa.float64())},
        schema=IMAGES_SCHEMA)
    return detections, images
