"""Run every benchmark table: Markdown to stdout, JSON and Markdown to ``benchmarks/results``.

Each benchmark is its own script, run in a child process (so one failure does not stop the
others); the aggregator records the machine (CPU model, cores, torch/numpy versions, thread
settings, load average) beside the tables.

    .venv/bin/python -m benchmarks [--quick] [--only forward postprocess ...]

The full set writes ``results/latest.{md,json}``; a subset (``--only``) writes
``results/partial.{md,json}`` and leaves the full set as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"

# name -> (script, arguments, arguments with --quick)
TABLES: dict[str, tuple[str, list[str], list[str]]] = {
    "forward": ("bench_forward.py", [], ["--quick", "--repeats", "2"]),
    "postprocess": ("bench_postprocess.py", [], []),
    "wider_eval": ("bench_wider_eval.py", [], ["--subset", "100"]),
    "fddb_eval": ("bench_fddb_eval.py", [], []),
    "pipeline": ("bench_pipeline.py", [], ["--rss-sizes", "1000"]),
    "multiscale": ("bench_multiscale.py", [], ["--repeats", "1"]),
    "scaling": ("bench_scaling.py", [], []),
    "run_cpu": ("bench_run_cpu.py", [], ["--images", "8", "--rounds", "1"]),
    "onnx": ("bench_onnx.py", ["--threads", "1"], ["--threads", "1", "--images", "6",
                                                   "--rounds", "1"]),
    "bootstrap": ("bench_bootstrap.py", ["--fddb"], ["--replicates", "200"]),
    "dtype": ("bench_dtype.py", [], ["--num-images", "8", "--release-images", "2"]),
    "manifest": ("bench_manifest.py", [], ["--sizes", "10000", "100000"]),
}
TABLE_TIMEOUT_S = 1800  # a table that hangs (e.g. a stuck local Ray) must not stop the others


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    import numpy
    import torch

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "numpy": numpy.__version__,
            "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "load_average": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def run_table(name: str, quick: bool) -> dict[str, Any]:
    script, args, quick_args = TABLES[name]
    path = ROOT / script
    if not path.exists():
        return {"name": name, "status": "absent", "stdout": ""}
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(path), *(quick_args if quick else args)],
                              capture_output=True, text=True, cwd=ROOT.parent,
                              env={**os.environ, "PYTHONPATH": str(ROOT.parent)},
                              timeout=TABLE_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return {"name": name, "status": "timed out", "seconds": time.perf_counter() - start,
                "stdout": out, "stderr_tail": f"killed after {TABLE_TIMEOUT_S} s"}
    return {"name": name, "status": "ok" if proc.returncode == 0 else "failed",
            "seconds": time.perf_counter() - start, "stdout": proc.stdout,
            "stderr_tail": proc.stderr[-2000:] if proc.returncode else ""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", choices=sorted(TABLES), default=list(TABLES))
    args = parser.parse_args()
    info = machine()
    lines = ["# Benchmarks", "", "| machine | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in info.items()]
    tables = []
    for name in args.only:
        result = run_table(name, args.quick)
        tables.append(result)
        lines += ["", f"## {name} ({result['status']}, {result.get('seconds', 0):.0f} s)", "",
                  result["stdout"].rstrip(), result.get("stderr_tail", "")]
        print("\n".join(lines[-5:]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    # a subset (--only) goes beside the full set, never over it
    stem = "latest" if set(args.only) == set(TABLES) else "partial"
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{stem}.json").write_text(json.dumps({"machine": info, "tables": tables},
                                                     indent=2))
    print(f"written: {RESULTS / stem}.md and .json", flush=True)
    return 0 if all(t["status"] in ("ok", "absent") for t in tables) else 1


if __name__ == "__main__":
    raise SystemExit(main())
