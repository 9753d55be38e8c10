"""WIDER FACE detection (submission) files: one text file per image."""

from __future__ import annotations

import numpy as np


def format_wider_detections(name: str, boxes_xyxy: np.ndarray, scores: np.ndarray, *,
                            inclusive: bool = False) -> str:
    """One official detection file: ``NAME``, the count, then ``x y w h score`` lines.

    Rounding as the DSFD release's ``write_to_txt``: ``x = floor(x1)``, ``y = floor(y1)``,
    the score with 3 decimals, and ``w = ceil(x2 - x1)``, ``h = ceil(y2 - y1)`` for exclusive
    corners (models trained here, with ``x2 = x + w``), or ``w = ceil(x2 - x1 + 1)``,
    ``h = ceil(y2 - y1 + 1)`` with ``inclusive`` (the official convention: the release learnt
    ``x2 = x + w - 1``, the last pixel, so its submission adds the pixel back). Arithmetic is
    float64 on the float32 values.

    Args:
        name: the image name (line 1), without event or extension.
        boxes_xyxy: (n, 4) float ``x1 y1 x2 y2`` pixels.
        scores: (n,) float.
        inclusive: the boxes' x2/y2 are the last pixel (add 1 to the width and height).
    """
    xyxy = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    sc = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(xyxy) != len(sc):
        raise ValueError(f"{name}: {len(xyxy)} boxes but {len(sc)} scores")
    if not (np.all(np.isfinite(xyxy)) and np.all(np.isfinite(sc))):
        raise ValueError(f"{name}: boxes and scores must be finite")
    xy = np.floor(xyxy[:, :2]).astype(np.int64)
    wh = np.ceil(xyxy[:, 2:] - xyxy[:, :2] + (1.0 if inclusive else 0.0)).astype(np.int64)
    lines = [name, str(len(sc))]
    lines.extend(
        f"{x} {y} {w} {h} {s:.3f}"
        for (x, y), (w, h), s in zip(xy.tolist(), wh.tolist(), sc.tolist(), strict=True)
    )
    return "\n".join(lines) + "\n"
