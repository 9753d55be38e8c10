"""CPU forward time of width-scaled DSFD models against the full-width one, same process.

For each model, times ``model(x)`` (eval, no grad, one image) at every width and prints the
median of ``--repeats`` round-robin runs and its ratio to the first width (1.0) as a Markdown
table. The default run (vgg16 and resnet50 at 320x320, widths 1, 0.5, 0.25, 0.125, 3 repeats,
1 thread: stable under load from other processes) takes about a minute.

    .venv/bin/python benchmarks/bench_detector.py [--models vgg16 resnet50] [--size 320]
        [--widths 1 0.5 0.25 0.125] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from dsfd import build_model


def forward_seconds(name: str, widths: list[float], size: int, repeats: int) -> list[float]:
    """Median wall time of one no-grad forward of a ``size x size`` image, per width.

    The widths are timed round-robin (one forward each per round, after a warm-up round) so
    that load from other processes falls on all of them alike.
    """
    models = []
    for width in widths:
        torch.manual_seed(0)
        models.append(build_model(name, width=width).eval())
    x = torch.randn(1, 3, size, size)
    times: list[list[float]] = [[] for _ in widths]
    with torch.inference_mode():
        for round_ in range(repeats + 1):
            for model, spent in zip(models, times, strict=True):
                start = time.perf_counter()
                model(x)
                if round_:  # round 0 is the warm-up (allocator, kernel selection)
                    spent.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--widths", nargs="+", type=float, default=[1.0, 0.5, 0.25, 0.125])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU forward, {args.size}x{args.size}, batch 1, {args.threads} threads, "
          f"median of {args.repeats} round-robin; torch {torch.__version__}\n")
    print("| model | width | parameters | forward ms | time / width 1.0 |")
    print("|---|---:|---:|---:|---:|")
    for name in args.models:
        seconds = forward_seconds(name, args.widths, args.size, args.repeats)
        for width, spent in zip(args.widths, seconds, strict=True):
            params = sum(p.numel() for p in build_model(name, width=width).parameters())
            print(f"| {name} | {width:g} | {params:,} | {spent * 1e3:.1f} | "
                  f"{spent / seconds[0]:.3f} |", flush=True)
    print(f"\nload average after the run: {os.getloadavg()[0]:.1f} (other processes skew "
          "absolute times; the round-robin order keeps the ratios comparable)")


if __name__ == "__main__":
    main()
