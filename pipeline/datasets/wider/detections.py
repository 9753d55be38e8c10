"""WIDER FACE detection (submission) files: one text file per image."""

from __future__ import annotations

import numpy as np


def format_wider_detections(name: str, boxes_xyxy: np.ndarray, scores: np.ndarray) -> str:
    """One official detection file: ``NAME``, the count, then ``x y w h score`` lines.

    Rounding, as the DSFD release's ``write_to_txt`` does it, adapted to exclusive corners:
    ``x = floor(x1)``, ``y = floor(y1)``, ``w = ceil(x2 - x1)``, ``h = ceil(y2 - y1)`` and the
    score with 3 decimals. The release writes ``ceil(x2 - x1 + 1)`` because its x2 is the last
    pixel (inclusive); ours is one past it, so the ``+ 1`` is not added and a box keeps its
    width (up to the ceiling). Arithmetic is float64 on the float32 values.

    Args:
        name: the image name (line 1), without event or extension.
        boxes_xyxy: (n, 4) float ``x1 y1 x2 y2`` pixels, x2/y2 exclusive.
        scores: (n,) float.
    """
    xyxy = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(xyxy) != len(sc):
        raise ValueError(f"{name}: {len(xyxy)} boxes but {len(sc)} scores")
    if not (np.all(np.isfinite(xyxy)) and np.all(np.isfinite(sc))):
        raise ValueError(f"{name}: boxes and scores must be finite")
    xy = np.floor(xyxy[:, :2]).astype(np.int64)
    wh = np.ceil(xyxy[:, 2:] - xyxy[:, :2]).astype(np.int64)
    lines = [name, str(len(sc))]
    lines.extend(
        f"{x} {y} {w} {h} {s:.3f}"
        for (x, y), (w, h), s in zip(xy.tolist(), wh.tolist(), sc.tolist(), strict=True)
    )
    return "\n".join(lines) + "\n"
