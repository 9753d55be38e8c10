"""``Detector.detect_multiscale`` against the sum of its own passes, same image, model, process.

For one image, each pass of the official schedule (:func:`dsfd.multiscale.multiscale_passes`)
is timed on its own through ``Detector.detect_pass`` (a ``batch_size=1`` detector, so
``detect_multiscale`` runs every pass alone too) (resize, normalise, forward,
post-processing, mapping back), with the bare forward of the same input timed beside it; then
box voting of the size-filtered passes is timed alone, then the whole ``detect_multiscale``.
The items are timed round-robin (every item once per round, after a warm-up) and the medians
reported. The glue is ``detect_multiscale - sum of passes``: image conversion, size filters,
concatenation, box voting and the copy out; the box-voting share is ``voting /
detect_multiscale``. The voted result of the separately timed passes is checked equal to
``detect_multiscale``'s output, so both sides did the same work.

With ``--batched N`` it then times the multi-scale test as batched work against one pass at
a time: ``Detector(batch_size=1).detect_multiscale`` image by image (every pass its own
forward, as before batching) against ``Detector(batch_size=8).detect_multiscale_batch`` of
the ``N`` images (the flipped pass with its original, equal sizes together), round-robin,
and prints seconds per image and the ratio; the boxes are checked equal within float
tolerance.

A model name (``resnet50``) has random weights (no download): its scores sit near 0.5, so every
pass keeps the top 5000 boxes before NMS and voting sees tens of thousands of boxes -- the worst
case for the post-processing, a trained model's boxes are far fewer. ``--model shipped`` (or a
checkpoint) loads trained weights; ``--width`` then does not apply.

    .venv/bin/python benchmarks/bench_multiscale.py [--model resnet50] [--width 0.25]
        [--size 640x480] [--repeats 3] [--threads 1] [--batched N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from dsfd import Detector, build_model, load_model  # noqa: E402
from dsfd.multiscale import TestPass, multiscale_passes, size_filter  # noqa: E402
from dsfd.nms import box_vote  # noqa: E402
from dsfd.preprocess import image_to_tensor, normalize, resize_uint8, resized_hw  # noqa: E402


def synthetic_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A rendered WIDER-like synthetic scene resized to ``height x width``: uint8 RGB."""
    import cv2

    from pipeline.synthetic import render_wider_image

    _, scene = render_wider_image(seed, "val", 0)
    return np.ascontiguousarray(
        cv2.resize(scene.image, (width, height), interpolation=cv2.INTER_LINEAR))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, result)`` of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def pass_input(detector: Detector, pixels: Tensor, p: TestPass) -> Tensor:
    """The ``[1, 3, h, w]`` network input ``detect_pass`` builds for pass ``p``."""
    img = pixels.flip(-1) if p.flip else pixels
    if p.scale != 1.0:
        img = resize_uint8(img, p.scale)
    return normalize(img, detector.input_format)[None]


def one_round(detector: Detector, image: np.ndarray, passes: list[TestPass]) -> dict[str, Any]:
    """Time every item once: each pass and its bare forward, voting, the whole multi-scale."""
    pixels = image_to_tensor(image)
    forward_s, pass_s, dets = [], [], []
    for p in passes:
        x = pass_input(detector, pixels, p)
        with torch.inference_mode():
            forward_s.append(timed(partial(detector.model, x))[0])
        spent, d = timed(partial(detector.detect_pass, pixels, p.scale, p.flip))
        pass_s.append(spent)
        dets.append(size_filter(d, p.keep))
    merged = torch.cat(dets)
    vote_s, voted = timed(lambda: box_vote(merged, detector.config.vote_thresh,
                                           detector.config.post_nms_top_k))
    multi_s, out = timed(lambda: detector.detect_multiscale(image))
    return {"forward_s": forward_s, "pass_s": pass_s, "vote_s": vote_s, "multiscale_s": multi_s,
            "boxes_per_pass": [int(d.shape[0]) for d in dets], "boxes_voted": int(merged.shape[0]),
            "identical": bool(np.array_equal(voted.cpu().numpy().astype(np.float32), out))}


def measure(detector: Detector, image: np.ndarray, repeats: int) -> dict[str, Any]:
    """Medians over ``repeats`` rounds (after one warm-up round) and the glue split."""
    height, width = image.shape[:2]
    passes = multiscale_passes(height, width)
    one_round(detector, image, passes)  # warm-up: allocator, kernel selection, anchor cache
    rounds = [one_round(detector, image, passes) for _ in range(repeats)]

    def med(key: str, i: int | None = None) -> float:
        return statistics.median(r[key] if i is None else r[key][i] for r in rounds)

    per_pass = []
    for i, p in enumerate(passes):
        h, w = resized_hw((height, width), p.scale)
        per_pass.append({"scale": p.scale, "flip": p.flip, "keep": p.keep, "input_hw": [h, w],
                         "forward_s": med("forward_s", i), "pass_s": med("pass_s", i),
                         "boxes_kept": rounds[-1]["boxes_per_pass"][i]})
    sum_passes = sum(p["pass_s"] for p in per_pass)
    multi = med("multiscale_s")
    vote = med("vote_s")
    return {"passes": per_pass, "sum_passes_s": sum_passes,
            "sum_forward_s": sum(p["forward_s"] for p in per_pass), "multiscale_s": multi,
            "glue_s": multi - sum_passes, "glue_share": (multi - sum_passes) / multi,
            "vote_s": vote, "vote_share": vote / multi, "boxes_voted": rounds[-1]["boxes_voted"],
            "identical": all(r["identical"] for r in rounds),
            "round_multiscale_s": [r["multiscale_s"] for r in rounds]}


