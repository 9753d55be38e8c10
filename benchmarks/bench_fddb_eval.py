"""Benchmark of the FDDB evaluator on the real FDDB annotations (2845 images, 5171 faces).

There are no FDDB images on this machine, so the benchmark makes a seeded, plausible size table
and seeded detections:

- size of each image: a typical FDDB size drawn from (450x338, 338x450, 500x375, 375x500,
  450x300), enlarged where needed so that every annotated ellipse centre lies inside it (faces
  may still cross the border, as in FDDB);
- detections, about 10 per image: for each face, with probability 0.9, its axis-aligned
  bounding rectangle jittered by 8 % of its size (score 0.5..1, 3 decimals), with probability
  0.15 a second jittered copy; then random false-positive rectangles (score 0..0.7) up to
  10 detections per image.

It times, in the same process:

- ours: ``reports.fddb.evaluate_fddb`` (cropped masks on a reused canvas, overlaps cached
  per image, one solve per distinct matching problem);
- reference: the straightforward procedure (one whole-image mask per annotation and per
  detection for every pair, and a solve at every threshold, as the C program does),

checks that both give byte-identical ROC files, and prints the ratio. It also prints our time
against the ~5 s that the official C++ program is reported to take for FDDB on this machine
class (a reported figure, not measured here).

    python benchmarks/bench_fddb_eval.py [--reference-images N] [--seed S]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.datasets.fddb import FddbDataset, FddbDetections, FddbImage  # noqa: E402
from reports.fddb import evaluate_fddb, roc_lines  # noqa: E402
from reports.fddb.roc import (  # noqa: E402
    DBL_MAX,
    ImageRoc,
    _solve_matches,
    merge_image_rocs,
    tpr_at_fp,
)
from tests.oracles.fddb_overlap_reference import overlap_matrix_reference  # noqa: E402

OFFICIAL_SECONDS = 5.0  # reported run time of the official evaluate on all of FDDB
FDDB_ROOT = REPO / "tests" / "data" / "fddb"
TYPICAL_SIZES = [(450, 338), (338, 450), (500, 375), (375, 500), (450, 300)]


def make_sizes(images: list[FddbImage], rng: np.random.Generator) -> dict[str, tuple[int, int]]:
    """Seeded plausible sizes that hold every ellipse centre."""
    sizes = {}
    for image in images:
        w, h = TYPICAL_SIZES[int(rng.integers(len(TYPICAL_SIZES)))]
        cx, cy = image.ellipses[:, 3], image.ellipses[:, 4]
        sizes[image.image_id] = (max(w, int(cx.max()) + 1), max(h, int(cy.max()) + 1))
    return sizes


def _bounding_rects(ellipses: np.ndarray) -> np.ndarray:
    ra, rb, theta, cx, cy = ellipses.T
    half_w = np.sqrt((ra * np.cos(theta)) ** 2 + (rb * np.sin(theta)) ** 2)
    half_h = np.sqrt((ra * np.sin(theta)) ** 2 + (rb * np.cos(theta)) ** 2)
    return np.stack([cx - half_w, cy - half_h, 2 * half_w, 2 * half_h], axis=1)


def make_detections(
    images: list[FddbImage], sizes: dict[str, tuple[int, int]], rng: np.random.Generator
) -> list[FddbDetections]:
    """About 10 seeded detections per image: jittered faces, duplicates, false positives."""
    out = []
    for image in images:
        faces = _bounding_rects(image.ellipses)
        found = faces[rng.random(len(faces)) < 0.9]
        dups = found[rng.random(len(found)) < 0.15]
        boxes = np.concatenate([found, dups])
        boxes = boxes + rng.normal(0, 0.08, boxes.shape) * boxes[:, [2, 3, 2, 3]]
        scores = np.round(rng.uniform(0.5, 1.0, len(boxes)), 3)
        w, h = sizes[image.image_id]
        num_fp = max(0, 10 - len(boxes))
        side = rng.uniform(15, 120, num_fp)
        fps = np.stack(
            [rng.uniform(-10, w, num_fp), rng.uniform(-10, h, num_fp), side, side * 1.2], axis=1
        )
        boxes = np.concatenate([boxes, fps])
        scores = np.concatenate([scores, np.round(rng.uniform(0.0, 0.7, num_fp), 3)])
        order = np.argsort(-scores, kind="stable")
        out.append(FddbDetections(image.image_id, boxes[order], scores[order]))
    return out


def reference_image_roc(overlaps: np.ndarray, scores: np.ndarray) -> ImageRoc:
    """Per-threshold matching without any reuse: the C program's loop as written."""
    num_faces, num_det = overlaps.shape
    if num_det == 0:
        zero = np.zeros(1, dtype=np.int64)
        return ImageRoc(np.array([DBL_MAX]), np.zeros(1), zero, zero.copy(), num_faces)
    thresholds = np.unique(scores)
    tp_cont, tp_disc, fp = [], [], []
    for t in thresholds:
        valid = scores >= t
        rows = [i for i in range(num_faces) if overlaps[i, valid].sum() != 0]
        cols = [j for j in range(num_det) if valid[j] and overlaps[:, j].sum() != 0]
        tc, td = _solve_matches(overlaps[np.ix_(rows, cols)]) if rows else (0.0, 0)
        tp_cont.append(tc)
        tp_disc.append(td)
        fp.append(int(valid.sum()) - td)
    return ImageRoc(thresholds, np.array(tp_cont), np.array(tp_disc), np.array(fp), num_faces)


