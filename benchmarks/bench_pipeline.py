"""Throughput, write share, driver memory and resume time of the Ray pipeline.

Compares, in one process and on the same generated images and model:

- the bare Detector loop (decode + detect, one image at a time) with T torch threads;
- ``run_inference`` on a local Ray with 1 actor x T threads and with T actors x 1 thread;

and reports images/s and the ratio pipeline / bare loop (steady state: from the moment the
actors have loaded the model; and end to end, start-up included), the Parquet write share of
the workers' time, the time a resume takes when every shard is done, and the driver's peak
RSS running ``dsfd run`` over a folder of 1k and of 20k tiny images (it must stay flat).

Prints a Markdown table and writes JSON. Default run: a few minutes on 2 cores::

    .venv/bin/python benchmarks/bench_pipeline.py --json benchmarks/results/pipeline.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def write_images(folder: Path, count: int, width: int, height: int, quality: int = 90) -> None:
    """``count`` deterministic JPEG pictures of ``width x height`` (smooth shapes + noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(count):
        rng = np.random.default_rng(i)
        base = np.stack([(xx * (i + 3)) % 256, (yy * (i + 5)) % 256, (xx + yy) % 256], axis=2)
        noise = rng.integers(0, 40, size=(height, width, 3))
        pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:06d}.jpg", quality=quality)


def write_tiny_images(folder: Path, count: int, side: int = 16) -> None:
    """``count`` tiny PNGs (all the same bytes, distinct names), in 100-file subfolders."""
    data = folder / "_seed.png"
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((side, side, 3), 128, np.uint8)).save(data)
    raw = data.read_bytes()
    data.unlink()
    for i in range(count):
        sub = folder / f"d{i // 100:04d}"
        if i % 100 == 0:
            sub.mkdir(exist_ok=True)
        (sub / f"t{i:06d}.png").write_bytes(raw)


def bare_loop(checkpoint: Path, paths: list[str], threads: int) -> float:
    """Images/s of decode + ``Detector.detect`` in this process with ``threads`` threads."""
    import torch

    import dsfd
    from pipeline.images import decode_image

    torch.set_num_threads(threads)
    model, _ = dsfd.load_model(str(checkpoint))
    detector = dsfd.Detector(model, device="cpu")
    detector.detect([decode_image(paths[0]).pixels])  # warm-up
    start = time.perf_counter()
    for path in paths:
        detector.detect([decode_image(path).pixels])
    return len(paths) / (time.perf_counter() - start)


def pipeline_run(folder: Path, checkpoint: Path, run_dir: Path, workers: int,
                 threads: int, shard_size: int) -> Any:
    """One ``run_inference`` over ``folder:`` on the already-initialised local Ray."""
    from pipeline.datasets import open_dataset
    from pipeline.runner import ClusterConfig, RunConfig, run_inference

    return run_inference(open_dataset(f"folder:{folder}"), run_dir,
                         RunConfig(model=str(checkpoint), shard_size=shard_size),
                         ClusterConfig(num_workers=workers, num_cpus_per_worker=threads),
                         progress=False)


