"""One H200 run of every throughput target (under 8 minutes): new path vs today's, per dtype.

Drives :class:`pipeline.actors.ShardWorker` directly (no Ray on the device machine; the worker
does not start one) over generated 1024x683 JPEGs with a seeded full-width ``release-r152``
(random weights, ``torch.manual_seed(0)`` as the DSFD family seeds a bare name), and prints one
table per dtype (float32, tf32, bfloat16):

* single-scale images/s end to end (decode threads, forward, post-processing, Parquet write)
  with today's defaults (folded BatchNorm + channels-last, batches of 16 (the inputs share
  one size, so no padding is needed: ``--bucket`` would only add it), batched
  post-processing on the device) against the previous path (no folding, batch 1, per-image
  post-processing) run in the same call, and their ratio;
* GPU busy share of the single-scale shard's wall time: time inside the model's forward (CUDA
  events around each call) over the wall time (a lower bound: post-processing kernels are
  not counted);
* forward TFLOP/s of the new path's model at its batch and bucket (FLOPs counted by
  ``torch.utils.flop_counter``) against a bfloat16 matmul peak measured in the same process
  (8192^3);
* multi-scale seconds per image: passes batched (batch 16: the flipped pass with its original,
  equal sizes of the shard's images together) against one pass at a time (batch 1);
* dAP per dtype against float32 on the synthetic benchmark (``benchmarks/bench_dtype.py``):
  the shipped model and the seeded release-r152, and the share of float32 boxes matched at
  IoU >= 0.99;
* then, guarded (skipped when it fails or time is short), the bfloat16 forward of one fixed
  bucket shape under ``torch.compile`` against eager.

``--dry-run`` runs every code path on the CPU at tiny sizes (4 images of 128x85 through the
full-width worker, a width-0.125 release for the accuracy part, a small matmul) so that the
script is known to work before device time is spent; its numbers mean nothing. ``--compile``
also tries ``torch.compile`` in the dry run (slow on a CPU).

    python benchmarks/device_gpu.py [--dry-run] [--compile] [--no-compile] [--out DIR]
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
    num_images: int  # single-scale images per dtype and path
    multiscale_images: int
    model_width: float  # of the seeded release-r152 in the accuracy part (the worker: 1.0)
    batch_size: int
    matmul_n: int
    synthetic_images: int
    release_images: int
    dtypes: tuple[str, ...]
    decode_threads: int
    compile: bool  # try torch.compile of one bucket shape
    seconds_before_compile: float  # skip the compile when the rest took longer


DEVICE_PLAN = Plan("cuda", 1024, 256, 4, 1.0, 16, 8192, 30, 10,
                   ("float32", "tf32", "bfloat16"), 8, True, 300.0)
DRY_PLAN = Plan("cpu", 128, 4, 2, 0.125, 2, 256, 3, 2, ("float32", "tf32", "bfloat16"), 2,
                False, 600.0)
PREVIOUS = {"optimize": False, "batch_size": 1, "bucket": False}
"""The worker settings before this round (with per-image post-processing)."""


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
def worker(plan: Plan, run_root: Path, dtype: str, multiscale: bool,
           **overrides: Any) -> Iterator[ShardWorker]:
    """A ShardWorker on the plan's device writing into a fresh run directory; ``overrides``:
    WorkerSettings fields, plus ``postprocess`` (the detector's post-processing method)."""
    postprocess = overrides.pop("postprocess", None)
    fields: dict[str, Any] = {"batch_size": plan.batch_size} | overrides
    settings = WorkerSettings(model="release-r152", multiscale=multiscale,
                              num_threads=os.cpu_count() or 1,
                              decode_threads=plan.decode_threads,
                              use_gpu=plan.device == "cuda", dtype=dtype, **fields)
    with RunDir.open_for_writing(run_root, restart=True) as run:
        w = ShardWorker(settings, run.begin({"config": {"dtype": dtype}}))
        if postprocess is not None:
            w.detector.detector.postprocess = postprocess  # type: ignore[attr-defined]
        try:
            yield w
        finally:
            w.close()


def single_scale(plan: Plan, root: Path, entries: list[ManifestEntry], dtype: str,
                 name: str, **overrides: Any) -> dict[str, float]:
    """images/s and GPU busy share of one single-scale shard (after a warm-up batch)."""
    shard = next(iter_shards(iter(entries), len(entries)))
    with worker(plan, root / f"run-{name}-{dtype}", dtype, False, **overrides) as w:
        model = w.detector.detector.model  # type: ignore[attr-defined]
        warm = max(2, w.settings.batch_size)
        w.process(Shard(shard.index, shard.entries[:warm], shard.digest))
        with ForwardTimer(model, plan.device) as timer:
            _sync(plan.device)
            start = time.perf_counter()
            w.process(shard)
            _sync(plan.device)
            wall = time.perf_counter() - start
        out = {"images_per_s": len(entries) / wall, "busy_share": timer.seconds() / wall}
        if name == "new":
            out["tflops"] = forward_tflops(w, plan)
        return out


def multiscale(plan: Plan, root: Path, entries: list[ManifestEntry], dtype: str,
               batch_size: int) -> float:
    """Seconds per image of the multi-scale test through the worker (first image warms up)."""
    shard = next(iter_shards(iter(entries[:plan.multiscale_images + 1]), len(entries)))
    with worker(plan, root / f"ms{batch_size}-{dtype}", dtype, True,
                batch_size=batch_size) as w:
        w.process(Shard(shard.index, shard.entries[:1], shard.digest))  # warm-up
        few = Shard(shard.index, shard.entries[1:], shard.digest)
        _sync(plan.device)
        start = time.perf_counter()
        w.process(few)
        _sync(plan.device)
        return (time.perf_counter() - start) / len(few.entries)


def throughput(plan: Plan, root: Path, entries: list[ManifestEntry],
               dtype: str) -> dict[str, float]:
    """Every speed figure of one dtype: the new path and the previous one."""
    new = single_scale(plan, root, entries, dtype, "new")
    old = single_scale(plan, root, entries, dtype, "previous", **PREVIOUS,
                       postprocess="per_image")
    return {"images_per_s": new["images_per_s"], "busy_share": new["busy_share"],
            "tflops": new["tflops"], "previous_images_per_s": old["images_per_s"],
            "previous_busy_share": old["busy_share"],
            "multiscale_s_per_image": multiscale(plan, root, entries, dtype, plan.batch_size),
            "multiscale_sequential_s_per_image": multiscale(plan, root, entries, dtype, 1)}


def bucket_input(w: ShardWorker, plan: Plan) -> torch.Tensor:
    """A random batch as the worker's new path feeds it: the plan's batch at the image's
    bucket (padded) size, channels-last when the model is folded."""
    from dsfd.batching import bucket_hw

    detector = w.detector.detector  # type: ignore[attr-defined]
    hw = bucket_hw((round(plan.width * 683 / 1024), plan.width), detector.stride)
    x = torch.randn(plan.batch_size, 3, *hw, device=plan.device)
    return x.contiguous(memory_format=torch.channels_last) if detector.optimized else x


def timed_forward(model: Any, x: torch.Tensor, device: str, repeats: int = 5) -> float:
    """Seconds per forward of ``model(x)`` (after one warm-up call)."""
    model(x)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        model(x)
    _sync(device)
    return (time.perf_counter() - start) / repeats


def forward_tflops(w: ShardWorker, plan: Plan) -> float:
    """Forward TFLOP/s of the worker's model at the plan's batch and bucket, in its dtype."""
    from torch.utils.flop_counter import FlopCounterMode

    detector = w.detector.detector  # type: ignore[attr-defined]
    x = bucket_input(w, plan)
    with torch.inference_mode(), detector._precision():
        with FlopCounterMode(display=False) as counter:
            detector.model(x)
        flops = counter.get_total_flops()
        return flops / timed_forward(detector.model, x, plan.device) / 1e12


def compiled_forward(plan: Plan, root: Path) -> dict[str, Any]:
    """bfloat16 (float32 on the CPU) forward of one bucket shape: eager vs ``torch.compile``
    (``dynamic=False``); ``{"error": ...}`` when compiling fails."""
    dtype = "bfloat16" if plan.device == "cuda" else "float32"
    with worker(plan, root / "compile", dtype, False) as w:
        detector = w.detector.detector  # type: ignore[attr-defined]
        x = bucket_input(w, plan)
        with torch.inference_mode(), detector._precision():
            eager = timed_forward(detector.model, x, plan.device)
            try:
                start = time.perf_counter()
                compiled = torch.compile(detector.model, dynamic=False)
                compiled(x)
                compile_s = time.perf_counter() - start
                fast = timed_forward(compiled, x, plan.device)
            except Exception as exc:  # noqa: BLE001 - optional: report and go on
                return {"dtype": dtype, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"dtype": dtype, "shape": list(x.shape), "eager_s": eager, "compiled_s": fast,
            "compile_s": compile_s, "ratio": eager / fast}


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


def print_table(plan: Plan, speed: dict[str, dict[str, float]], rows: list[dict[str, Any]],
                peak: float) -> None:
    by_dtype: dict[str, dict[str, str]] = {}
    for r in rows:
        worst = max(abs(v) for v in r["dap"].values())
        cell = f"{worst:.4f} / {100 * r['matched']:.1f}%"
        by_dtype.setdefault(r["dtype"], {})[r["model"].split(" ")[0]] = cell
    base = speed.get("float32", next(iter(speed.values())))["previous_images_per_s"]
    print(f"bf16 matmul peak (measured): {peak:.1f} TFLOP/s; {plan.num_images} images of "
          f"{plan.width}x{round(plan.width * 683 / 1024)}, multi-scale on "
          f"{plan.multiscale_images}; ratios against the previous path in the same call\n")
    print(f"| dtype | images/s new (batch {plan.batch_size}) | images/s previous (batch 1) "
          "| new / previous | new / previous float32 | GPU busy new (previous) "
          "| forward TFLOP/s (% of peak) | multi-scale s/image batched | sequential "
          "| ratio | shipped max abs dAP / matched | release max abs dAP / matched |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for dtype, s in speed.items():
        acc = by_dtype.get(dtype, {})
        print(f"| {dtype} | {s['images_per_s']:.1f} | {s['previous_images_per_s']:.1f} | "
              f"{s['images_per_s'] / s['previous_images_per_s']:.2f}x | "
              f"{s['images_per_s'] / base:.2f}x | {100 * s['busy_share']:.0f}% "
              f"({100 * s['previous_busy_share']:.0f}%) | "
              f"{s['tflops']:.1f} ({100 * s['tflops'] / peak:.0f}%) | "
              f"{s['multiscale_s_per_image']:.3f} | "
              f"{s['multiscale_sequential_s_per_image']:.3f} | "
              f"{s['multiscale_sequential_s_per_image'] / s['multiscale_s_per_image']:.2f}x | "
              f"{acc.get('shipped', '-')} | {acc.get('release-r152', '-')} |")


def print_compiled(c: dict[str, Any]) -> None:
    if "error" in c:
        print(f"\ntorch.compile ({c['dtype']}): skipped, {c['error']}")
        return
    print(f"\ntorch.compile, {c['dtype']} forward of shape {c['shape']}: eager "
          f"{c['eager_s'] * 1e3:.1f} ms, compiled {c['compiled_s'] * 1e3:.1f} ms "
          f"({c['ratio']:.2f}x; compiling took {c['compile_s']:.0f} s)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="try torch.compile of one bucket shape (default: on the GPU)")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="also write JSON here")
    args = parser.parse_args(argv)
    plan = DRY_PLAN if args.dry_run else DEVICE_PLAN
    if plan.device == "cuda" and not torch.cuda.is_available():
        print("device_gpu: no CUDA device; use --dry-run on the CPU", file=sys.stderr)
        return 2
    started = time.perf_counter()
    dtypes = runnable_dtypes(torch.device(plan.device), plan.dtypes)
    speed: dict[str, dict[str, float]] = {}
    result: dict[str, Any] = {"plan": plan.__dict__, "speed": speed}
    with tempfile.TemporaryDirectory(prefix="device-gpu-") as tmp:
        root = Path(tmp)
        entries = write_jpegs(root / "jpegs", plan.num_images, plan.width)
        peak = result["peak_tflops"] = matmul_peak_tflops(plan)
        for dtype in dtypes:
            speed[dtype] = throughput(plan, root, entries, dtype)
            print(f"{dtype}: {speed[dtype]} ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr, flush=True)
        rows = result["accuracy"] = accuracy(plan, root, dtypes)
        print_table(plan, speed, rows, peak)
        if args.out:  # written now: the optional compile may not come back
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "device_gpu.json").write_text(json.dumps(result, indent=1,
                                                                       default=str))
        want_compile = plan.compile if args.compile is None else args.compile
        if want_compile and time.perf_counter() - started < plan.seconds_before_compile:
            result["compile"] = compiled_forward(plan, root)
            print_compiled(result["compile"])
    print(f"\ntotal {time.perf_counter() - started:.0f} s", flush=True)
    if args.out:
        (Path(args.out) / "device_gpu.json").write_text(json.dumps(result, indent=1,
                                                                   default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
