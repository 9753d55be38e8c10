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
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.datasets.folder import escape_path, utf8_id
from pipeline.datasets.manifest import ManifestEntry
from pipeline.images import DEFAULT_MAX_PIXELS, DecodedImage, ImageReadError, decode_image
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
        batch_size: images per forward pass in single-scale mode.
        use_gpu: run on the GPU Ray assigned to the worker (CUDA must be available).
    """

    model: str
    multiscale: bool = False
    max_size: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    num_threads: int = 1
    decode_threads: int = 2
    batch_size: int = 1
    use_gpu: bool = False


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

    Single-scale: ``tensor`` is the prepared network input (already downscaled when
    ``max_size`` applies). Multi-scale: ``pixels`` is the ``(h, w, 3)`` uint8 image the test
    runs on (downscaled the same way). ``image`` keeps the stored size.
    """

    entry: ManifestEntry
    image: DecodedImage | None = None
    tensor: Any = None
    pixels: np.ndarray | None = None
    error: str | None = None
    seconds: float = 0.0
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))


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
        self.detector, self.info, self.checksum = _load_detector(
            settings.model, device, settings.batch_size)
        self.device = device
        self._pool = ThreadPoolExecutor(max(1, settings.decode_threads),
                                        thread_name_prefix="decode")

    def model_info(self) -> dict[str, Any]:
        """Name, checksum, source and config of the loaded model (JSON-able)."""
        return {"name": self.info.name, "checksum": self.checksum, "source": self.info.source,
                "config": self.info.config.to_dict()}

    def postprocess_config(self) -> dict[str, Any]:
        """The detector's post-processing settings (part of the run's config)."""
        return asdict(self.detector.config)

    def where(self) -> dict[str, Any]:
        """Process id, host and Ray node of this worker (for tests and logs)."""
        node = ""
        try:
            import ray

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
            item.image = decode_image(entry.path, max_pixels=self.settings.max_pixels)
            height, width = item.image.pixels.shape[:2]
            scale = 1.0
            if self.settings.max_size is not None and max(height, width) > self.settings.max_size:
                scale = self.settings.max_size / max(height, width)
            if not self.settings.multiscale:
                item.tensor = self.detector.prepare(item.image.pixels, scale=scale)
            else:
                item.pixels = _downscale(item.image.pixels, scale)
        except ImageReadError as exc:
            item.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - any per-image failure becomes an error row
            item.error = f"cannot prepare image: {type(exc).__name__}: {exc}"
            item.image = None
        item.seconds = time.perf_counter() - start
        return item

    def _decoded(self, entries: tuple[ManifestEntry, ...]) -> Iterator[_Item]:
        """Items in shard order, decoded by the pool with a bounded look-ahead."""
        window = 2 * max(1, self.settings.decode_threads) + self.settings.batch_size
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

    @staticmethod
    def _to_original(boxes: np.ndarray, item: _Item) -> np.ndarray:
        """Map multi-scale ``(N, 5)`` boxes from the downscaled input to stored pixels."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
        if item.pixels is None or item.image is None or item.pixels is item.image.pixels:
            return boxes
        factor = np.array([item.image.width / item.pixels.shape[1],
                           item.image.height / item.pixels.shape[0]] * 2 + [1.0], np.float32)
        return boxes * factor  # the same mapping Detector.detect_prepared applies

    def _detect_batch(self, batch: list[_Item]) -> None:
        """Fill ``boxes`` of each item of ``batch``; a failing image becomes an error."""
        start = time.perf_counter()
        try:
            if self.settings.multiscale:
                results = [self._to_original(self.detector.detect_multiscale(i.pixels), i)
                           for i in batch]
            else:  # boxes come back in stored pixels: sizes are the stored (H, W)
                sizes = [(i.image.height, i.image.width) for i in batch]  # type: ignore[union-attr]
                results = self.detector.detect_prepared([i.tensor for i in batch], sizes)
        except Exception as exc:  # noqa: BLE001
            if len(batch) > 1:  # find the culprit: redo one by one
                for item in batch:
                    self._detect_batch([item])
                return
            batch[0].error = f"detector failed: {type(exc).__name__}: {exc}"
            batch[0].seconds += time.perf_counter() - start
            return
        share = (time.perf_counter() - start) / len(batch)
        for item, boxes in zip(batch, results, strict=True):
            item.boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
            item.seconds += share
            item.tensor = item.pixels = None

    def _run_images(self, entries: tuple[ManifestEntry, ...]) -> list[_Item]:
        done: list[_Item] = []
        batch: list[_Item] = []
        for item in self._decoded(entries):
            done.append(item)
            if item.error is None:
                batch.append(item)
            if len(batch) >= self.settings.batch_size:
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
        items = self._run_images(shard.entries)
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


def _load_detector(spec: str, device: str, batch_size: int) -> tuple[Any, Any, str]:
    """``(Detector, ModelInfo, checksum)`` of a model spec; a bare model name gets the same
    seeded random weights everywhere, and its checksum is that of its state."""
    import torch

    import dsfd

    torch.manual_seed(0)
    model, info = dsfd.load_model(spec, map_location=device)
    detector = dsfd.Detector(model, device=device, batch_size=batch_size)
    return detector, info, info.checksum or f"{info.source}:{_state_checksum(model)}"


def describe_model(spec: str) -> dict[str, Any]:
    """Load ``spec`` on the CPU in this process and describe it, as a run records it.

    The driver calls this before any actor starts, so bad weights (missing, truncated, another
    architecture, a pickle that would run code) fail once, in one line, without Ray.

    Returns:
        ``{"name", "checksum", "source", "config", "postprocess"}`` (JSON-able).

    Raises:
        ValueError, FileNotFoundError: the spec names no loadable model (one line).
    """
    detector, info, checksum = _load_detector(spec, "cpu", 1)
    return {"name": info.name, "checksum": checksum, "source": info.source,
            "config": info.config.to_dict(), "postprocess": asdict(detector.config)}


def _downscale(pixels: np.ndarray, scale: float) -> np.ndarray:
    """``(H, W, 3)`` uint8 resized by ``scale`` as the Detector resizes (cv2 bilinear)."""
    if scale == 1.0:
        return pixels
    import torch

    from dsfd.preprocess import image_to_tensor, resize_uint8

    small = resize_uint8(image_to_tensor(pixels), scale)  # [3, h, w] float 0..255
    return small.permute(1, 2, 0).to(torch.uint8).contiguous().numpy()  # [h, w, 3]


def _state_checksum(model: Any) -> str:
    """sha256 of a model's parameters and buffers (for weights that have no file)."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


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
    widths = [i.image.width if i.image is not None else i.entry.width for i in items]
    heights = [i.image.height if i.image is not None else i.entry.height for i in items]
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
