"""Rectangle -> ellipse conversion of detections for FDDB (``--ellipse identity|s3fd|FILE``).

FDDB numbers depend strongly on how rectangle detections meet the ellipse annotations:

- ``identity``: no conversion; rectangles are evaluated as rectangles (official ``-f 0``), as
  PyramidBox, RetinaFace and most open-source detectors do.
- ``s3fd``: the linear regressor of S3FD's official code (``Fit.mat``), standardised
  ``[x y w h]`` -> standardised ``[ra rb angle cx cy]``, then the angle is turned by pi/2
  (``angle - pi/2`` if ``angle >= 0`` else ``angle + pi/2``). Coefficients from
  ``../shared/specs/evaluation_protocols.md`` section B.7.
- ``FILE.json``: a regressor of the same form fitted by least squares on matched
  (detection, annotation) pairs, the "post-hoc ellipse regressor" the DSFD paper mentions (its
  coefficients were never published; fitting on the evaluation set itself is optimistic).

The angle target is regressed in the turned representation (near 0 for upright faces, where
raw FDDB angles sit near +-pi/2 and wrap), and turned back after prediction; the turn is its
own inverse up to the half-turn symmetry of an ellipse.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.datasets.fddb import FddbDetections, FddbImage
from reports.fddb.hungarian import fddb_hungarian
from reports.fddb.overlap import overlap_matrix

REGRESSOR_KIND = "fddb-ellipse-regressor"


def turn_angle(angle: np.ndarray) -> np.ndarray:
    """S3FD's angle turn: ``angle - pi/2`` where ``angle >= 0``, else ``angle + pi/2``."""
    angle = np.asarray(angle, dtype=np.float64)
    return np.where(angle >= 0, angle - math.pi / 2, angle + math.pi / 2)


