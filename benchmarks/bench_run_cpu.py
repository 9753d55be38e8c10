"""``dsfd run``'s worker on the CPU with the shipped model: the settings before this change
against today's defaults, same process, same images.

Drives :class:`pipeline.actors.ShardWorker` directly (decode threads, forward,
post-processing, Parquet write; Ray's own cost is measured by ``bench_pipeline.py``) over
the synthetic val images, round-robin, and prints images/s and the ratio per setting:

- before: ``optimize=False``, batch 1, per-image post-processing with the numpy loop + sweep
  NMS (``method="loop"`` hybrid of the previous default);
- each step alone, then batches: batches of 4 of equal sizes only (the default grouping), and
  with ``--bucket`` padded batches of 4 formed per window of 4 decoded images, grouped by
  bucket over a window of 4 batches (``pipeline.actors.GROUP_BATCHES``), and batches of 8.

    .venv/bin/python benchmarks/bench_run_cpu.py [--images 24] [--rounds 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # the worker asks Ray for its node id
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

import dsfd.nms as nms_module  # noqa: E402
import pipeline.actors as actors  # noqa: E402
from pipeline.actors import ShardWorker, WorkerSettings  # noqa: E402
from pipeline.datasets import open_dataset  # noqa: E402
from pipeline.rundir import RunDir  # noqa: E402
from pipeline.shards import Shard, iter_shards  # noqa: E402


@contextmanager
def previous_nms() -> Iterator[None]:
    """The previous CPU default of ``greedy_clusters(method="auto")``: the numpy loop while
    cheap, then the sweep (still in :mod:`dsfd.nms` as ``_auto_clusters``)."""
    original = nms_module.greedy_clusters

    def auto_before(boxes: torch.Tensor, iou_thresh: float, **kwargs: Any) -> Any:
        if kwargs.get("method", "auto") == "auto" and boxes.device.type == "cpu":
            plus_one = kwargs.get("iou_fn") is nms_module.box_iou_plus_one
            return nms_module._auto_clusters(boxes, iou_thresh, kwargs.get("inclusive", False),
                                             plus_one, kwargs.get("max_leaders"),
                                             nms_module.SPARSE_MAX_PAIRS)
        return original(boxes, iou_thresh, **kwargs)

    nms_module.greedy_clusters = auto_before  # type: ignore[assignment]
    try:
        yield
    finally:
        nms_module.greedy_clusters = original  # type: ignore[assignment]


SETTINGS: dict[str, tuple[dict[str, Any], bool, int]] = {
    # name: (WorkerSettings, previous NMS, actors.GROUP_BATCHES)
    "before (no optimize, batch 1, numpy NMS)": ({"optimize": False}, True, 1),
    "+ compiled NMS": ({"optimize": False}, False, 1),
    "+ folded BN + channels-last (batch 1)": ({"optimize": True}, False, 1),
    "batch 4, equal sizes only (no --bucket)": ({"optimize": True, "batch_size": 4}, False, 1),
    "batch 4 --bucket, per window of 4": (
        {"optimize": True, "batch_size": 4, "bucket": True}, False, 1),
    "batch 4 --bucket, window of 16 grouped": (
        {"optimize": True, "batch_size": 4, "bucket": True}, False, actors.GROUP_BATCHES),
    "batch 8 --bucket, window of 32 grouped": (
        {"optimize": True, "batch_size": 8, "bucket": True}, False, actors.GROUP_BATCHES),
}


@contextmanager
def group_batches(count: int) -> Iterator[None]:
    """``pipeline.actors.GROUP_BATCHES`` set to ``count`` for the block."""
    original = actors.GROUP_BATCHES
    actors.GROUP_BATCHES = count
    try:
        yield
    finally:
        actors.GROUP_BATCHES = original


def run_shard(root: Path, name: str, shard: Shard, settings: dict[str, Any],
              threads: int) -> float:
    with RunDir.open_for_writing(root / name.split(" ")[0], restart=True) as run:
        worker = ShardWorker(WorkerSettings(model="shipped", num_threads=threads, **settings),
                             run.begin({"config": {}}))
        try:
            worker.process(Shard(shard.index, shard.entries[:2], shard.digest))  # warm-up
            start = time.perf_counter()
            worker.process(shard)
            return len(shard.entries) / (time.perf_counter() - start)
        finally:
            worker.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    from pipeline.synthetic import SynthConfig, generate_benchmark

    with tempfile.TemporaryDirectory(prefix="bench-run-cpu-") as tmp:
        root = Path(tmp)
        generate_benchmark(root / "synth", SynthConfig(seed=0, num_val=args.images,
                                                       num_train=0, num_fddb=0))
        source = open_dataset(f"synthetic:{root / 'synth'}:val")
        shard = next(iter_shards(source.iter_manifest(), args.images))
        rates: dict[str, list[float]] = {name: [] for name in SETTINGS}
        for _ in range(args.rounds):  # round-robin: load from other processes hits all alike
            for name, (settings, before, group) in SETTINGS.items():
                with group_batches(group), previous_nms() if before else nullcontext():
                    rates[name].append(run_shard(root, f"r{len(rates[name])}-{name}",
                                                 shard, settings, args.threads))
    base = statistics.median(rates[next(iter(SETTINGS))])
    print(f"ShardWorker, shipped model, {args.images} synthetic val images, {args.threads} "
          f"thread(s), median of {args.rounds} round-robin rounds\n")
    print("| setting | images/s | ratio to before |")
    print("|---|---:|---:|")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"| {name} | {rate:.2f} | {rate / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
