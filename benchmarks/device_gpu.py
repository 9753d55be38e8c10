"""One H200 run of the forward precisions (under 8 minutes): throughput, GPU use, accuracy.

Drives :class:`pipeline.actors.ShardWorker` directly (no Ray on the device machine) over
generated 1024x683 JPEGs with a seeded full-width ``release-r152`` (random weights,
``torch.manual_seed(0)`` as the DSFD family seeds a bare name), and prints one table:

* images/s, single scale, batch 8, per dtype (float32, tf32, bfloat16): the worker end to end
  (decode threads, forward, post-processing, Parquet write);
* seconds per image of the multi-scale test, per dtype;
* forward TFLOP/s at batch 8 (FLOPs counted by ``torch.utils.flop_counter``) against a
  measured bfloat16 matmul peak (8192^3, CUDA events);
* GPU busy share: time inside the model's forward (CUDA events around each call) over the
  wall time of the single-scale shard;
* dAP per dtype against float32 on the synthetic benchmark (``benchmarks/bench_dtype.py``):
  the shipped model (30 images) and the seeded release-r152 (10 images), and the share of
  float32 boxes matched at IoU >= 0.99.

``--dry-run`` runs every code path on the CPU at tiny sizes (4 images of 128x85 through the
full-width worker, a width-0.125 release for the accuracy part, a small matmul) so that the
script is known to work before device time is spent; its numbers mean nothing.

    python benchmarks/device_gpu.py [--dry-run] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from benchmarks.bench_dtype import (  # noqa: E402
    compare_dtypes,
    runnable_dtypes,
    subset,
    synthetic_val,
)
from pipeline.actors import ShardWorker, WorkerSettings  # noqa: E402
from pipeline.datasets.manifest import ManifestEntry  # noqa: E402
from pipeline.rundir import RunDir  # noqa: E402
from pipeline.shards import Shard, iter_shards  # noqa: E402


@dataclass(frozen=True)
class Plan:
    """Sizes of one run (the device run, or the CPU dry run)."""

    device: str
    width: int  # image width in pixels (height: 2/3 of it, as 1024x683)
    num_images: int  # single-scale images per dtype
    multiscale_images: int
    model_width: float  # of the seeded release-r152 in the accuracy part (the worker: 1.0)
    batch_size: int
    matmul_n: int
    synthetic_images: int
    release_images: int
    dtypes: tuple[str, ...]


DEVICE_PLAN = Plan("cuda", 1024, 96, 3, 1.0, 8, 8192, 30, 10,
                   ("float32", "tf32", "bfloat16"))
DRY_PLAN = Plan("cpu", 128, 4, 1, 0.125, 2, 256, 3, 2, ("float32", "tf32", "bfloat16"))


def write_jpegs(folder: Path, num_images: int, width: int) -> list[ManifestEntry]:
    """Seeded textured ``width x round(width * 2 / 3)`` JPEGs (1024x683 on the device)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    height = round(width * 683 / 1024)
    entries = []
    for i in range(num_images):
        base = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
        pixels = np.kron(base, np.ones((8, 8, 1), np.uint8))[:height, :width]
        path = folder / f"img_{i:04d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        entries.append(ManifestEntry(image_id=f"img_{i:04d}", path=str(path), width=width,
                                     height=height))
    return entries


class ForwardTimer:
    """Wraps a model's ``forward`` and sums its time (CUDA events on the GPU, else wall)."""

    def __init__(self, model: torch.nn.Module, device: str) -> None:
        self.model, self.cuda = model, device == "cuda"
        self.pairs: list[tuple[Any, Any]] = []
        self.seconds_cpu = 0.0
        self._inner = model.forward

    def __enter__(self) -> ForwardTimer:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.cuda:
                start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
                start.record()
                out = self._inner(*args, **kwargs)
                end.record()
                self.pairs.append((start, end))
                return out
            t0 = time.perf_counter()
            out = self._inner(*args, **kwargs)
            self.seconds_cpu += time.perf_counter() - t0
            return out

        self.model.forward = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self.model.forward  # back to the class's forward

    def seconds(self) -> float:
        if not self.cuda:
            return self.seconds_cpu
        torch.cuda.synchronize()
        return sum(s.elapsed_time(e) for s, e in self.pairs) / 1000.0


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@contextmanager
def worker(plan: Plan, run_root: Path, dtype: str, multiscale: bool) -> Iterator[ShardWorker]:
    """A ShardWorker on the plan's device writing into a fresh run directory."""
    settings = WorkerSettings(model="release-r152", multiscale=multiscale,
                              batch_size=plan.batch_size, num_threads=os.cpu_count() or 1,
                              decode_threads=4, use_gpu=plan.device == "cuda", dtype=dtype)
    with RunDir.open_for_writing(run_root, restart=True) as run:
        w = ShardWorker(settings, run.begin({"config": {"dtype": dtype}}))
        try:
            yield w
        finally:
            w.close()