def measure_batched(model: torch.nn.Module, images: list[np.ndarray],
                    repeats: int) -> dict[str, Any]:
    """Seconds per image of the multi-scale test one pass at a time vs batched passes."""
    sequential = Detector(model, device="cpu", batch_size=1)
    batched = Detector(model, device="cpu", batch_size=8)

    def one_by_one() -> list[np.ndarray]:
        return [sequential.detect_multiscale(image) for image in images]

    def together() -> list[np.ndarray]:
        return batched.detect_multiscale_batch(images)

    want, got = one_by_one(), together()  # warm-up, and the check
    close = all(a.shape == b.shape and np.allclose(a, b, rtol=1e-4, atol=1e-2)
                for a, b in zip(want, got, strict=True))
    seq_s, bat_s = [], []
    for _ in range(repeats):
        seq_s.append(timed(one_by_one)[0] / len(images))
        bat_s.append(timed(together)[0] / len(images))
    seq, bat = statistics.median(seq_s), statistics.median(bat_s)
    return {"images": len(images), "sequential_s_per_image": seq, "batched_s_per_image": bat,
            "ratio": seq / bat, "close": close}


def print_tables(r: dict[str, Any], header: str) -> None:
    """The per-pass table and the summary as Markdown."""
    print(header + "\n")
    print("| pass | scale | flip | size filter | input HxW | forward ms | pass ms "
          "| pass - forward ms | boxes kept |")
    print("|---:|---:|---|---|---|---:|---:|---:|---:|")
    for i, p in enumerate(r["passes"], 1):
        h, w = p["input_hw"]
        print(f"| {i} | {p['scale']:g} | {'yes' if p['flip'] else ''} | {p['keep']} | {h}x{w} "
              f"| {p['forward_s'] * 1e3:.1f} | {p['pass_s'] * 1e3:.1f} "
              f"| {(p['pass_s'] - p['forward_s']) * 1e3:.1f} | {p['boxes_kept']} |")
    multi = r["multiscale_s"]
    print("\n| quantity | ms | share of detect_multiscale |")
    print("|---|---:|---:|")
    rows = [("detect_multiscale (per image)", multi),
            ("sum of its passes, timed one by one", r["sum_passes_s"]),
            ("  of which bare forwards", r["sum_forward_s"]),
            ("glue = multiscale - sum of passes", r["glue_s"]),
            (f"  box voting alone ({r['boxes_voted']:,} boxes)", r["vote_s"]),
            ("  rest of the glue (conversion, filters, concat, copy)", r["glue_s"] - r["vote_s"])]
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1e3:.1f} | {seconds / multi:.3f} |")
    print(f"\nvoted passes identical to detect_multiscale's output: {r['identical']}; "
          f"detect_multiscale per round (ms): "
          f"{', '.join(f'{s * 1e3:.0f}' for s in r['round_multiscale_s'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--width", type=float, default=0.25, help="width multiplier")
    parser.add_argument("--size", default="640x480", help="image WxH")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after a warm-up")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batched", type=int, default=0,
                        help="also time batched passes vs one pass at a time on N images")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    width, height = (int(v) for v in args.size.lower().split("x"))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model == "shipped" or Path(args.model).is_file():
        model = load_model(args.model)[0]
    else:
        model = build_model(args.model, width=args.width)
    detector = Detector(model, device="cpu", batch_size=1)  # every pass alone, as timed
    image = synthetic_image(width, height)
    load_start = os.getloadavg()[0]
    result = measure(detector, image, args.repeats)
    result["config"] = vars(args) | {"json": str(args.json), "torch": torch.__version__,
                                     "load_average": [load_start, os.getloadavg()[0]]}
    name = args.model if args.model == "shipped" or \
        Path(args.model).is_file() else f"{args.model} width {args.width:g}"
    print_tables(result, f"{name}, synthetic {width}x{height} image, "
                 f"{len(result['passes'])} passes, {args.threads} thread(s), median of "
                 f"{args.repeats} round-robin rounds after a warm-up; load average "
                 f"{load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    ok = result["identical"]
    if args.batched > 0:
        images = [synthetic_image(width, height, seed) for seed in range(args.batched)]
        b = result["batched"] = measure_batched(model, images, args.repeats)
        ok = ok and b["close"]
        print(f"\nmulti-scale test, {b['images']} images of {width}x{height}: one pass at a "
              "time vs batched passes (median of round-robin rounds)\n")
        print("| path | s per image | ratio |\n|---|---:|---:|")
        print(f"| sequential (batch_size=1) | {b['sequential_s_per_image']:.3f} | 1.00x |")
        print(f"| batched (batch_size=8) | {b['batched_s_per_image']:.3f} "
              f"| {b['ratio']:.2f}x |")
        print(f"\nbatched boxes equal sequential within float tolerance: {b['close']}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
