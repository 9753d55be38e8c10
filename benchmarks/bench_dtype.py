"""Accuracy of the forward precisions against float32: WIDER AP per subset and box agreement.

On the synthetic benchmark's val split (seed 0), for each dtype this device runs, detects
single-scale with :class:`dsfd.Detector` and prints one Markdown table: AP per subset
(``reports.wider``, matlab flavour, on in-memory predictions), dAP against float32 (goal
``|dAP| <= 0.002``), and the share of float32 boxes (score >= 0.5) that a box of the dtype's
run overlaps at IoU >= 0.99. Models: the shipped model, and a seeded ``release-r152`` (random
weights, ``torch.manual_seed(0)``; its AP says nothing, its agreement does). On the CPU, tf32
is float32 by construction (the flag only touches CUDA matmuls and convolutions).

    .venv/bin/python benchmarks/bench_dtype.py [--num-images 30] [--release-images 10]
        [--release-width 0.25] [--dtypes float32 tf32 bfloat16 float16] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

import dsfd  # noqa: E402
from dsfd.detector import DTYPES  # noqa: E402
from pipeline.datasets.wider import SETTINGS, WiderGroundTruth  # noqa: E402
from pipeline.images import decode_image  # noqa: E402
from reports.wider import ImageDetections, WiderPredictions, evaluate_predictions  # noqa: E402
from reports.wider.evaluate import load_ground_truth  # noqa: E402
from reports.wider.predictions import stable_descending  # noqa: E402

MIN_SCORE = 0.5  # the float32 boxes whose agreement is measured
MATCH_IOU = 0.99


@dataclass(frozen=True)
class SyntheticVal:
    """Decoded val images of a synthetic benchmark and its ground truth."""

    gt: WiderGroundTruth
    images: dict[str, np.ndarray]  # image id -> (H, W, 3) uint8


def synthetic_val(root: Path, num_images: int, seed: int = 0) -> SyntheticVal:
    """Generate the synthetic benchmark (val only) into ``root`` and decode its images."""
    from pipeline.synthetic import SynthConfig, generate_benchmark

    generate_benchmark(root, SynthConfig(seed=seed, num_val=num_images, num_train=0,
                                         num_fddb=0))
    gt = load_ground_truth(root / "wider")
    folder = root / "wider" / "WIDER_val" / "images"
    images = {i.image_id: decode_image(str(folder / f"{i.image_id}.jpg")).pixels for i in gt}
    return SyntheticVal(gt, images)


def subset(val: SyntheticVal, num_images: int) -> SyntheticVal:
    """The first ``num_images`` images (ground truth and pixels)."""
    images = val.gt.images[:num_images]
    events = tuple(dict.fromkeys(i.image_id.split("/")[0] for i in images))
    return SyntheticVal(WiderGroundTruth(images, events, val.gt.settings),
                        {i.image_id: val.images[i.image_id] for i in images})


def detect_all(detector: dsfd.Detector, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Single-scale ``[K, 5]`` boxes per image id, one image per forward."""
    return {image_id: detector.detect([pixels])[0] for image_id, pixels in images.items()}


def wider_ap(dets: dict[str, np.ndarray], gt: WiderGroundTruth,
             inclusive: bool = False) -> dict[str, float]:
    """AP per subset of in-memory ``xyxy`` detections (``w = x2 - x1``, ``+ 1`` when the
    model's corners are inclusive, as the release's export writes them)."""
    images = {}
    for image_id, boxes in dets.items():
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:4] - boxes[:, :2]], 1).astype(np.float64)
        if inclusive:
            xywh[:, 2:] += 1.0
        scores = boxes[:, 4].astype(np.float64)
        order = stable_descending(scores)
        images[image_id] = ImageDetections(xywh[order], scores[order])
    result, _ = evaluate_predictions(WiderPredictions("matlab", images), gt)
    return {s: float(result.ap[s]) for s in SETTINGS}


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[A, B]`` IoU of ``xyxy`` boxes ``a`` ``[A, 4+]`` and ``b`` ``[B, 4+]``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:4] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:4] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def matched_share(reference: dict[str, np.ndarray], other: dict[str, np.ndarray],
                  min_iou: float = MATCH_IOU, min_score: float = MIN_SCORE) -> tuple[float, int]:
    """Share of ``reference`` boxes scoring >= ``min_score`` overlapped by a box of ``other``
    at IoU >= ``min_iou``, and how many reference boxes there were (share NaN when none).
    Degenerate reference boxes (zero or negative width or height: random weights give them)
    have no IoU and are left out."""
    hits = total = 0
    for image_id, ref in reference.items():
        ref = ref[(ref[:, 4] >= min_score) & np.all(ref[:, 2:4] > ref[:, :2], axis=1)]
        got = other[image_id]
        total += len(ref)
        if len(ref) and len(got):
            hits += int((iou_matrix(ref, got).max(axis=1) >= min_iou).sum())
    return (hits / total if total else float("nan")), total