def throughput(plan: Plan, root: Path, entries: list[ManifestEntry],
               dtype: str) -> dict[str, float]:
    """images/s and GPU busy share single-scale; seconds per image multi-scale."""
    out: dict[str, float] = {}
    shard = next(iter_shards(iter(entries), len(entries)))
    with worker(plan, root / f"run-{dtype}", dtype, multiscale=False) as w:
        model = w.detector.detector.model  # type: ignore[attr-defined]
        w.process(Shard(shard.index, shard.entries[:plan.batch_size], shard.digest))  # warm-up
        with ForwardTimer(model, plan.device) as timer:
            _sync(plan.device)
            start = time.perf_counter()
            w.process(shard)
            _sync(plan.device)
            wall = time.perf_counter() - start
        out["images_per_s"] = len(entries) / wall
        out["busy_share"] = timer.seconds() / wall
        out["tflops"] = forward_tflops(model, plan, dtype, w)
    few = Shard(shard.index, shard.entries[:plan.multiscale_images], shard.digest)
    with worker(plan, root / f"ms-{dtype}", dtype, multiscale=True) as w:
        _sync(plan.device)
        start = time.perf_counter()
        w.process(few)
        _sync(plan.device)
        out["multiscale_s_per_image"] = (time.perf_counter() - start) / len(few.entries)
    return out


def forward_tflops(model: torch.nn.Module, plan: Plan, dtype: str, w: ShardWorker) -> float:
    """Forward TFLOP/s at the plan's batch on the plan's image size, in ``dtype``."""
    from torch.utils.flop_counter import FlopCounterMode

    height = round(plan.width * 683 / 1024)
    x = torch.randn(plan.batch_size, 3, height, plan.width, device=plan.device)
    precision = w.detector.detector._precision  # type: ignore[attr-defined]
    with torch.inference_mode(), precision():
        with FlopCounterMode(display=False) as counter:
            model(x)
        flops = counter.get_total_flops()
        model(x)  # warm-up at this size
        _sync(plan.device)
        repeats = 5
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
        _sync(plan.device)
    return flops * repeats / (time.perf_counter() - start) / 1e12


def matmul_peak_tflops(plan: Plan) -> float:
    """Measured bfloat16 matmul TFLOP/s (``n x n @ n x n``, CUDA events on the GPU)."""
    n = plan.matmul_n
    a = torch.randn(n, n, device=plan.device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=plan.device, dtype=torch.bfloat16)
    a @ b
    _sync(plan.device)
    repeats = 20 if plan.device == "cuda" else 2
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(plan.device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def accuracy(plan: Plan, root: Path, dtypes: Sequence[str]) -> list[dict[str, Any]]:
    """dAP per dtype vs float32 on the synthetic val split (shipped and seeded release)."""
    import dsfd

    val = synthetic_val(root / "synth", plan.synthetic_images)
    shipped, _ = dsfd.load_model("shipped", map_location=plan.device)
    rows = compare_dtypes("shipped", shipped, val, dtypes, plan.device)
    torch.manual_seed(0)
    release = dsfd.build_model("release-r152", width=plan.model_width)
    rows += compare_dtypes("release-r152 (seed 0)", release, subset(val, plan.release_images),
                           dtypes, plan.device, inclusive=True)
    return rows


def print_table(speed: dict[str, dict[str, float]], rows: list[dict[str, Any]],
                peak: float) -> None:
    by_dtype: dict[str, dict[str, str]] = {}
    for r in rows:
        worst = max(abs(v) for v in r["dap"].values())
        cell = f"{worst:.4f} / {100 * r['matched']:.1f}%"
        by_dtype.setdefault(r["dtype"], {})[r["model"].split(" ")[0]] = cell
    print(f"bf16 matmul peak (measured): {peak:.1f} TFLOP/s\n")
    print("| dtype | images/s (1 scale, batch 8) | s/image multi-scale | forward TFLOP/s "
          "(% of peak) | GPU busy | shipped max abs dAP / matched | release max abs dAP / "
          "matched |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for dtype, s in speed.items():
        acc = by_dtype.get(dtype, {})
        print(f"| {dtype} | {s['images_per_s']:.1f} | {s['multiscale_s_per_image']:.2f} | "
              f"{s['tflops']:.1f} ({100 * s['tflops'] / peak:.0f}%) | "
              f"{100 * s['busy_share']:.0f}% | {acc.get('shipped', '-')} | "
              f"{acc.get('release-r152', '-')} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="also write JSON here")
    args = parser.parse_args(argv)
    plan = DRY_PLAN if args.dry_run else DEVICE_PLAN
    if plan.device == "cuda" and not torch.cuda.is_available():
        print("device_gpu: no CUDA device; use --dry-run on the CPU", file=sys.stderr)
        return 2
    dtypes = runnable_dtypes(torch.device(plan.device), plan.dtypes)
    speed: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="device-gpu-") as tmp:
        root = Path(tmp)
        entries = write_jpegs(root / "jpegs", plan.num_images, plan.width)
        peak = matmul_peak_tflops(plan)
        for dtype in dtypes:
            speed[dtype] = throughput(plan, root, entries, dtype)
            print(f"{dtype}: {speed[dtype]}", file=sys.stderr, flush=True)
        rows = accuracy(plan, root, dtypes)
    print_table(speed, rows, peak)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "device_gpu.json").write_text(json.dumps(
            {"plan": plan.__dict__, "peak_tflops": peak, "speed": speed, "accuracy": rows},
            indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
