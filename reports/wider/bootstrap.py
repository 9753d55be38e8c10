"""Bootstrap confidence intervals for WIDER FACE AP, and a paired bootstrap of two runs.

A replicate resamples the ground-truth images with replacement (a multinomial draw of
``num_images`` images, uniform, from a seeded ``numpy.random.Generator``) and recomputes the
AP of every setting. Each image's contribution is computed once: per image and setting, the
(proposals, true positives) counts at the 1000 thresholds and the number of faces that count;
these are exactly the integer tables the evaluator builds per image and merges by summing
(:mod:`reports.wider.state`). A replicate is then one weighted sum (``weights @ tables``, a
matrix product over images) followed by the evaluator's own compute step (precision, recall,
the flavour's VOC AP). With every weight 1 the sum is the merged state, and the AP is the
official point estimate bit for bit (integer-valued float64 sums are exact).

What is held fixed: the score normalisation. The tools normalise scores by the minimum and
maximum over the whole set (pass 1) before thresholding; a replicate keeps the point
estimate's bounds (and hence each detection's threshold bin) instead of renormalising over
the resampled images. This is what makes a replicate cheap, and it matches the question the
interval answers: how much the AP moves when the *images* are drawn again, with the detector's
score scale as it is. The point estimate itself is never taken from the bootstrap: it is the
official-exact :func:`reports.wider.evaluate_run` value.

Intervals are percentile intervals of the replicates. The paired bootstrap draws the same
image weights for both runs (same ground-truth images required), so the interval of
``AP_A - AP_B`` accounts for the images being shared; its p-value is the two-sided bootstrap
p-value ``min(1, 2 * min(P*(d <= 0), P*(d >= 0)))`` over the replicate differences ``d``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.datasets.wider import SETTINGS, WiderGroundTruth, WiderImageGT
from reports.wider import flavours
from reports.wider.evaluate import compute_bounds
from reports.wider.flavours import Flavour
from reports.wider.predictions import EMPTY, WiderPredictions
from reports.wider.state import THRESH_NUM, WiderEvalState, evaluate_image

__all__ = [
    "CHUNK",
    "BootstrapCollector",
    "WiderBootstrapState",
    "bootstrap_interval",
    "bootstrap_replicates",
    "bootstrap_state",
    "check_num_replicates",
    "first_difference",
    "multinomial_weights",
    "paired_bootstrap",
    "pr_bands",
    "paired_summary",
    "percentile_interval",
]

CHUNK = 64  # replicates per matrix product (bounds memory; the draws do not depend on it)


# ----------------------------------------------------------------------------------------
# Generic pieces (shared with reports.fddb.bootstrap)


def check_num_replicates(n: int, level: float = 0.95) -> None:
    """Refuse a replicate count below 1 or a level outside (0, 1) (``ValueError``)."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"bootstrap needs at least 1 replicate, got {n!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level!r}")