def evaluate_reference(annotations, detections, sizes):
    rocs = []
    for image, det in zip(annotations, detections, strict=True):
        w, h = sizes[image.image_id]
        overlaps = overlap_matrix_reference(image.ellipses, det.regions, "rect", w, h)
        rocs.append(reference_image_roc(overlaps, det.scores))
    return merge_image_rocs(rocs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reference-images", type=int, default=0, help="reference on the first N images (0: all)"
    )
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    annotations = FddbDataset(FDDB_ROOT).annotations()
    sizes = make_sizes(annotations, rng)
    detections = make_detections(annotations, sizes, rng)
    num_det = sum(d.num_detections for d in detections)
    print(
        f"FDDB: {len(annotations)} images, {sum(a.num_faces for a in annotations)} faces, "
        f"{num_det} seeded detections (seed {args.seed})"
    )

    start = time.perf_counter()
    ours = evaluate_fddb(annotations, detections, sizes, "rect")
    ours_s = time.perf_counter() - start
    print(
        f"ours:      {ours_s:7.2f} s  ({len(ours.fp)} ROC points, "
        f"TPR@1000FP disc {tpr_at_fp(ours.tpr_disc, ours.fp):.6f})"
    )

    n = args.reference_images or len(annotations)
    start = time.perf_counter()
    ref = evaluate_reference(annotations[:n], detections[:n], sizes)
    ref_s = time.perf_counter() - start
    if n == len(annotations):
        same = roc_lines(ref) == roc_lines(ours)
    else:
        sub = evaluate_fddb(annotations[:n], detections[:n], sizes, "rect")
        same = roc_lines(ref) == roc_lines(sub)
        start = time.perf_counter()
        evaluate_fddb(annotations[:n], detections[:n], sizes, "rect")
        ours_sub_s = time.perf_counter() - start
    print(
        f"reference: {ref_s:7.2f} s  on {n} images (whole-image masks, no reuse); "
        f"outputs identical: {same}"
    )
    ours_on_n = ours_s if n == len(annotations) else ours_sub_s
    print(f"speed-up vs reference (same images, same process): {ref_s / ours_on_n:.1f}x")
    print(
        f"vs official C++ program (reported ~{OFFICIAL_SECONDS:g} s, not measured here): "
        f"{OFFICIAL_SECONDS / ours_s:.2f}x"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
