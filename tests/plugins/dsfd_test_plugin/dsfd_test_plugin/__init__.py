"""A test plugin: the ``dsfd.detectors`` entry point ``fake-face`` (``fake-face[:ARG]``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BOX = (3.0, 4.0, 13.0, 14.0, 0.8)  # x1 y1 x2 y2 score, pixels of the original image


class FakeFace:
    def __init__(self, arg: str | None, device: str) -> None:
        self.device = device
        self.identity: dict[str, Any] = {"name": "fake-face", "arg": arg}

    def prepare(self, pixels: np.ndarray, *, max_size: int | None) -> Any:
        return None

    def detect_prepared(self, batch: Sequence[Any],
                        sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        return [np.array([BOX], np.float32) for _ in sizes]

    def detect_multiscale(self, pixels: np.ndarray, *, max_size: int | None) -> np.ndarray:
        return np.array([BOX], np.float32)


def make(arg: str | None = None, *, device: str = "cpu") -> FakeFace:
    return FakeFace(arg, device)