def multinomial_weights(num_images: int, n: int, seed: int | None) -> Iterator[np.ndarray]:
    """The image weights of ``n`` replicates, ``CHUNK`` at a time: (chunk, num_images) int64
    counts of a uniform multinomial draw of ``num_images`` images (resampling with
    replacement), from ``numpy.random.default_rng(seed)``; the same seed gives the same
    weights."""
    rng = np.random.default_rng(seed)
    p = np.full(num_images, 1.0 / num_images) if num_images else np.zeros(0)
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        if num_images == 0:
            yield np.zeros((size, 0), dtype=np.int64)
        else:
            yield rng.multinomial(num_images, p, size=size)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of replicate values ((n,) float64; NaN
    replicates are ignored; NaN bounds if all are NaN)."""
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def paired_summary(diff: float, diffs: np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """``{"diff", "interval", "p_value"}`` of a paired bootstrap: the point difference, the
    percentile interval of the replicate differences ``diffs`` ((n,) float64) and the two-sided
    bootstrap p-value of "no difference"."""
    finite = diffs[~np.isnan(diffs)]
    if finite.size == 0:
        p_value = float("nan")
    else:
        p_value = min(1.0, 2.0 * min(np.mean(finite <= 0.0), np.mean(finite >= 0.0)))
    return {"diff": diff, "interval": percentile_interval(diffs, level), "p_value": p_value}


def first_difference(ids_a: tuple[str, ...], ids_b: tuple[str, ...]) -> str | None:
    """The first image id where two image lists differ (position by position, then the extra
    tail), or None if they are equal."""
    for a, b in zip(ids_a, ids_b, strict=False):
        if a != b:
            return a
    if len(ids_a) != len(ids_b):
        return (ids_a if len(ids_a) > len(ids_b) else ids_b)[min(len(ids_a), len(ids_b))]
    return None


# ----------------------------------------------------------------------------------------
# WIDER per-image tables


@dataclass(frozen=True, eq=False)
class WiderBootstrapState:
    """Per-image contributions of one run, laid out for a weighted sum over images.

    Attributes:
        flavour: whose semantics built the tables.
        image_ids: the ground-truth images in evaluation order (I of them).
        settings: the settings (S of them), in the order of ``WiderResult.ap``.
        matrix: float64 (I, S * THRESH_NUM * 2 + S), integer valued: per image, for each
            setting the (THRESH_NUM, 2) table of (proposals, true positives) flattened, then
            the S counted-face numbers. ``weights @ matrix`` is a resampled merged state.
        num_detections: detections on the ground-truth images.
    """

    flavour: Flavour
    image_ids: tuple[str, ...]
    settings: tuple[str, ...]
    matrix: np.ndarray
    num_detections: int

    @property
    def num_images(self) -> int:
        """Ground-truth images I."""
        return len(self.image_ids)

    def tables(self, setting: str) -> np.ndarray:
        """(I, THRESH_NUM, 2) view of one setting's per-image tables."""
        k = self.settings.index(setting)
        width = THRESH_NUM * 2
        return self.matrix[:, k * width : (k + 1) * width].reshape(-1, THRESH_NUM, 2)

    def replicate_aps(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """AP per setting of each weight vector.

        Args:
            weights: (R, I) image weights (counts of a resampling; all ones = the point
                estimate, reproduced exactly).

        Returns:
            setting -> (R,) float64 AP.
        """
        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim != 2 or weights.shape[1] != self.num_images:
            raise ValueError(
                f"weights must have shape (R, {self.num_images}), got {weights.shape}"
            )
        sums = weights @ self.matrix  # (R, S * 2T + S): resampled merged states
        width = THRESH_NUM * 2
        tail = len(self.settings) * width
        out = {s: np.empty(len(weights)) for s in self.settings}
        for r in range(len(weights)):
            for k, s in enumerate(self.settings):
                table = sums[r, k * width : (k + 1) * width].reshape(THRESH_NUM, 2)
                with np.errstate(divide="ignore", invalid="ignore"):
                    precision = table[:, 1] / table[:, 0]
                    recall = table[:, 1] / sums[r, tail + k]
                out[s][r] = self.flavour.voc_ap(recall, precision)
        return out

    def point_estimate(self) -> dict[str, float]:
        """AP per setting with every image weighted 1 (equal to the official evaluation)."""
        aps = self.replicate_aps(np.ones((1, self.num_images)))
        return {s: float(v[0]) for s, v in aps.items()}


class BootstrapCollector:
    """Fills a run's per-image tables while the evaluation runs, so that the bootstrap takes
    each image's contribution from the one evaluation that gives the point estimate.

    Pass :meth:`add` as ``per_image`` to :func:`reports.wider.evaluate_run` (or
    :func:`reports.wider.evaluate_predictions`), then call :meth:`state`.

    Args:
        num_images: the ground-truth images that will be evaluated.
        flavour: the evaluation's flavour (or its name).
        settings: which settings to tabulate.
    """

    def __init__(self, num_images: int, flavour: str | Flavour,
                 settings: tuple[str, ...] = SETTINGS) -> None:
        self.settings = tuple(settings)
        width = THRESH_NUM * 2
        self.matrix = np.zeros((num_images, len(settings) * (width + 1)), dtype=np.float64)
        self.image_ids: list[str | None] = [None] * num_images
        self.num_detections = 0
        self.flavour = flavours.flavour(flavour)

    def add(self, index: int, image: WiderImageGT, part: WiderEvalState) -> None:
        """Store image ``index``'s tables (``part``: its own evaluation state)."""
        width = THRESH_NUM * 2
        for k, s in enumerate(self.settings):
            self.matrix[index, k * width : (k + 1) * width] = part.tables[s].reshape(-1)  # 2T
            self.matrix[index, len(self.settings) * width + k] = part.count_face[s]
        self.image_ids[index] = image.image_id
        self.num_detections += part.num_detections
        if part.flavour != self.flavour:
            raise ValueError(f"tables of flavour {part.flavour} for a {self.flavour} collector")

    def state(self) -> WiderBootstrapState:
        """The collected tables.

        Raises:
            ValueError: an image was never added.
        """
        missing = [i for i, image_id in enumerate(self.image_ids) if image_id is None]
        if missing:
            raise ValueError(f"per-image tables missing for image indices {missing[:5]}")
        return WiderBootstrapState(
            flavour=self.flavour,
            image_ids=tuple(str(i) for i in self.image_ids),
            settings=self.settings,
            matrix=self.matrix,
            num_detections=self.num_detections,
        )


def bootstrap_state(
    pred: WiderPredictions, gt: WiderGroundTruth, settings: tuple[str, ...] = SETTINGS
) -> WiderBootstrapState:
    """Evaluate every ground-truth image once and keep its tables (the evaluator's two passes,
    without the merge). To keep the tables of an evaluation that runs anyway, pass a
    :class:`BootstrapCollector` to it instead.

    Args:
        pred: predictions read by one flavour (:func:`reports.wider.load_predictions`).
        gt: the ground truth with keep lists for ``settings``.
        settings: which settings to tabulate.

    Raises:
        ValueError: the ground truth lacks a setting's keep lists.
    """
    missing = [s for s in settings if s not in gt.settings]
    if missing:
        raise ValueError(f"{gt.source}: ground truth has no keep lists for {missing}")
    bounds = compute_bounds(pred)  # pass 1 over the whole set: held fixed in every replicate
    collector = BootstrapCollector(len(gt), pred.flavour, settings)
    for i, image in enumerate(gt):
        det = pred.images.get(image.image_id, EMPTY)
        collector.add(i, image, evaluate_image(image, det, bounds, settings))
    return collector.state()


# ----------------------------------------------------------------------------------------
# Intervals


def bootstrap_replicates(
    state: WiderBootstrapState, n: int, seed: int | None = 0
) -> dict[str, np.ndarray]:
    """AP per setting of ``n`` resampled image sets: setting -> (n,) float64."""
    check_num_replicates(n)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in state.settings}
    for weights in multinomial_weights(state.num_images, n, seed):
        for s, aps in state.replicate_aps(weights).items():
            parts[s].append(aps)
    return {s: np.concatenate(v) for s, v in parts.items()}


