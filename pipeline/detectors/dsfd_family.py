"""The DSFD family behind :class:`~pipeline.detectors.base.FaceDetector`: model names (random
weights, seeded), ``shipped``, checkpoints of ours, ``release-r152:PATH``. The maths stays in
:class:`dsfd.Detector`; this adapter adds the identity a run records."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from pipeline.detectors.base import register_detector


class DsfdFaceDetector:
    """A :class:`dsfd.Detector` with its provenance.

    Args:
        spec: the model spec (``dsfd.load_model``'s forms).
        device: ``"cpu"`` or ``"cuda"``.
        batch_size: most same-size images per forward.
        dtype: forward precision (see :class:`dsfd.Detector`); part of the identity, so a run
            resumed with another dtype is refused.
    """

    def __init__(self, spec: str, device: str = "cpu", batch_size: int = 1, *,
                 dtype: str = "float32") -> None:
        import torch

        import dsfd

        torch.manual_seed(0)  # a random-init model (a bare name) is then the same everywhere
        model, info = dsfd.load_model(local_model_spec(spec), map_location=device)
        self.detector = dsfd.Detector(model, device=device, batch_size=batch_size, dtype=dtype)
        self._model = model
        self.device = device
        checksum = info.checksum or f"{info.source}:{_state_checksum(model)}"
        self.identity: dict[str, Any] = {
            "name": info.name, "checksum": checksum, "source": info.source,
            "config": info.config.to_dict(), "postprocess": asdict(self.detector.config),
            "dtype": dtype}

    def configure_inference(self, *, optimize: bool, bucket: bool,
                            memory_budget: float | None) -> None:
        """Inference settings of :class:`dsfd.Detector` (``optimize``, ``bucket``,
        ``memory_budget``) for the pipeline's workers; detections move by float rounding."""
        import dsfd

        d = self.detector
        self.detector = dsfd.Detector(self._model, device=d.device, batch_size=d.batch_size,
                                      dtype=d.dtype, optimize=optimize, bucket=bucket,
                                      memory_budget=memory_budget)

    def prepare(self, pixels: np.ndarray, *, max_size: int | None) -> Any:
        return self.detector.prepare(pixels, max_size=max_size)

    def detect_prepared(self, batch: Sequence[Any],
                        sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        return self.detector.detect_prepared(batch, sizes)

    def detect_multiscale(self, pixels: np.ndarray, *, max_size: int | None) -> np.ndarray:
        return self.detector.detect_multiscale(pixels, max_size=max_size)

    def detect_multiscale_batch(self, batch: Sequence[np.ndarray], *,
                                max_size: int | None) -> list[np.ndarray]:
        """The multi-scale test of several images, passes of equal size in one forward."""
        return self.detector.detect_multiscale_batch(batch, max_size=max_size)

    def detect(self, images: Sequence[np.ndarray], *,
               max_size: int | None = None) -> list[np.ndarray]:
        """Single-scale detection of decoded images (``dsfd.Detector.detect``)."""
        return self.detector.detect(images, max_size=max_size)


def local_model_spec(spec: str) -> str:
    """``spec`` with a checkpoint URI (``s3://...``, ``gs://...``, ``file://...``, also after
    ``release-r152:``) replaced by a local copy fetched into the cache
    (:func:`pipeline.storage.fetch_to_cache`); other specs unchanged. ``dsfd`` loads files
    only, so the object store is read here."""
    from pipeline.storage import fetch_to_cache, scheme_of

    prefix = "release-r152:" if spec.startswith("release-r152:") else ""
    body = spec[len(prefix):]
    if scheme_of(body) is None:
        return spec
    return f"{prefix}{fetch_to_cache(body)}"


def _state_checksum(model: Any) -> str:
    """sha256 of a model's parameters and buffers (for weights that have no file)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


register_detector("dsfd", lambda spec: True, DsfdFaceDetector, takes_dtype=True)
