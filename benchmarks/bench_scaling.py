"""Scaling on paper: the official multi-scale test over WIDER FACE val on N GPUs.

Nothing here runs on a GPU. The per-image GPU cost comes from a GPU check recorded on one
NVIDIA H200 (full-width ``release-r152``; see ``docs/model.md``); the Ray cost per shard and the
start-up are measured here, on this machine, with the pipeline benchmark's own helpers
(``benchmarks/bench_pipeline.py``: a local Ray, one actor, ``run_inference`` over a folder of
tiny images, one image per shard). The wall time for N GPUs is a list schedule of the shards
(each shard to the GPU that frees first, as the runner's queue does).

Assumptions (all printed with the table):

- WIDER val: 3226 images, each taken as the typical 1024x683 (``H x W`` from the scale
  schedule of ``dsfd.multiscale.multiscale_passes``: 11 passes, ``max_im_shrink = 3``);
- a pass costs the recorded 640x640 forward scaled by its pixel count (convolutions are linear
  in pixels; the GPU is assumed full at every size, which flatters the small passes);
- post-processing per pass: either none (lower bound) or the recorded single-scale ``detect``
  minus its pixel-scaled forward (upper bound: that ``detect`` includes first-call costs);
- box voting: the recorded 0.16 s per image on the GPU;
- data loading (decode, resize) overlaps inference (decode threads in every actor); the
  recorded ShardWorker rate of the pipeline on CUDA with a small model (36.4 images/s)
  bounds the non-model work per image from below, which each image's cost respects;
- one actor per GPU, identical GPUs, no failures; the start-up (Ray, actors, model load) as
  measured here for a small model on the CPU (loading the 0.5 GB release checkpoint onto a
  GPU adds seconds, once per actor, in parallel).

Prints a Markdown table and writes JSON::

    .venv/bin/python benchmarks/bench_scaling.py [--shard-size 64] [--json FILE]
        [--shard-overhead-s S --startup-s S]   (skip the Ray measurement)
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from dsfd.multiscale import multiscale_passes  # noqa: E402
from dsfd.preprocess import resized_hw  # noqa: E402

WIDER_VAL_IMAGES = 3226
TYPICAL_HW = (683, 1024)  # H x W of a typical WIDER FACE image
GPU_COUNTS = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class RecordedGpu:
    """Inputs recorded by a GPU check (``benchmarks/device_check_detector.py``), in seconds.

    Attributes:
        device: what ran them.
        forward_640_s: full-width release-r152 forward of one 640x640 image.
        detect_s: ``Detector.detect`` (single scale) on a 1024x683 image, first call included.
        multiscale_s: ``Detector.detect_multiscale`` on the same image, first call included.
        vote_s: its box voting (31,437 boxes) on the GPU.
        shard_worker_images_per_s: the pipeline's ShardWorker on CUDA, single scale, small
            model: the rate of the non-model work (decode, copy, write).
    """

    device: str = "1x NVIDIA H200, full-width release-r152"
    forward_640_s: float = 0.0376
    detect_s: float = 0.20
    multiscale_s: float = 2.6
    vote_s: float = 0.16
    shard_worker_images_per_s: float = 36.4


@dataclass(frozen=True)
class RayCost:
    """Ray costs measured on this machine: per shard (wall time beyond the workers' own shard
    time) and once per run (start-up before the first shard)."""

    shard_overhead_s: float
    startup_s: float
    source: str


def pass_pixels(height: int, width: int) -> list[dict[str, Any]]:
    """Scale, flip and network-input pixel count of each pass of the official schedule."""
    rows = []
    for p in multiscale_passes(height, width):
        h, w = resized_hw((height, width), p.scale)
        rows.append({"scale": p.scale, "flip": p.flip, "input_hw": [h, w], "pixels": h * w})
    return rows


def per_image_seconds(passes: list[dict[str, Any]], gpu: RecordedGpu,
                      height: int, width: int) -> dict[str, float]:
    """Per-image GPU seconds of the multi-scale test under three readings of the records.

    Each is at least ``1 / shard_worker_images_per_s`` (the non-model work per image, which
    overlaps inference but cannot be faster than the pipeline's single-scale rate).
    """
    ref_pixels = 640 * 640
    forwards = sum(gpu.forward_640_s * p["pixels"] / ref_pixels for p in passes)
    single_forward = gpu.forward_640_s * height * width / ref_pixels
    post_per_pass = max(0.0, gpu.detect_s - single_forward)
    floor = 1.0 / gpu.shard_worker_images_per_s
    estimates = {"lower": forwards + gpu.vote_s,
                 "upper": forwards + len(passes) * post_per_pass + gpu.vote_s,
                 "recorded": gpu.multiscale_s}
    return {name: max(floor, seconds) for name, seconds in estimates.items()}


def makespan(num_images: int, shard_size: int, image_s: float, shard_overhead_s: float,
             num_gpus: int) -> float:
    """Seconds until the last shard is done: shards in order, each to the first free GPU."""
    free = [0.0] * num_gpus  # a heap of the times each GPU frees
    for start in range(0, num_images, shard_size):
        size = min(shard_size, num_images - start)
        heapq.heappush(free, heapq.heappop(free) + size * image_s + shard_overhead_s)
    return max(free)


def measure_ray_cost(num_shards: int, timeout_s: float) -> RayCost:
    """Ray's cost per shard and at start-up: ``run_inference`` with one 1-CPU actor over
    ``num_shards`` one-image shards of 32x24 pictures (the model's time is tiny); gives up
    after ``timeout_s``."""
    import ray

    from benchmarks.bench_pipeline import _save_model, pipeline_run, write_images

    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        work = Path(tmp)
        checkpoint = work / "model.pt"
        _save_model(checkpoint, 0.25)
        write_images(work / "images", num_shards, 32, 24)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["summary"] = pipeline_run(work / "images", checkpoint, work / "run", 1, 1, 1)
            except Exception as exc:  # noqa: BLE001 (re-raised below, in this thread)
                box["error"] = exc

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        thread.join(timeout_s)
        if thread.is_alive():  # Ray's own exit hook stops the local cluster
            raise RuntimeError(f"the Ray measurement did not finish in {timeout_s:g} s; give "
                               "--shard-overhead-s and --startup-s to skip it")
        ray.shutdown()
    if "error" in box:
        raise RuntimeError(f"the Ray measurement failed: {box['error']!r}") from box["error"]
    s = box["summary"]
    if s.shards_run != num_shards:
        raise RuntimeError(f"expected {num_shards} shards to run, got {s.shards_run}")
    overhead = (s.seconds - s.startup_seconds - s.shard_seconds) / s.shards_run
    return RayCost(shard_overhead_s=max(0.0, overhead), startup_s=s.startup_seconds,
                   source=f"measured here: run_inference, 1 actor x 1 CPU, {num_shards} "
                          f"one-image shards, wall {s.seconds:.2f} s, startup "
                          f"{s.startup_seconds:.2f} s, workers' shard time "
                          f"{s.shard_seconds:.2f} s")


def scaling_table(per_image: dict[str, float], ray_cost: RayCost, shard_size: int,
                  num_images: int) -> list[dict[str, Any]]:
    """Wall seconds per GPU count and estimate, with speed-up and efficiency against 1 GPU."""
    rows = []
    for gpus in GPU_COUNTS:
        row: dict[str, Any] = {"gpus": gpus}
        for name, image_s in per_image.items():
            wall = ray_cost.startup_s + makespan(num_images, shard_size, image_s,
                                                 ray_cost.shard_overhead_s, gpus)
            row[f"{name}_s"] = wall
        rows.append(row)
    for row in rows:
        row["speedup"] = rows[0]["recorded_s"] / row["recorded_s"]
        row["efficiency"] = row["speedup"] / row["gpus"]
    return rows


def print_report(r: dict[str, Any]) -> None:
    """The assumptions, the pass table and the scaling tables as Markdown."""
    gpu, ray_cost = r["recorded_gpu"], r["ray_cost"]
    height, width = r["image_hw"]
    print(f"WIDER FACE val, {r['num_images']} images taken as {width}x{height}, official "
          f"multi-scale test; GPU inputs recorded on {gpu['device']}: 640x640 forward "
          f"{gpu['forward_640_s'] * 1e3:.1f} ms, detect {gpu['detect_s']:.2f} s, "
          f"detect_multiscale {gpu['multiscale_s']:.2f} s, voting {gpu['vote_s']:.2f} s, "
          f"ShardWorker {gpu['shard_worker_images_per_s']:.1f} images/s. Ray: "
          f"{ray_cost['shard_overhead_s'] * 1e3:.1f} ms per shard, start-up "
          f"{ray_cost['startup_s']:.1f} s ({ray_cost['source']}). Shard size "
          f"{r['shard_size']}; data loading overlapped; one actor per GPU.\n")
    print("| pass | scale | flip | input HxW | Mpx | forward ms (pixel-scaled) |")
    print("|---:|---:|---|---|---:|---:|")
    for i, p in enumerate(r["passes"], 1):
        h, w = p["input_hw"]
        print(f"| {i} | {p['scale']:g} | {'yes' if p['flip'] else ''} | {h}x{w} "
              f"| {p['pixels'] / 1e6:.2f} | {p['forward_s'] * 1e3:.1f} |")
    total = sum(p["pixels"] for p in r["passes"])
    print(f"\n{total / 1e6:.2f} Mpx per image = {total / (height * width):.2f}x the image; "
          "per-image seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in r["per_image_s"].items())
          + " (lower: pixel-scaled forwards + voting; upper: + per-pass post-processing "
          "from the recorded detect; recorded: detect_multiscale as measured)\n")
    print("| GPUs | lower (min) | upper (min) | recorded (min) | images/s (recorded) "
          "| speed-up | efficiency |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in r["scaling"]:
        print(f"| {row['gpus']} | {row['lower_s'] / 60:.1f} | {row['upper_s'] / 60:.1f} "
              f"| {row['recorded_s'] / 60:.1f} | {r['num_images'] / row['recorded_s']:.1f} "
              f"| {row['speedup']:.2f} | {row['efficiency']:.2f} |")
    print(f"\nShard size at {GPU_COUNTS[-1]} GPUs (recorded per-image cost): "
          + ", ".join(f"K={k}: {v / 60:.1f} min" for k, v in r["shard_sizes_at_max"].items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shard-size", type=int, default=64, help="images per shard (K)")
    parser.add_argument("--images", type=int, default=WIDER_VAL_IMAGES)
    parser.add_argument("--ray-shards", type=int, default=24,
                        help="one-image shards of the Ray measurement")
    parser.add_argument("--ray-timeout-s", type=float, default=300.0,
                        help="give up the Ray measurement after this many seconds")
    parser.add_argument("--shard-overhead-s", type=float, default=None,
                        help="use this Ray cost per shard instead of measuring it")
    parser.add_argument("--startup-s", type=float, default=None,
                        help="use this start-up instead of measuring it")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.shard_size < 1 or args.images < 1:
        parser.error("--shard-size and --images must be >= 1")
    if (args.shard_overhead_s is None) != (args.startup_s is None):
        parser.error("give both --shard-overhead-s and --startup-s, or neither")
    gpu = RecordedGpu()
    height, width = TYPICAL_HW
    passes = pass_pixels(height, width)
    for p in passes:
        p["forward_s"] = gpu.forward_640_s * p["pixels"] / (640 * 640)
    if args.shard_overhead_s is None:
        start = time.perf_counter()
        ray_cost = measure_ray_cost(args.ray_shards, args.ray_timeout_s)
        print(f"(Ray measurement took {time.perf_counter() - start:.1f} s; load average "
              f"{os.getloadavg()[0]:.1f})\n")
    else:
        ray_cost = RayCost(args.shard_overhead_s, args.startup_s, "given on the command line")
    per_image = per_image_seconds(passes, gpu, height, width)
    result = {"num_images": args.images, "image_hw": [height, width],
              "shard_size": args.shard_size, "recorded_gpu": asdict(gpu),
              "ray_cost": asdict(ray_cost), "passes": passes, "per_image_s": per_image,
              "scaling": scaling_table(per_image, ray_cost, args.shard_size, args.images),
              "shard_sizes_at_max": {
                  k: ray_cost.startup_s + makespan(args.images, k, per_image["recorded"],
                                                   ray_cost.shard_overhead_s, GPU_COUNTS[-1])
                  for k in (8, 16, 32, 64, 128)},
              "ideal_1_gpu_s": args.images * per_image["recorded"],
              "shards": math.ceil(args.images / args.shard_size)}
    print_report(result)
    print("\n```json\n" + json.dumps({k: result[k] for k in ("per_image_s", "ray_cost",
                                                            "scaling")}, indent=1) + "\n```")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
