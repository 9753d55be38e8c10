"""Where ``Detector.detect``'s time goes on the CPU (forward against post-processing), and what
the inference settings cost in accuracy, with the shipped model on synthetic val images.

Same process, same images, round-robin over the settings:

- before: the model as loaded, one image per forward, the previous NMS (numpy loop + sweep,
  ``bench_run_cpu.previous_nms``);
- the default of ``dsfd run``: folded BatchNorm + channels-last, compiled windowed NMS, one
  image per forward;
- ``--batch-size 4``: the same with size-bucketed batches (padding masked).

Per setting: ms per image for ``detect``, for the forward and for post-processing
(``postprocess_shot``: softmax, threshold, top-k, decode, NMS), post-processing's share of
``detect``, and against the first setting: AP per subset (matlab flavour) and the share of its
boxes scoring >= 0.5 matched at IoU >= 0.99.

    .venv/bin/python benchmarks/bench_detect_split.py [--images 16] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

import dsfd  # noqa: E402
import dsfd.detector as detector_module  # noqa: E402
from benchmarks.bench_dtype import matched_share, synthetic_val, wider_ap  # noqa: E402
from benchmarks.bench_run_cpu import previous_nms  # noqa: E402

SETTINGS: dict[str, tuple[dict[str, Any], bool]] = {
    # name: (Detector options, previous NMS)
    "before (as loaded, batch 1, numpy NMS)": ({"optimize": False, "batch_size": 1}, True),
    "dsfd run default (optimize, compiled NMS, batch 1)": (
        {"optimize": True, "batch_size": 1}, False),
    "--batch-size 4 (bucketed)": ({"optimize": True, "batch_size": 4, "bucket": True}, False),
}


class _Timer:
    """Wall time spent inside the wrapped function (summed over calls)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.seconds = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def timed_detect(detector: dsfd.Detector, images: Sequence[np.ndarray], batch: int,
                 old_nms: bool) -> tuple[list[np.ndarray], float, float]:
    """Detections, total seconds and post-processing seconds for ``images`` in chunks of
    ``batch`` (``detect`` given ``batch`` images at a time, as a worker does)."""
    timer = _Timer(detector_module.postprocess_shot)
    detector_module.postprocess_shot = timer  # type: ignore[assignment]
    try:
        with previous_nms() if old_nms else nullcontext():
            start = time.perf_counter()
            out: list[np.ndarray] = []
            for i in range(0, len(images), batch):
                out.extend(detector.detect(list(images[i:i + batch])))
            total = time.perf_counter() - start
    finally:
        detector_module.postprocess_shot = timer.fn  # type: ignore[assignment]
    return out, total, timer.seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        val = synthetic_val(Path(tmp) / "synth", args.images)
    ids = list(val.images)
    images = [val.images[i] for i in ids]
    model, _ = dsfd.load_model("shipped", map_location="cpu")
    detectors = {name: dsfd.Detector(model, **options)
                 for name, (options, _) in SETTINGS.items()}
    for name, (_, old_nms) in SETTINGS.items():  # warm-up: compile, calibrate, caches
        timed_detect(detectors[name], images[:4], detectors[name].batch_size, old_nms)
    totals: dict[str, list[float]] = {n: [] for n in SETTINGS}
    posts: dict[str, list[float]] = {n: [] for n in SETTINGS}
    dets: dict[str, dict[str, np.ndarray]] = {}
    for _ in range(args.rounds):
        for name, (_, old_nms) in SETTINGS.items():
            det = detectors[name]
            out, total, post = timed_detect(det, images, det.batch_size, old_nms)
            totals[name].append(total / len(images))
            posts[name].append(post / len(images))
            dets[name] = dict(zip(ids, out, strict=True))
    print(f"shipped model, {len(images)} synthetic val images (seed 0), {args.threads} "
          f"thread(s), median of {args.rounds} rounds")
    print("| setting | ms/image detect | forward + rest | post-processing | post share | "
          "speed-up | AP easy | AP medium | AP hard | boxes >= 0.5 matched (IoU >= 0.99) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    first = next(iter(SETTINGS))
    base = statistics.median(totals[first])
    for name in SETTINGS:
        total, post = statistics.median(totals[name]), statistics.median(posts[name])
        ap = wider_ap(dets[name], val.gt)
        share, count = matched_share(dets[first], dets[name])
        print(f"| {name} | {1000 * total:.1f} | {1000 * (total - post):.1f} | "
              f"{1000 * post:.1f} | {100 * post / total:.1f}% | {base / total:.2f}x | "
              f"{ap['easy']:.4f} | {ap['medium']:.4f} | {ap['hard']:.4f} | "
              f"{100 * share:.1f}% of {count} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
