"""Per-attribute recall on WIDER FACE hard faces (no official tool gives this; numpy only).

Operating point: scanning the thresholds from 0.999 down, the last threshold before the
overall precision of the setting first drops below ``target_precision`` (NaN rows, where
nothing is proposed yet, are skipped). If precision never drops below the target the
operating point is threshold 0 (every detection); if it starts below the target there is no
operating point and every recall is 0. At that threshold a face counts as found when the
evaluator's greedy matching (of the chosen flavour) has found it among the detections kept,
exactly as the PR table counts it, so the recalls per attribute value add up to the overall
recall of the setting.

Groups: each annotation attribute (blur, expression, illumination, occlusion, pose; invalid is
always 0 on kept faces) by value, and ``scale`` by face height ``h`` of the ground-truth box:
small ``h <= 32``, medium ``32 < h <= 128``, large ``h > 128`` pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.datasets.wider import WiderGroundTruth
from reports.wider.result import WiderResult
from reports.wider.state import THRESH_NUM, WiderEvalState, thresholds

ATTRIBUTE_LABELS: dict[str, dict[int, str]] = {
    "blur": {0: "clear", 1: "normal", 2: "heavy"},
    "expression": {0: "typical", 1: "exaggerate"},
    "illumination": {0: "normal", 1: "extreme"},
    "occlusion": {0: "none", 1: "partial", 2: "heavy"},
    "pose": {0: "typical", 1: "atypical"},
}
SCALE_EDGES: tuple[tuple[str, float], ...] = (("small", 32), ("medium", 128), ("large", np.inf))


def operating_index(precision: np.ndarray, target_precision: float = 0.9) -> int:
    """Threshold index (0 = 0.999, ..., THRESH_NUM - 1 = 0) of the operating point, or -1.

    Args:
        precision: (THRESH_NUM,) float64 PR-curve precision (NaN = no proposal).
        target_precision: the precision floor.
    """
    below = np.flatnonzero(~np.isnan(precision) & (precision < target_precision))
    if len(below) == 0:
        return len(precision) - 1
    return int(below[0]) - 1


def check_target_precision(target_precision: float) -> None:
    """Raise ValueError unless ``0 < target_precision <= 1``."""
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target_precision must be in (0, 1], got {target_precision}")


def _face_table(state: WiderEvalState, gt: WiderGroundTruth, setting: str):
    found = state.face_found_at.get(setting)
    if found is None:
        raise ValueError(f"the state holds no per-face results for {setting!r} (track_faces)")
    found_at = np.concatenate(found) if found else np.zeros(0, np.int16)
    attrs: dict[str, list[np.ndarray]] = {a: [] for a in ATTRIBUTE_LABELS}
    heights: list[np.ndarray] = []
    for image_id, keep in state.face_ids[setting]:
        img = gt[image_id]
        for a in ATTRIBUTE_LABELS:
            attrs[a].append(img.attributes[a][keep])
        heights.append(img.boxes_xywh[keep, 3])
    cat = {a: np.concatenate(v) if v else np.zeros(0, np.uint8) for a, v in attrs.items()}
    h = np.concatenate(heights) if heights else np.zeros(0, np.int32)
    return found_at, cat, h


def _group(found: np.ndarray) -> dict[str, Any]:
    n = int(found.size)
    k = int(found.sum())
    return {"num_faces": n, "num_found": k, "recall": (k / n) if n else None}


def attribute_breakdown(
    state: WiderEvalState,
    result: WiderResult,
    gt: WiderGroundTruth,
    setting: str = "hard",
    target_precision: float = 0.9,
) -> dict[str, Any]:
    """Recall per attribute value at the operating point (see the module docstring).

    Args:
        state: merged evaluation state built with ``track_faces=True``.
        result: its computed result (for the PR curve of ``setting``).
        gt: the ground truth evaluated.
        setting: which setting's faces (default ``hard``).
        target_precision: precision floor defining the operating point.

    Returns:
        A JSON-able dict: operating threshold, precision and recall, and
        ``groups[attribute][label] = {"num_faces", "num_found", "recall"}``.
    """
    check_target_precision(target_precision)
    precision = result.pr[setting]["precision"]
    t = operating_index(precision, target_precision)
    found_at, attrs, heights = _face_table(state, gt, setting)
    found = found_at <= t if t >= 0 else np.zeros(found_at.shape, dtype=bool)
    groups: dict[str, dict[str, Any]] = {}
    for name, labels in ATTRIBUTE_LABELS.items():
        groups[name] = {lab: _group(found[attrs[name] == v]) for v, lab in labels.items()}
    lower = -np.inf
    groups["scale"] = {}
    for label, upper in SCALE_EDGES:
        sel = (heights > lower) & (heights <= upper)
        groups["scale"][label] = _group(found[sel])
        lower = upper
    return {
        "setting": setting,
        "flavour": result.flavour,
        "target_precision": target_precision,
        "threshold": float(thresholds(THRESH_NUM)[t]) if t >= 0 else None,
        "precision": float(precision[t]) if t >= 0 and not np.isnan(precision[t]) else None,
        "recall": float(result.pr[setting]["recall"][t]) if t >= 0 else 0.0,
        "groups": groups,
    }
