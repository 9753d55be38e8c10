"""Driver memory and planning time of ``manifest:`` datasets at 10k, 100k and 1M rows.

Planning is what the driver does before and while it hands shards to the workers: open the
dataset, ``describe()`` it, and stream ``iter_shards(source.iter_manifest(), 64)`` through the
running manifest digest (what ``RunDir.prepare`` and the runner's ``_stream`` each do once).
Each case runs in a fresh child process and reports:

- ``plan s``: wall time of one planning pass (no tracing);
- ``traced peak``: ``tracemalloc`` peak of Python allocations during a second pass;
- ``RSS +``: peak RSS of the child during the timed pass (sampled every 5 ms) above its RSS
  before it (Arrow's buffers included; the warm-up pass ran before);
- ``x list``: planning time relative to a ``list:`` file of the same paths (the baseline,
  planned in the same way by the same script).

The images are fake (paths that do not exist; for ``embedded`` a 64-byte payload per row, as
planning never reads the bytes): the point is the driver, not detection::

    .venv/bin/python benchmarks/bench_manifest.py [--sizes 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SHARD_SIZE = 64
KINDS = ("list", "parquet", "csv", "jsonl", "parquet-folder", "embedded")


def _paths(rows: int) -> list[str]:
    return [f"images/{i // 1000:04d}/img_{i:07d}.jpg" for i in range(rows)]


def write_manifest(kind: str, rows: int, folder: Path) -> tuple[str, dict[str, str]]:
    """Write a manifest of ``rows`` fake images; return its spec and options."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = _paths(rows)
    if kind == "list":
        (folder / "m.txt").write_text("\n".join(paths) + "\n")
        return f"list:{folder / 'm.txt'}", {}
    if kind == "parquet":
        pq.write_table(pa.table({"path": paths}), folder / "m.parquet")
        return f"manifest:{folder / 'm.parquet'}", {}
    if kind == "csv":
        (folder / "m.csv").write_text("path\n" + "\n".join(paths) + "\n")
        return f"manifest:{folder / 'm.csv'}", {}
    if kind == "jsonl":
        (folder / "m.jsonl").write_text("".join(json.dumps({"path": p}) + "\n" for p in paths))
        return f"manifest:{folder / 'm.jsonl'}", {}
    if kind == "parquet-folder":
        parts = folder / "parts"
        parts.mkdir()
        step = max(1, rows // 16)
        for k, start in enumerate(range(0, rows, step)):
            pq.write_table(pa.table({"path": paths[start:start + step]}),
                           parts / f"part-{k:03d}.parquet")
        return f"manifest:{parts}", {}
    if kind == "embedded":
        payload = pa.array([{"bytes": b"\xff" * 64, "path": p} for p in paths])
        pq.write_table(pa.table({"image": payload}), folder / "hf.parquet",
                       row_group_size=10_000)
        return f"manifest:{folder / 'hf.parquet'}", {"path_column": "image"}
    raise ValueError(f"unknown kind {kind!r}")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def plan(spec: str, options: dict[str, str]) -> int:
    """One planning pass; returns the number of images."""
    from pipeline.datasets import open_dataset
    from pipeline.shards import ManifestDigest, iter_shards

    source = open_dataset(spec, options)
    source.describe()
    digest = ManifestDigest()
    for shard in iter_shards(source.iter_manifest(), SHARD_SIZE):
        digest.update(shard)
    return digest.num_images


def _child(spec: str, options: dict[str, str], queue: Any) -> None:
    import pyarrow  # noqa: F401  (imports before the RSS baseline)

    import pipeline.datasets  # noqa: F401

    plan(spec, options)  # warm: imports and first-use caches
    rss_before = peak_rss = _rss_bytes()
    running = True

    def sample() -> None:
        nonlocal peak_rss
        while running:
            peak_rss = max(peak_rss, _rss_bytes())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    images = plan(spec, options)
    seconds = time.perf_counter() - start
    running = False
    sampler.join()
    tracemalloc.start()
    plan(spec, options)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    queue.put({"images": images, "seconds": seconds, "traced_peak": traced,
               "rss_before": rss_before, "rss_peak_above": max(0, peak_rss - rss_before)})


def measure(kind: str, rows: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        spec, options = write_manifest(kind, rows, Path(tmp))
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(spec, options, queue))
        proc.start()
        result: dict[str, Any] = queue.get()
        proc.join()
    if result["images"] != rows:
        raise RuntimeError(f"{kind} {rows}: planned {result['images']} images")
    return {"kind": kind, "rows": rows, **result}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows_out = []
    print("| manifest | rows | plan s | x list | traced peak MiB | RSS + MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for rows in args.sizes:
        baseline = None
        for kind in ["list", *[k for k in args.kinds if k != "list"]]:
            r = measure(kind, rows)
            baseline = baseline or r["seconds"]
            rows_out.append(r)
            print(f"| {kind} | {rows:,} | {r['seconds']:.2f} | {r['seconds'] / baseline:.2f} | "
                  f"{r['traced_peak'] / 2**20:.2f} | {r['rss_peak_above'] / 2**20:.1f} |",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows_out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
