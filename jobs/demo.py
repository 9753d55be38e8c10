"""`dsfd demo [--out DIR]`: the whole path on a generated benchmark, in minutes on a CPU.

Steps, each through the same code as its own subcommand:

1. ``dsfd synth``: a synthetic benchmark in the WIDER FACE and FDDB layouts;
2. ``dsfd run`` with the shipped model over WIDER val (single scale), over the first images
   of WIDER val with the official multi-scale test, and over FDDB, on one local Ray; and
   ``dsfd run --model opencv-haar`` (OpenCV's Haar cascade) over the same WIDER val images,
   the baseline the report compares the model with;
3. ``dsfd eval wider`` in both flavours and ``dsfd eval fddb`` (discrete and continuous);
4. ``dsfd anchors``: matched-anchor statistics of the train split (SSD vs IAM);
5. ``dsfd report``: ``DIR/report/index.html`` and ``report.md``, with the detectors side by
   side (``ap_table.csv``/``.tex`` with bootstrap intervals, curves as CSV, accuracy against
   speed).

Rerunning resumes: the benchmark is regenerated only when missing and finished runs are
skipped shard by shard.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from jobs.common import CommandError

DEFAULT_OUT = "demo-out"
BASELINE = "opencv-haar"  # the classical detector the demo compares the model with


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `dsfd demo`."""
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help=f"output folder (default ./{DEFAULT_OUT})")
    parser.add_argument("--model", default="shipped",
                        help="model spec (default: the shipped synthetic-trained model)")
    parser.add_argument("--images", type=int, default=80, help="WIDER val images (80)")
    parser.add_argument("--train-images", type=int, default=40,
                        help="WIDER train images, for the anchor statistics (40)")
    parser.add_argument("--fddb-images", type=int, default=40, help="FDDB images (40)")
    parser.add_argument("--multiscale-images", type=int, default=3,
                        help="val images also run with the 11-pass multi-scale test (3)")
    parser.add_argument("--workers", type=int, default=2, help="detector actors (2)")
    parser.add_argument("--bootstrap", type=int, default=200, metavar="N",
                        help="bootstrap replicates of the report's AP intervals (200; 0: none)")
    parser.add_argument("--seed", type=int, default=0)


def _steps(args: argparse.Namespace, out: Path, model: str) -> list[tuple[str, list[str]]]:
    bench, runs, evals = out / "benchmark", out / "runs", out / "eval"
    gt = bench / "wider" / "eval_tools" / "ground_truth"
    common = ["--model", model, "--workers", str(args.workers), "--shard-size", "8"]
    return [
        ("generate the synthetic benchmark",
         ["synth", "--out", str(bench), "--images", str(args.images), "--train-images",
          str(args.train_images), "--fddb-images", str(args.fddb_images), "--seed",
          str(args.seed), "--quiet"]),
        ("detect: WIDER val, single scale",
         ["run", "--dataset", f"synthetic:{bench}:val", "--out", str(runs / "wider-single"),
          *common]),
        (f"detect: WIDER val, {BASELINE}",
         ["run", "--dataset", f"synthetic:{bench}:val", "--out", str(runs / "wider-haar"),
          "--model", BASELINE, "--workers", str(args.workers), "--shard-size", "8"]),
        (f"detect: first {args.multiscale_images} WIDER val images, multi-scale",
         ["run", "--dataset", f"synthetic:{bench}:val", "--out", str(runs / "wider-multi"),
          "--multiscale", "--limit", str(args.multiscale_images), *common]),
        ("detect: FDDB",
         ["run", "--dataset", f"synthetic-fddb:{bench}", "--out", str(runs / "fddb"), *common]),
        ("evaluate WIDER (matlab flavour)",
         ["eval", "wider", "--pred", str(runs / "wider-single"), "--gt", str(gt),
          "--flavour", "matlab", "--json", str(evals / "wider_matlab.json")]),
        ("evaluate WIDER (pyport flavour)",
         ["eval", "wider", "--pred", str(runs / "wider-single"), "--gt", str(gt),
          "--flavour", "pyport", "--json", str(evals / "wider_pyport.json")]),
        ("evaluate FDDB",
         ["eval", "fddb", "--pred", str(runs / "fddb"), "--annotations", str(bench / "fddb"),
          "--sizes", str(bench / "fddb" / "originalPics"), "--out", str(evals / "fddb_")]),
        ("matched-anchor statistics",
         ["anchors", "--dataset", f"synthetic:{bench}:train", "--out", str(out / "anchors"),
          "--seed", str(args.seed)]),
        ("report",
         ["report", str(runs / "wider-single"), str(runs / "wider-haar"),
          str(runs / "wider-multi"), str(runs / "fddb"),
          "--anchors", str(out / "anchors"), "--out", str(out / "report"),
          "--name", "single-scale", "--name", BASELINE, "--name", "multi-scale",
          "--name", "fddb", *_bootstrap_args(args.bootstrap)]),
    ]


def _bootstrap_args(num_replicates: int) -> list[str]:
    """``--bootstrap N`` for `dsfd report` (none when N is 0)."""
    return ["--bootstrap", str(num_replicates)] if num_replicates > 0 else []


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from jobs.cli import main
    from jobs.common import init_ray

    out = Path(args.out).resolve()
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} exists and is not a folder")
    (out / "eval").mkdir(parents=True, exist_ok=True)
    model = args.model
    steps = _steps(args, out, model)
    if (out / "benchmark" / "synth.json").is_file():
        steps = steps[1:]  # regenerate nothing on a rerun (the runs resume)
    ray_started = init_ray(None)
    timings: list[tuple[str, float]] = []
    bar = tqdm(total=len(steps), desc="dsfd demo", unit="step", file=sys.stderr,
               disable=None, position=0)
    try:
        for title, argv in steps:
            bar.set_postfix_str(title)
            print(f"\n== {title}: dsfd {' '.join(argv)}", file=sys.stderr)
            start = time.perf_counter()
            status = main(argv)
            timings.append((title, time.perf_counter() - start))
            if status != 0:
                raise CommandError(f"step '{title}' failed (exit {status})")
            bar.update(1)
    finally:
        bar.close()
        if ray_started:
            import ray

            ray.shutdown()
    print("\nstep timings:")
    for title, seconds in timings:
        print(f"  {seconds:7.1f} s  {title}")
    print(f"report: {out / 'report' / 'index.html'}")
    return 0
