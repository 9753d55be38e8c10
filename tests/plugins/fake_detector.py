"""Tiny detectors for the ``py:MODULE:CALLABLE`` spec form (tests only).

``make`` returns a detector that finds one fixed box in every image; the other names are
the wrong things a user might point a spec at.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

FIXED_BOX = (1.0, 2.0, 11.0, 12.0, 0.9)  # x1 y1 x2 y2 score, pixels of the original image


class FixedBoxDetector:
    """Finds :data:`FIXED_BOX` in every image (clipped to it)."""

    def __init__(self, device: str = "cpu", identity: dict[str, Any] | None = None) -> None:
        self.device = device
        self.identity: dict[str, Any] = (identity if identity is not None
                                         else {"name": "fixed-box", "version": "1"})

    def prepare(self, pixels: np.ndarray, *, max_size: int | None) -> Any:
        return pixels.shape[:2]

    def detect_prepared(self, batch: Sequence[Any],
                        sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        return [self._boxes(size) for size in sizes]

    def detect_multiscale(self, pixels: np.ndarray, *, max_size: int | None) -> np.ndarray:
        return self._boxes(pixels.shape[:2])

    @staticmethod
    def _boxes(size: tuple[int, int]) -> np.ndarray:
        height, width = size
        box = np.array([FIXED_BOX], np.float32)  # [1, 5]
        box[:, [0, 2]] = box[:, [0, 2]].clip(0, width)
        box[:, [1, 3]] = box[:, [1, 3]].clip(0, height)
        return box


def make(device: str = "cpu") -> FixedBoxDetector:
    return FixedBoxDetector(device)


def make_without_arguments() -> FixedBoxDetector:
    return FixedBoxDetector()


def make_with_weights(device: str = "cpu") -> FixedBoxDetector:
    """Its identity names a file (this module), whose sha256 the run records."""
    return FixedBoxDetector(device, {"name": "fixed-box-weights", "file": __file__})


def make_wrong_type() -> object:
    return object()


def make_nameless() -> FixedBoxDetector:
    return FixedBoxDetector(identity={"version": "1"})


def make_failing() -> FixedBoxDetector:
    raise RuntimeError("weights missing\nsecond line")


NOT_CALLABLE = 42