def runnable_dtypes(device: torch.device, wanted: Sequence[str]) -> list[str]:
    """The dtypes of ``wanted`` that :class:`dsfd.Detector` accepts on ``device``."""
    from dsfd.detector import check_dtype

    out = []
    for dtype in wanted:
        try:
            check_dtype(dtype, device)
        except ValueError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        out.append(dtype)
    return out


def compare_dtypes(label: str, model: Any, val: SyntheticVal, dtypes: Sequence[str],
                   device: str, inclusive: bool = False) -> list[dict[str, Any]]:
    """One row per dtype: seconds per image, AP per subset, dAP and agreement vs float32."""
    rows: list[dict[str, Any]] = []
    reference: dict[str, np.ndarray] = {}
    reference_ap: dict[str, float] = {}
    for dtype in ["float32", *[d for d in dtypes if d != "float32"]]:
        detector = dsfd.Detector(model, device=device, dtype=dtype)
        detect_all(detector, dict(list(val.images.items())[:1]))  # warm-up
        start = time.perf_counter()
        dets = detect_all(detector, val.images)
        seconds = (time.perf_counter() - start) / len(val.images)
        ap = wider_ap(dets, val.gt, inclusive)
        if dtype == "float32":
            reference, reference_ap = dets, ap
        share, num_boxes = matched_share(reference, dets)
        rows.append({"model": label, "dtype": dtype, "images": len(val.images),
                     "seconds_per_image": seconds, "ap": ap,
                     "dap": {s: ap[s] - reference_ap[s] for s in SETTINGS},
                     "matched": share, "num_boxes": num_boxes})
    return rows


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    """The Markdown table of :func:`compare_dtypes` rows."""
    print("| model | dtype | images | s/image | AP easy | AP medium | AP hard | dAP easy | "
          "dAP medium | dAP hard | max abs dAP <= 0.002 | f32 boxes (>=0.5) matched "
          "IoU>=0.99 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|")
    for r in rows:
        worst = max(abs(v) for v in r["dap"].values())
        print(f"| {r['model']} | {r['dtype']} | {r['images']} | {r['seconds_per_image']:.3f} | "
              + " | ".join(f"{r['ap'][s]:.4f}" for s in SETTINGS) + " | "
              + " | ".join(f"{r['dap'][s]:+.4f}" for s in SETTINGS)
              + f" | {'yes' if worst <= 0.002 else 'no'} ({worst:.4f}) | "
              f"{100 * r['matched']:.1f}% of {r['num_boxes']} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=30)
    parser.add_argument("--release-images", type=int, default=10, help="0 skips release-r152")
    parser.add_argument("--release-width", type=float, default=0.25)
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtypes = runnable_dtypes(torch.device(args.device), args.dtypes)
    with tempfile.TemporaryDirectory(prefix="bench-dtype-") as tmp:
        val = synthetic_val(Path(tmp) / "synth", args.num_images)
    print(f"synthetic val (seed 0), single scale, {args.device}, {args.threads} thread(s), "
          f"torch {torch.__version__}\n")
    shipped, _ = dsfd.load_model("shipped", map_location=args.device)
    rows = compare_dtypes("shipped", shipped, val, dtypes, args.device)
    if args.release_images:
        torch.manual_seed(0)
        release = dsfd.build_model("release-r152", width=args.release_width)
        rows += compare_dtypes(f"release-r152 w{args.release_width:g} (seed 0)", release,
                               subset(val, args.release_images), dtypes, args.device,
                               inclusive=True)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
