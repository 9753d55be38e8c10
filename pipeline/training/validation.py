"""Validation during training: the current model over a validation split, scored by an
evaluator the caller hands in, and ``best.pt``, the checkpoint of the best validation step so
far.

The detection is ``dsfd run``'s single-scale path (:func:`pipeline.images.decode_image`, then
:meth:`dsfd.Detector.prepare` and :meth:`~dsfd.Detector.detect_prepared`, no ``max_size``), run
in memory by rank 0 on its own device; the other workers wait meanwhile at their next gradient
all-reduce. The scoring is an :data:`Evaluator` (WIDER FACE AP, FDDB TPR, ...): the command
builds it from the evaluators of ``reports/`` and it travels with the training function to the
Ray Train workers, so this package never imports ``reports``.

``best.pt`` is written through a temporary name next to ``last.pt`` and described by
``best.json`` (``step``, ``metric``, ``value``), which a resumed run reads to keep the best so
far.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BEST = "best.pt"
BEST_INFO = "best.json"


@dataclass(frozen=True)
class ValidationDetections:
    """What the model found on the validation images, in manifest order.

    Attributes:
        spec: the validation dataset spec.
        limit: only the first ``limit`` images were run (None: all).
        image_ids: the images detected on (unreadable images are left out, as ``dsfd run``
            leaves them without detections).
        detections: per image, float32 (K, 5) ``x1 y1 x2 y2 score`` in pixels of the original
            image (x2/y2 exclusive, as a run directory stores them).
        sizes: per image, ``(width, height)`` in pixels.
    """

    spec: str
    limit: int | None
    image_ids: list[str] = field(default_factory=list)
    detections: list[np.ndarray] = field(default_factory=list, repr=False)
    sizes: list[tuple[int, int]] = field(default_factory=list)


Evaluator = Callable[[ValidationDetections], dict[str, float]]
"""``evaluator(found) -> {"val_NAME": value, ...}``: the metrics of one validation (higher is
better for each), including ``val_images`` (the images scored). It must pickle: it is sent to
the Ray Train workers with the training function."""


def detect_validation_images(model: Any, spec: str, *, limit: int | None = None,
                             device: Any = None) -> ValidationDetections:
    """Run ``model`` over the images of ``spec`` (``dsfd run``'s single-scale path).

    Args:
        model: a DSFD model (not DDP-wrapped); it is left in eval mode.
        spec: a dataset spec (``wider:ROOT:val``, ``synthetic:DIR:val``, ``fddb:ROOT``, ...).
        limit: detect on the first ``limit`` images only.
        device: where to run; default the model's device.
    """
    import torch

    import dsfd
    from pipeline.datasets import limit_dataset, open_dataset
    from pipeline.images import ImageReadError, decode_image

    source = limit_dataset(open_dataset(spec), limit)
    detector = dsfd.Detector(model, device=device)
    found = ValidationDetections(spec=spec, limit=limit)
    with torch.no_grad():
        for entry in source.iter_manifest():
            try:
                image = decode_image(entry.path)
            except ImageReadError:
                continue  # as `dsfd run`: an unreadable image has no detections
            prepared = detector.prepare(image.pixels, max_size=None)
            boxes = detector.detect_prepared([prepared], [(image.height, image.width)])[0]
            found.image_ids.append(entry.image_id)
            found.detections.append(np.asarray(boxes, dtype=np.float32).reshape(-1, 5))
            found.sizes.append((image.width, image.height))
    return found


def validation_metrics(model: Any, spec: str, evaluator: Evaluator, *, limit: int | None = None,
                       device: Any = None) -> dict[str, float]:
    """The metrics ``evaluator`` gives ``model``'s detections on the images of ``spec``.

    Raises:
        ValueError: the evaluator returned no ``val_`` metric, or a non-number.
    """
    metrics = evaluator(detect_validation_images(model, spec, limit=limit, device=device))
    if not any(k.startswith("val_") and k != "val_images" for k in metrics):
        raise ValueError(f"validation evaluator {evaluator!r} returned no val_ metric")
    return {k: float(v) for k, v in metrics.items()}


def is_validation_entry(entry: dict[str, Any]) -> bool:
    """Whether a ``metrics.jsonl`` entry is a validation line (else a loss line)."""
    return "val_images" in entry


def read_best(out: Path) -> dict[str, Any] | None:
    """``best.json`` of ``out`` when it and ``best.pt`` exist, else None."""
    info = out / BEST_INFO
    if not info.is_file() or not (out / BEST).is_file():
        return None
    try:
        data = json.loads(info.read_text())
    except ValueError:
        return None
    return data if isinstance(data, dict) and "value" in data else None


def is_better(value: float, best: dict[str, Any] | None) -> bool:
    """Whether ``value`` beats the recorded best (ties keep the earlier step)."""
    if not np.isfinite(value):
        return False
    return best is None or value > float(best["value"])


def save_best(out: Path, step: int, model: Any, metric: str, value: float,
              extra: dict[str, Any]) -> dict[str, Any]:
    """Write ``best.pt`` (atomically) and ``best.json``; returns the new best record."""
    from dsfd.checkpoint import save_checkpoint

    tmp = out / f".{BEST}.tmp"
    save_checkpoint(tmp, model, {"step": step, **extra})
    os.replace(tmp, out / BEST)
    record = {"step": step, "metric": metric, "value": value}
    tmp_info = out / f".{BEST_INFO}.tmp"
    tmp_info.write_text(json.dumps(record) + "\n")
    os.replace(tmp_info, out / BEST_INFO)
    return record
