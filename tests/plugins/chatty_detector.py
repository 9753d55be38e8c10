"""A detector that talks (tests only): each batch prints a line on stdout and one on stderr
in the Ray actor, as a library's warnings would; with ``DSFD_TEST_DETECTOR_EXITS=1`` in the
environment (the actors inherit it) an actor's process dies as it loads the detector (as a
crash in native code would end it); the driver, which loads it once too, lives. With
``DSFD_TEST_DETECTOR_DIFFERS=1`` an actor says it loads other weights than the driver's. With
``DSFD_TEST_DETECTOR_ALLOCATES_MB=N`` each batch takes N MB more memory, 64 MB at a time (as a
batch of huge images would), so that a memory limit can stop it."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from tests.plugins.fake_detector import FixedBoxDetector

STDOUT_LINE = "chatty detector: a batch on stdout"
STDERR_LINE = "chatty detector: a warning on stderr"
LOADING_OTHER = "chatty detector: loading other weights"
_HELD: list[np.ndarray] = []


class ChattyDetector(FixedBoxDetector):
    def detect_prepared(self, batch: Sequence[Any],
                        sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        print(STDOUT_LINE, flush=True)
        print(STDERR_LINE, file=sys.stderr, flush=True)
        for _ in range(int(os.environ.get("DSFD_TEST_DETECTOR_ALLOCATES_MB", "0")) // 64):
            _HELD.append(np.ones(64 * 1024 * 1024, np.uint8))  # touched: resident
            time.sleep(0.02)
        return super().detect_prepared(batch, sizes)


def make(device: str = "cpu") -> ChattyDetector:
    in_ray_worker = "default_worker" in os.path.basename(sys.argv[0])
    if os.environ.get("DSFD_TEST_DETECTOR_EXITS") == "1" and in_ray_worker:
        os._exit(3)
    if os.environ.get("DSFD_TEST_DETECTOR_DIFFERS") == "1" and in_ray_worker:
        print(LOADING_OTHER, flush=True)
        from tests.plugins import fake_detector

        return ChattyDetector(device, {"name": "chatty", "version": "1",
                                       "file": fake_detector.__file__})
    return ChattyDetector(device, {"name": "chatty", "version": "1"})
