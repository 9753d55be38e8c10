"""Validation during training: the current model over a validation split, evaluated as WIDER
FACE AP (matlab flavour), and ``best.pt``, the checkpoint of the best validation step so far.

The detection is ``dsfd run``'s single-scale path (:func:`pipeline.images.decode_image`, then
:meth:`dsfd.Detector.prepare` and :meth:`~dsfd.Detector.detect_prepared`, no ``max_size``), run
in memory by rank 0 on its own device; the evaluation is :func:`reports.wider.evaluate.
evaluate_predictions` on the images validated (``limit`` restricts the ground truth to them).
The other workers wait meanwhile at their next gradient all-reduce.

``best.pt`` is written through a temporary name next to ``last.pt`` and described by
``best.json`` (``step``, ``metric``, ``value``), which a resumed run reads to keep the best so
far.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

BEST = "best.pt"
BEST_INFO = "best.json"
SELECT_BY = ("easy", "medium", "hard")


def validation_metrics(model: Any, spec: str, *, limit: int | None = None,
                       device: Any = None) -> dict[str, float]:
    """WIDER AP of ``model`` (matlab flavour, single scale) on the images of ``spec``.

    Args:
        model: a DSFD model (not DDP-wrapped); it is left in eval mode.
        spec: a dataset spec with WIDER ground truth (``wider:ROOT:val``,
            ``synthetic:DIR:val``).
        limit: validate on the first ``limit`` images only (the ground truth is cut to them).
        device: where to run; default the model's device.

    Returns:
        ``val_easy``, ``val_medium``, ``val_hard`` (AP) and ``val_images``.

    Raises:
        ValueError: the spec has no WIDER ground truth (naming it).
    """
    import torch

    import dsfd
    from pipeline.datasets import ground_truth, limit_dataset, open_dataset
    from pipeline.datasets.wider import WiderGroundTruth
    from pipeline.images import ImageReadError, decode_image
    from reports.wider.evaluate import evaluate_predictions
    from reports.wider.predictions import WiderPredictions, group_detection_columns

    gt = ground_truth(spec)
    if not isinstance(gt, WiderGroundTruth):
        raise ValueError(f"--val-dataset {spec}: validation needs WIDER-style ground truth "
                         f"(wider: or synthetic: specs), got {type(gt).__name__}")
    source = limit_dataset(open_dataset(spec), limit)
    detector = dsfd.Detector(model, device=device)
    ids: list[str] = []
    rows: list[np.ndarray] = []
    with torch.no_grad():
        for entry in source.iter_manifest():
            try:
                image = decode_image(entry.path)
            except ImageReadError:
                continue  # as `dsfd run`: an unreadable image has no detections
            prepared = detector.prepare(image.pixels, max_size=None)
            found = detector.detect_prepared([prepared], [(image.height, image.width)])[0]
            ids.append(entry.image_id)
            rows.append(np.asarray(found, dtype=np.float32).reshape(-1, 5))  # (K, 5)
    seen = set(ids)
    subset = WiderGroundTruth(images=tuple(i for i in gt if i.image_id in seen),
                              events=gt.events, settings=gt.settings, source=gt.source)
    values = np.concatenate(rows) if rows else np.zeros((0, 5), np.float32)  # (N, 5)
    image_ids = np.asarray([i for i, r in zip(ids, rows, strict=True) for _ in range(len(r))],
                           dtype=object)
    pred = WiderPredictions(flavour="matlab", source=spec)
    for image_id, det in group_detection_columns(image_ids, values[:, :4], values[:, 4]):
        if image_id in subset:
            pred.images[image_id] = det
    result, _ = evaluate_predictions(pred, subset)
    return {**{f"val_{s}": float(result.ap[s]) for s in SELECT_BY},
            "val_images": float(len(subset))}


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