def driver_peak_rss(folder: Path, checkpoint: Path, run_dir: Path, cpus: int) -> dict[str, float]:
    """Peak RSS (MiB) of the ``dsfd run`` driver process over ``folder`` (sampled at 20 Hz)."""
    import psutil

    argv = [sys.executable, "-m", "jobs.cli", "run", "--dataset", f"folder:{folder}", "--out",
            str(run_dir), "--model", str(checkpoint), "--workers", str(cpus),
            "--cpus-per-worker", "1", "--shard-size", "256"]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    handle = psutil.Process(proc.pid)
    peak = 0

    def sample() -> None:
        nonlocal peak
        while proc.poll() is None:
            try:
                peak = max(peak, handle.memory_info().rss)
            except psutil.Error:
                break
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"dsfd run failed: {err.decode()[-1000:]}")
    return {"peak_rss_mib": peak / 2**20, "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48, help="images for throughput")
    parser.add_argument("--size", default="320x240", help="their WxH")
    parser.add_argument("--width", type=float, default=0.25, help="vgg16 width multiplier")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in all (T)")
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--rss-sizes", default="1000,20000",
                        help="tiny-image folder sizes for the driver RSS check ('' skips)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    results: dict[str, Any] = {"config": vars(args) | {"json": str(args.json)},
                               "load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        checkpoint = work / "model.pt"
        _save_model(checkpoint, args.width)
        folder = work / "images"
        write_images(folder, args.images, width, height)
        paths = sorted(str(p) for p in folder.iterdir())
        results["throughput"] = _throughput(folder, paths, checkpoint, work, args)
        sizes = [int(v) for v in args.rss_sizes.split(",") if v.strip()]
        results["driver_rss"] = _rss(work, checkpoint, sizes, args.threads)
    results["load_average_at_end"] = os.getloadavg()
    _print_table(results)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _save_model(path: Path, width: float) -> None:
    import torch

    import dsfd

    torch.manual_seed(0)
    dsfd.save_checkpoint(path, dsfd.build_model("vgg16", width=width))


def _throughput(folder: Path, paths: list[str], checkpoint: Path, work: Path,
                args: argparse.Namespace) -> dict[str, Any]:
    import ray

    threads = args.threads
    before = {"bare_1_thread": bare_loop(checkpoint, paths, 1),
              f"bare_{threads}_threads": bare_loop(checkpoint, paths, threads)}
    out: dict[str, Any] = dict(before)
    ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False)
    try:
        for workers, per in ((1, threads), (threads, 1), (1, 1)):
            run_dir = work / f"run-{workers}x{per}"
            s = pipeline_run(folder, checkpoint, run_dir, workers, per, args.shard_size)
            steady = s.images_run / max(1e-9, s.seconds - s.startup_seconds)
            key = f"pipeline_{workers}x{per}"
            out[key] = {"images_per_s_steady": steady,
                        "images_per_s_end_to_end": s.images_run / s.seconds,
                        "startup_s": s.startup_seconds,
                        "write_share": s.write_seconds / max(1e-9, s.shard_seconds)}
            start = time.perf_counter()
            again = pipeline_run(folder, checkpoint, run_dir, workers, per, args.shard_size)
            out[key]["resume_all_done_s"] = time.perf_counter() - start
            assert again.shards_run == 0
    finally:
        ray.shutdown()
    # the machine may be shared: the baseline is the better of a run before and one after
    after = {"bare_1_thread": bare_loop(checkpoint, paths, 1),
             f"bare_{threads}_threads": bare_loop(checkpoint, paths, threads)}
    out["bare_runs"] = {"before": before, "after": after}
    for key in before:
        best = max(before[key], after[key])
        out[key] = best
        for name, value in out.items():
            if name.startswith("pipeline") and (key == "bare_1_thread") == name.endswith("1x1"):
                value["ratio_steady"] = value["images_per_s_steady"] / best
                value["ratio_end_to_end"] = value["images_per_s_end_to_end"] / best
    return out


def _rss(work: Path, checkpoint: Path, sizes: list[int], cpus: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for count in sizes:
        folder = work / f"tiny-{count}"
        write_tiny_images(folder, count)
        out[str(count)] = driver_peak_rss(folder, checkpoint, work / f"run-tiny-{count}", cpus)
    return out


def _print_table(results: dict[str, Any]) -> None:
    t = results["throughput"]
    bare = {k: v for k, v in t.items() if k.startswith("bare") and k != "bare_runs"}
    print(f"load average (1, 5, 15 min) at start {results['load_average_at_start']}, "
          f"at end {results['load_average_at_end']}; the baseline is the better of a bare "
          "run before and one after the pipeline runs\n")
    print("| setting | images/s steady | ratio | images/s end-to-end | ratio | start-up s "
          "| write share | resume (all done) s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, v in bare.items():
        print(f"| {name} (baseline) | {v:.2f} | 1.00 | | | | | |")
    for name, v in t.items():
        if name.startswith("pipeline"):
            print(f"| {name} (actors x threads) | {v['images_per_s_steady']:.2f} | "
                  f"{v['ratio_steady']:.2f} | {v['images_per_s_end_to_end']:.2f} | "
                  f"{v['ratio_end_to_end']:.2f} | {v['startup_s']:.1f} | "
                  f"{100 * v['write_share']:.1f}% | {v['resume_all_done_s']:.1f} |")
    if results["driver_rss"]:
        print()
        print("| tiny images in folder | driver peak RSS MiB | wall s |")
        print("|---|---|---|")
        for count, v in results["driver_rss"].items():
            print(f"| {count} | {v['peak_rss_mib']:.0f} | {v['seconds']:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