def bootstrap_interval(
    state: WiderBootstrapState, n: int, seed: int | None = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of the AP of each setting.

    Args:
        state: the run's per-image tables (:func:`bootstrap_state`).
        n: replicates (at least 1; 1000 is usual).
        seed: seed of the image resampling (same seed, same interval).
        level: coverage of the interval (0.95: the 2.5th and 97.5th percentiles).

    Returns:
        setting -> (lo, hi).

    Raises:
        ValueError: ``n`` < 1 or ``level`` outside (0, 1).
    """
    check_num_replicates(n, level)
    reps = bootstrap_replicates(state, n, seed)
    return {s: percentile_interval(v, level) for s, v in reps.items()}


def paired_bootstrap(
    state_a: WiderBootstrapState,
    state_b: WiderBootstrapState,
    n: int,
    seed: int | None = 0,
    level: float = 0.95,
) -> dict[str, dict[str, Any]]:
    """Paired bootstrap of ``AP_A - AP_B`` on the same images (the same weights for both).

    Returns:
        setting -> {"diff": point AP_A - AP_B, "interval": (lo, hi) of the replicate
        differences, "p_value": two-sided bootstrap p-value of no difference}.

    Raises:
        ValueError: ``n`` < 1, ``level`` outside (0, 1), different flavours or settings, or
            different image lists (naming the first image that differs).
    """
    check_num_replicates(n, level)
    if state_a.flavour != state_b.flavour or state_a.settings != state_b.settings:
        raise ValueError(
            f"paired bootstrap needs runs of one flavour and settings: {state_a.flavour} "
            f"{state_a.settings} vs {state_b.flavour} {state_b.settings}"
        )
    differs = first_difference(state_a.image_ids, state_b.image_ids)
    if differs is not None:
        raise ValueError(
            f"paired bootstrap needs the same images in the same order: the runs differ at "
            f"{differs!r} ({state_a.num_images} vs {state_b.num_images} images)"
        )
    point_a, point_b = state_a.point_estimate(), state_b.point_estimate()
    diffs: dict[str, list[np.ndarray]] = {s: [] for s in state_a.settings}
    for weights in multinomial_weights(state_a.num_images, n, seed):
        aps_a, aps_b = state_a.replicate_aps(weights), state_b.replicate_aps(weights)
        for s in state_a.settings:
            diffs[s].append(aps_a[s] - aps_b[s])
    return {
        s: paired_summary(point_a[s] - point_b[s], np.concatenate(diffs[s]), level)
        for s in state_a.settings
    }


def pr_bands(
    state: WiderBootstrapState, n: int, seed: int | None = 0, level: float = 0.95
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pointwise percentile band of each setting's precision-recall curve.

    At each of the ``THRESH_NUM`` thresholds, the central ``level`` interval of the precision
    over ``n`` replicates (the same draws as :func:`bootstrap_interval` with the same seed);
    drawn against the point curve's recall at that threshold.

    Returns:
        setting -> (lo, hi), each (THRESH_NUM,) float64 (NaN where no replicate has a
        precision: no proposal above the threshold).
    """
    check_num_replicates(n, level)
    width = THRESH_NUM * 2
    parts: dict[str, list[np.ndarray]] = {s: [] for s in state.settings}
    for weights in multinomial_weights(state.num_images, n, seed):
        sums = weights.astype(np.float64) @ state.matrix  # (R, S * 2T + S)
        for k, s in enumerate(state.settings):
            tables = sums[:, k * width : (k + 1) * width].reshape(-1, THRESH_NUM, 2)
            with np.errstate(divide="ignore", invalid="ignore"):
                parts[s].append(tables[:, :, 1] / tables[:, :, 0])  # (R, T) precision
    alpha = (1.0 - level) / 2.0
    out = {}
    for s, chunks in parts.items():
        precision = np.concatenate(chunks)  # (n, T)
        defined = ~np.isnan(precision).all(axis=0)
        lo, hi = np.full(THRESH_NUM, np.nan), np.full(THRESH_NUM, np.nan)
        if defined.any():
            lo[defined], hi[defined] = np.nanquantile(precision[:, defined],
                                                      [alpha, 1.0 - alpha], axis=0)
        out[s] = (lo, hi)
    return out
