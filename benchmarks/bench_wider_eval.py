"""WIDER evaluator speed: vectorised ``reports.wider`` vs the slow transcription of the
tools (``tests.oracles.wider_reference``), on seeded synthetic detections for the real val GT.

Detections: every ground-truth box, kept with a probability that grows with its size, is
jittered (position and size, a few pixels plus a few percent) and scored high; false positives
(random boxes) are scored low; scores have 3 decimals; each image's list is sorted by score.
About 90k detections over the 3226 val images with the defaults.

Prints, per flavour, the time of both implementations on the same subset of images (the
reference is too slow for the full set in a test run) with the ratio and whether the APs are
identical, then the vectorised time on the full set.

    .venv/bin/python benchmarks/bench_wider_eval.py [--gt DIR] [--subset 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from pipeline.datasets.wider import WiderGroundTruth, load_wider_gt_dir  # noqa: E402
from reports.wider import ImageDetections, WiderPredictions, evaluate_predictions  # noqa: E402
from reports.wider.predictions import stable_descending  # noqa: E402
from tests.oracles.wider_reference import reference_evaluate  # noqa: E402

DEFAULT_GT = Path(__file__).resolve().parents[1] / "tests" / "data" / "wider_val_gt"


def synthetic_detections(
    gt: WiderGroundTruth, seed: int = 0, fp_per_image: float = 21.5
) -> dict[str, ImageDetections]:
    """Seeded detections per image (sorted by score, descending), about 90k for val."""
    rng = np.random.default_rng(seed)
    out: dict[str, ImageDetections] = {}
    for img in gt:
        g = img.boxes_xywh.astype(np.float64)
        size = np.sqrt(np.clip(g[:, 2] * g[:, 3], 1, None))
        hit = rng.random(len(g)) < np.clip(size / 40.0, 0.15, 0.98)
        tp = g[hit]
        jitter = rng.normal(0, 1, tp.shape) * (1.0 + 0.06 * np.repeat(size[hit, None], 4, 1))
        tp = tp + jitter
        tp_scores = np.clip(rng.beta(5, 1.5, len(tp)), 0.011, 1)
        n_fp = rng.poisson(fp_per_image)
        span = np.max(g[:, :2] + g[:, 2:], axis=0) + 50 if len(g) else np.array([1024, 768])
        xy = rng.random((n_fp, 2)) * span
        wh = np.exp(rng.uniform(np.log(4), np.log(300), (n_fp, 1))) * [1.0, 1.25]
        fp = np.concatenate([xy, wh], axis=1)
        fp_scores = np.clip(rng.beta(1.2, 6, n_fp), 0.011, 1)
        boxes = np.concatenate([tp, fp])
        scores = np.round(np.concatenate([tp_scores, fp_scores]), 3)
        order = stable_descending(scores)
        out[img.image_id] = ImageDetections(boxes[order], scores[order])
    return out


def _subset(gt: WiderGroundTruth, n: int) -> WiderGroundTruth:
    step = max(1, len(gt) // n)
    images = gt.images[::step][:n]
    return WiderGroundTruth(
        images, tuple(dict.fromkeys(i.image_id.split("/")[0] for i in images)), gt.settings
    )


def _timed(fn, repeat: int = 1):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return value, best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gt", default=str(DEFAULT_GT))
    parser.add_argument("--subset", type=int, default=300, help="images for the comparison")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    (gt, t_gt) = _timed(lambda: load_wider_gt_dir(args.gt))
    dets = synthetic_detections(gt, args.seed)
    n_all = sum(len(d) for d in dets.values())
    sub = _subset(gt, args.subset)
    n_sub = sum(len(dets[i.image_id]) for i in sub)
    print(
        f"ground truth loaded in {t_gt:.2f} s; {n_all} detections on {len(gt)} images; "
        f"comparison subset {len(sub)} images, {n_sub} detections"
    )
    for flavour in ("matlab", "pyport"):
        pred = WiderPredictions(flavour, {i.image_id: dets[i.image_id] for i in sub})
        fast, t_fast = _timed(lambda p=pred: evaluate_predictions(p, sub)[0], repeat=3)
        ref, t_ref = _timed(lambda p=pred: reference_evaluate(p, sub))
        same = all(fast.ap[s] == ref[s] for s in ref)
        print(
            f"{flavour:7s} subset: vectorised {t_fast:.3f} s, reference {t_ref:.2f} s, "
            f"ratio {t_ref / t_fast:.1f}x, identical AP: {same} "
            f"({', '.join(f'{s} {fast.ap[s]:.6f}' for s in fast.ap)})"
        )
        full = WiderPredictions(flavour, dets)
        res, t_full = _timed(lambda p=full: evaluate_predictions(p, gt)[0])
        print(
            f"{flavour:7s} full val: vectorised {t_full:.2f} s for {n_all} detections "
            f"({', '.join(f'{s} {res.ap[s]:.6f}' for s in res.ap)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