@dataclass(frozen=True, eq=False)
class EllipseRegressor:
    """A linear map from standardised ``x y w h`` to standardised ``ra rb angle' cx cy``.

    ``ellipse = ((rect - mean_x) / std_x) @ weights * std_y + mean_y``, then the angle column
    is turned back with ``turn_angle``.

    Attributes:
        mean_x: float64 (4,) input means (pixels).
        std_x: float64 (4,) input standard deviations.
        mean_y: float64 (5,) output means (pixels; the angle in the turned representation).
        std_y: float64 (5,) output standard deviations.
        weights: float64 (4, 5), rows x, y, w, h (MATLAB orientation).
        name: a label for reports.
        num_pairs: number of pairs it was fitted on (0 when given).
    """

    mean_x: np.ndarray
    std_x: np.ndarray
    mean_y: np.ndarray
    std_y: np.ndarray
    weights: np.ndarray
    name: str = "fitted"
    num_pairs: int = 0

    def __post_init__(self) -> None:
        shapes = {"mean_x": (4,), "std_x": (4,), "mean_y": (5,), "std_y": (5,), "weights": (4, 5)}
        for key, shape in shapes.items():
            value = np.asarray(getattr(self, key), dtype=np.float64)
            if value.shape != shape or not np.all(np.isfinite(value)):
                raise ValueError(f"EllipseRegressor.{key} must be finite {shape}, got {value!r}")
            object.__setattr__(self, key, value)
        if np.any(self.std_x == 0) or np.any(self.std_y == 0):
            raise ValueError("EllipseRegressor standard deviations must be nonzero")

    def __call__(self, rects: np.ndarray) -> np.ndarray:
        """Map float (K, 4) ``x y w h`` rectangles to float64 (K, 5) ``ra rb angle cx cy``."""
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
        out = ((rects - self.mean_x) / self.std_x) @ self.weights * self.std_y + self.mean_y
        out[:, 2] = turn_angle(out[:, 2])
        return out

    def to_json(self) -> dict[str, object]:
        """JSON-able dict (``save``/``load`` round-trip exactly)."""
        return {
            "kind": REGRESSOR_KIND,
            "version": 1,
            "name": self.name,
            "num_pairs": self.num_pairs,
            "input": "x y w h (pixels, top-left corner and size)",
            "output": "ra rb angle cx cy (pixels, radians)",
            "mean_x": self.mean_x.tolist(),
            "std_x": self.std_x.tolist(),
            "mean_y": self.mean_y.tolist(),
            "std_y": self.std_y.tolist(),
            "weights": self.weights.tolist(),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the regressor as JSON to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> EllipseRegressor:
        """Read a regressor written by ``save``; ValueError names the file and the bad key."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("kind") != REGRESSOR_KIND:
            raise ValueError(f"{path}: expected key 'kind' = {REGRESSOR_KIND!r}")
        values = {}
        for key in ("mean_x", "std_x", "mean_y", "std_y", "weights"):
            if key not in data:
                raise ValueError(f"{path}: missing key {key!r}")
            values[key] = np.asarray(data[key], dtype=np.float64)
        try:
            return cls(
                **values,
                name=str(data.get("name", "fitted")),
                num_pairs=int(data.get("num_pairs", 0)),
            )
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


S3FD_REGRESSOR = EllipseRegressor(
    mean_x=np.array([156.139471132076, 78.397757924529, 84.930770566038, 116.112850566038]),
    std_x=np.array([100.313377370381, 59.309591137699, 44.335308403038, 62.019657839662]),
    mean_y=np.array(
        [70.91182604717, 46.73052431509, -0.01539384715223, 198.4823523057, 127.6633875113]
    ),
    std_y=np.array(
        [37.423204711387, 24.516962217794, 0.136494235431, 95.60608844483, 61.831868659991]
    ),
    weights=np.array(
        [
            [-3.862171631194e-03, 1.685445519478e-03, 7.722023054035e-03, 1.051547187644,
             2.546369071108e-03],
            [1.272938395587e-02, 7.767872530910e-03, 1.825850271795e-02, 3.021742405918e-04,
             9.543215362057e-01],
            [4.295265489690e-01, 7.204314140371e-01, -3.151380563944e-01, 2.382190111202e-01,
             -1.810403502874e-01],
            [5.657794635126e-01, 2.745314413142e-01, 2.961628271050e-01, -6.104367985833e-03,
             6.116753106252e-01],
        ]
    ),
    name="s3fd",
)  # fmt: skip


def fit_ellipse_regressor(
    rects: np.ndarray, ellipses: np.ndarray, name: str = "fitted"
) -> EllipseRegressor:
    """Least-squares fit of an ``EllipseRegressor`` on matched pairs.

    Inputs and outputs are standardised (the angle in the turned representation), then
    ``weights = argmin ||Xs @ W - Ys||``.

    Args:
        rects: float (P, 4) detection rectangles ``x y w h``.
        ellipses: float (P, 5) matched annotation ellipses ``ra rb angle cx cy``.
        name: a label stored with the regressor.

    Raises:
        ValueError: fewer than 5 pairs, mismatched shapes, or a constant input column.
    """
    x = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    y = np.asarray(ellipses, dtype=np.float64).reshape(-1, 5).copy()
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} rectangles but {y.shape[0]} ellipses")
    if x.shape[0] < 5:
        raise ValueError(f"need at least 5 matched pairs to fit, got {x.shape[0]}")
    y[:, 2] = turn_angle(y[:, 2])
    mean_x, std_x = x.mean(axis=0), x.std(axis=0)
    mean_y, std_y = y.mean(axis=0), y.std(axis=0)
    if np.any(std_x == 0):
        raise ValueError(f"an input column is constant (std {std_x.tolist()})")
    std_y = np.where(std_y == 0, 1.0, std_y)
    weights, *_ = np.linalg.lstsq((x - mean_x) / std_x, (y - mean_y) / std_y, rcond=None)
    return EllipseRegressor(mean_x, std_x, mean_y, std_y, weights, name, int(x.shape[0]))


def matched_pairs(
    annotations: Sequence[FddbImage],
    detections: Mapping[str, FddbDetections],
    sizes: Mapping[str, tuple[int, int]],
    min_overlap: float = 0.5,
    min_score: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(rectangle, ellipse) pairs matched as FDDB matches them, for fitting a regressor.

    Per image, rectangles with score >= ``min_score`` (all if None) are matched to the
    annotation ellipses with the FDDB solver on pixel-mask overlaps; pairs with overlap above
    ``min_overlap`` are kept.

    Returns:
        float64 (P, 4) rectangles and float64 (P, 5) ellipses.
    """
    rects, ells = [], []
    for image in annotations:
        det = detections.get(image.image_id)
        if det is None or det.num_detections == 0 or image.num_faces == 0:
            continue
        keep = np.ones(det.num_detections, bool) if min_score is None else det.scores >= min_score
        boxes = np.asarray(det.regions, dtype=np.float64)[keep]
        if boxes.shape[0] == 0:
            continue
        width, height = sizes[image.image_id]
        overlaps = np.nan_to_num(overlap_matrix(image.ellipses, boxes, "rect", width, height))
        transpose = overlaps.shape[0] > overlaps.shape[1]
        ratings = overlaps.T if transpose else overlaps
        for i, j in enumerate(fddb_hungarian(ratings)):
            a, d = (j, i) if transpose else (i, j)
            if overlaps[a, d] > min_overlap:
                rects.append(boxes[d])
                ells.append(image.ellipses[a])
    return np.array(rects).reshape(-1, 4), np.array(ells).reshape(-1, 5)


def load_rect_to_ellipse(spec: str) -> EllipseRegressor | None:
    """Resolve ``--ellipse``: "identity" -> None, "s3fd" -> S3FD's regressor, else a JSON file."""
    if spec == "identity":
        return None
    if spec == "s3fd":
        return S3FD_REGRESSOR
    if not Path(spec).is_file():
        raise FileNotFoundError(
            f"--ellipse must be identity, s3fd or a regressor JSON file: {spec}"
        )
    return EllipseRegressor.load(spec)
