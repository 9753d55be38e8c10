"""Peak memory of one detector worker running a shard of large images with ``--max-size``.

A worker should hold what one batch needs, not every full-resolution image of its shard. This
runs :class:`pipeline.actors.ShardWorker` in this process (no Ray) over one shard of N large
JPEGs (a gradient, 6000x4000 by default) with ``max_size``, and samples the process's RSS
every 10 ms. It prints the peak above the RSS before the shard, in GB, and the size of one
decoded image for scale::

    .venv/bin/python benchmarks/bench_shard_memory.py [--images 16] [--size 6000x4000]
        [--max-size 2048] [--multiscale]

Run it in a checkout of an older version to compare (it adapts to the older worker API).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _images(folder: Path, count: int, width: int, height: int) -> list[Path]:
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([(x * 255 // width), (y * 255 // height), ((x + y) % 256)], axis=2)
    first = folder / "img000.jpg"
    Image.fromarray(pixels.astype(np.uint8)).save(first, quality=90)
    paths = [first]
    for k in range(1, count):
        path = folder / f"img{k:03d}.jpg"
        os.link(first, path)
        paths.append(path)
    return paths


def _worker(model: str, max_size: int, multiscale: bool, out: Path) -> tuple[object, object]:
    """A ShardWorker and a ``process(shard)`` callable, for the current or the older API."""
    from pipeline.actors import ShardWorker, WorkerSettings

    settings = WorkerSettings(model=model, max_size=max_size, multiscale=multiscale,
                              batch_size=1, decode_threads=2, num_threads=1)
    try:
        from pipeline.rundir import RunDir

        run = RunDir.open_for_writing(out)
        writer = run.begin({"config": {"bench": True}})
        worker = ShardWorker(settings, writer)
        return worker, worker.process
    except (ImportError, AttributeError, TypeError):
        worker = ShardWorker(settings, str(out))  # type: ignore[arg-type]
        return worker, lambda shard: worker.process(shard, "bench")  # type: ignore[call-arg]


def measure(count: int, width: int, height: int, max_size: int, multiscale: bool) -> float:
    """Peak RSS above the start of the shard, in bytes."""
    from pipeline.datasets.manifest import ManifestEntry
    from pipeline.shards import iter_shards

    with tempfile.TemporaryDirectory(prefix="dsfd-mem-") as tmp:
        paths = _images(Path(tmp), count, width, height)
        entries = [ManifestEntry(p.stem, str(p)) for p in paths]
        shard = next(iter_shards(iter(entries), count))
        worker, process = _worker("vgg16", max_size, multiscale, Path(tmp) / "run")
        proc = psutil.Process()
        base = proc.memory_info().rss
        peak = [base]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            process(shard)  # type: ignore[operator]
        finally:
            done.set()
            sampler.join()
        return float(peak[0] - base)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", default="6000x4000", help="WIDTHxHEIGHT")
    parser.add_argument("--max-size", type=int, default=2048)
    parser.add_argument("--multiscale", action="store_true")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    import torch

    torch.set_num_threads(1)
    peak = measure(args.images, width, height, args.max_size, args.multiscale)
    one = width * height * 3
    print(f"shard of {args.images} {width}x{height} JPEGs, --max-size {args.max_size}"
          f"{' --multiscale' if args.multiscale else ''}: peak worker RSS +{peak / 1e9:.2f} GB "
          f"({peak / one:.1f} decoded images of {one / 1e9:.3f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
