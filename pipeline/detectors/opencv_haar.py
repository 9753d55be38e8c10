"""``opencv-haar``: OpenCV's frontal-face Haar cascade (Viola-Jones) as a
:class:`~pipeline.detectors.base.FaceDetector`, a classical baseline to benchmark against.

The cascade file ``haarcascade_frontalface_default.xml`` ships inside
``opencv-python-headless`` 4.x (``cv2.data.haarcascades``); nothing is downloaded.

Scores. ``detectMultiScale3(..., outputRejectLevels=True)`` keeps the windows that pass every
stage and, per grouped box, the largest sum of the last stage's weak classifiers (its "level
weight", unbounded, larger is more face-like). The score is its logistic,
``score = 1 / (1 + exp(-level_weight))``: monotonic, in ``(0, 1)``, so ranking by score is
ranking by level weight and a precision-recall curve exists. It is not a calibrated
probability.

Multi-scale. The cascade scans an image pyramid by construction (``scale_factor``), so
:meth:`OpenCvHaarDetector.detect_multiscale` is the single-scale detection.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pipeline.detectors.base import register_detector

SPEC = "opencv-haar"
CASCADE_FILE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class HaarSettings:
    """Result-deciding settings of the cascade (recorded as the run's ``postprocess``).

    Attributes:
        scale_factor: ratio between pyramid levels (> 1).
        min_neighbors: a grouped box needs more than this many raw windows.
        min_size: smallest face side scanned, in pixels of the prepared image.
        equalize_hist: equalise the grey histogram first (OpenCV's own face example does).
    """

    scale_factor: float = 1.1
    min_neighbors: int = 3
    min_size: int = 20
    equalize_hist: bool = True


class OpenCvHaarDetector:
    """OpenCV's frontal-face Haar cascade; runs on the CPU whatever ``device`` asks.

    Args:
        settings: the cascade's settings.
        cascade_path: the cascade XML (default: the frontal-face cascade of ``cv2.data``).

    Raises:
        ValueError: this OpenCV has no ``CascadeClassifier`` or the cascade cannot be read.
    """

    def __init__(self, settings: HaarSettings = HaarSettings(),
                 cascade_path: str | None = None) -> None:
        import cv2

        if not hasattr(cv2, "CascadeClassifier"):
            raise ValueError(
                f"model {SPEC!r}: OpenCV {cv2.__version__} has no CascadeClassifier (OpenCV 5 "
                "moved Haar cascades out of the main package); install "
                "'opencv-python-headless>=4.6,<5'")
        cascades = importlib.import_module("cv2.data").haarcascades  # cv2's stubs lack .data
        path = cascade_path or os.path.join(cascades, CASCADE_FILE)
        if not os.path.isfile(path):
            raise ValueError(f"model {SPEC!r}: cascade file not found: {path}")
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise ValueError(f"model {SPEC!r}: OpenCV cannot read the cascade file {path}")
        self.settings = settings
        self.device = "cpu"
        with open(path, "rb") as f:
            checksum = hashlib.sha256(f.read()).hexdigest()
        # the OpenCV version decides results too: it goes into the postprocess config, which
        # a resumed run compares with the recorded one
        self.identity: dict[str, Any] = {
            "name": SPEC, "checksum": checksum, "version": cv2.__version__,
            "source": f"cv2.data.haarcascades/{os.path.basename(path)}",
            "score": "logistic(level_weight)",
            "postprocess": {**asdict(settings), "opencv_version": cv2.__version__}}

    def prepare(self, pixels: np.ndarray, *, max_size: int | None) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB -> ``(h, w)`` uint8 grey, the longer side at most
        ``max_size`` (area-averaged downscale; never upscaled)."""
        import cv2

        grey = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)  # [H, W]
        height, width = grey.shape
        if max_size is not None and max(height, width) > max_size:
            scale = max_size / max(height, width)
            size = (max(1, round(width * scale)), max(1, round(height * scale)))  # (w, h)
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        if self.settings.equalize_hist:
            grey = cv2.equalizeHist(grey)
        return grey

    def detect_prepared(self, batch: Sequence[Any],
                        sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """Per prepared image, float32 ``(K, 5)`` ``x1 y1 x2 y2 score`` in pixels of the
        original ``(H, W)`` of ``sizes``, clipped to the image, score descending."""
        return [self._detect_one(grey, size) for grey, size in zip(batch, sizes, strict=True)]

    def detect_multiscale(self, pixels: np.ndarray, *, max_size: int | None) -> np.ndarray:
        """The cascade is multi-scale by construction: the same as single scale."""
        height, width = pixels.shape[:2]
        return self._detect_one(self.prepare(pixels, max_size=max_size), (height, width))

    def _detect_one(self, grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        height, width = size
        min_side = max(1, self.settings.min_size)
        if min(grey.shape) < min_side:
            return np.zeros((0, 5), np.float32)
        found, _, level_weights = self.cascade.detectMultiScale3(
            grey, scaleFactor=self.settings.scale_factor,
            minNeighbors=self.settings.min_neighbors, minSize=(min_side, min_side),
            outputRejectLevels=True)
        if len(found) == 0:
            return np.zeros((0, 5), np.float32)
        boxes_xywh = np.asarray(found, np.float64).reshape(-1, 4)  # [K, 4]
        weights = np.asarray(level_weights, np.float64).reshape(-1)  # [K]
        scale_x, scale_y = width / grey.shape[1], height / grey.shape[0]
        out = np.empty((len(boxes_xywh), 5), np.float64)
        out[:, 0] = np.clip(boxes_xywh[:, 0] * scale_x, 0, width)
        out[:, 1] = np.clip(boxes_xywh[:, 1] * scale_y, 0, height)
        out[:, 2] = np.clip((boxes_xywh[:, 0] + boxes_xywh[:, 2]) * scale_x, 0, width)
        out[:, 3] = np.clip((boxes_xywh[:, 1] + boxes_xywh[:, 3]) * scale_y, 0, height)
        out[:, 4] = level_weight_score(weights)
        return out[np.argsort(-out[:, 4], kind="stable")].astype(np.float32)


def level_weight_score(level_weights: np.ndarray) -> np.ndarray:
    """The score of cascade level weights: ``1 / (1 + exp(-w))``, monotonic, in ``[0, 1]``."""
    weights = np.clip(np.asarray(level_weights, np.float64), -60.0, 60.0)  # no exp overflow
    return 1.0 / (1.0 + np.exp(-weights))


def _open(spec: str, device: str, batch_size: int) -> OpenCvHaarDetector:
    return OpenCvHaarDetector()


register_detector(SPEC, lambda spec: spec == SPEC, _open)
