"""Detector forward on CPU at 640x480: images/s and GFLOP/s against the measured matmul peak,
and the gain of each inference setting (before/after), all in one process.

Peak: a large float32 ``torch.mm`` (``--peak-size``, default 2048) timed in the same run with
the same threads; that is what this CPU can do at best. FLOPs: 2 x convolution multiply-adds
(hooks on every ``nn.Conv2d``, counted on the ``meta`` device).

Table 1 (models): every named model at full width, batch 1, and a width-scaled one
(``--width``, default 0.25) at batch 1 and ``--batch`` (8), eager ``inference_mode``.
Table 2 (steps, on the width-scaled model of ``--step-model``): ``no_grad`` baseline, then
``inference_mode``, channels-last, folded BatchNorm (:mod:`dsfd.optimize`), threads, and
``torch.compile`` (``--compile``; its compile time is reported separately).

    .venv/bin/python benchmarks/bench_forward.py [--quick] [--compile] [--json FILE]

``--quick`` skips the full-width models (those take seconds per image here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dsfd import build_model
from dsfd.optimize import InferenceOptions, optimize_for_inference
from dsfd.registry import model_names

HEIGHT, WIDTH = 480, 640


def matmul_peak_gflops(size: int, repeats: int = 3) -> float:
    """Best GFLOP/s of a ``size x size`` float32 ``torch.mm`` (``2 * size^3`` FLOPs)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(_seconds(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def conv_flops(name: str, width: float, batch: int) -> float:
    """2 x conv multiply-adds of one forward of ``batch`` 640x480 images."""
    with torch.device("meta"):
        model = build_model(name, width=width).eval()
    total = 0

    def hook(module: nn.Module, _inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d)
        kh, kw = module.kernel_size
        total += out.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.empty(batch, 3, HEIGHT, WIDTH, device="meta"))
    for h in handles:
        h.remove()
    return 2.0 * total


def _seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    return statistics.median(_seconds(fn) for _ in range(repeats))


def model_rows(names: list[str], width: float, batch: int, repeats: int, peak: float,
               full: bool) -> list[dict[str, Any]]:
    rows = []
    cases = [(n, 1.0, 1) for n in names] if full else []
    cases += [(names[1], width, 1), (names[1], width, batch)]
    for name, w, b in cases:
        torch.manual_seed(0)
        model = build_model(name, width=w).eval()
        x = torch.randn(b, 3, HEIGHT, WIDTH)
        with torch.inference_mode():
            seconds = timed(lambda m=model, x=x: m(x), repeats if w < 1 else 1)
        flops = conv_flops(name, w, b)
        rows.append({"model": name, "width": w, "batch": b, "seconds": seconds,
                     "images_per_s": b / seconds, "gflops": flops / 1e9,
                     "gflop_per_s": flops / seconds / 1e9,
                     "fraction_of_peak": flops / seconds / 1e9 / peak})
        print(f"| {name} | {w:g} | {b} | {seconds * 1e3:.1f} | {b / seconds:.2f} | "
              f"{flops / 1e9:.1f} | {flops / seconds / 1e9:.1f} | "
              f"{flops / seconds / 1e9 / peak:.2f} |", flush=True)
    return rows


def step_rows(name: str, width: float, repeats: int, threads: int,
              use_compile: bool) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    model = build_model(name, width=width).eval()
    x = torch.randn(1, 3, HEIGHT, WIDTH)
    fused = optimize_for_inference(model, x)
    fused_cl = optimize_for_inference(model, x, InferenceOptions(channels_last=True))
    plain_cl = optimize_for_inference(model, x, InferenceOptions(fuse_batchnorm=False,
                                                                 channels_last=True))
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def no_grad(m: nn.Module, inp: torch.Tensor) -> Callable[[], Any]:
        def run() -> Any:
            with torch.no_grad():
                return m(inp)
        return run

    def infer(m: nn.Module, inp: torch.Tensor) -> Callable[[], Any]:
        def run() -> Any:
            with torch.inference_mode():
                return m(inp)
        return run

    steps: list[tuple[str, Callable[[], Any]]] = [
        ("eager no_grad (baseline)", no_grad(model, x)),
        ("inference_mode", infer(model, x)),
        ("+ channels_last", infer(plain_cl, x_cl)),
        ("+ fused conv+BN", infer(fused, x)),
        ("+ fused conv+BN + channels_last", infer(fused_cl, x_cl)),
    ]
    rows: list[dict[str, Any]] = []
    for label, _fn in steps:  # round-robin so that outside load falls on all alike
        rows.append({"step": label, "samples": []})
    fns = [fn for _, fn in steps]
    for fn in fns:
        fn()
    for _ in range(repeats):
        for row, fn in zip(rows, fns, strict=True):
            row["samples"].append(_seconds(fn))
    for t in sorted({1, threads}):
        torch.set_num_threads(t)
        rows.append({"step": f"fused, {t} thread(s)", "samples": [timed(infer(fused, x),
                                                                         repeats)]})
    torch.set_num_threads(threads)
    if use_compile:
        rows.append(_compile_row(fused, x, repeats))
    base = statistics.median(rows[0]["samples"])
    for row in rows:
        row["seconds"] = statistics.median(row.pop("samples"))
        row["speedup"] = base / row["seconds"]
        extra = f" (compile {row['compile_s']:.1f} s)" if "compile_s" in row else ""
        print(f"| {row['step']}{extra} | {row['seconds'] * 1e3:.1f} | {row['speedup']:.2f} |",
              flush=True)
    return rows


def _compile_row(model: nn.Module, x: torch.Tensor, repeats: int) -> dict[str, Any]:
    try:
        compiled = torch.compile(model)
        start = time.perf_counter()
        with torch.inference_mode():
            compiled(x)
        compile_s = time.perf_counter() - start

        def run() -> Any:
            with torch.inference_mode():
                return compiled(x)
        return {"step": "+ torch.compile (fused)", "compile_s": compile_s,
                "samples": [timed(run, repeats)]}
    except Exception as exc:  # noqa: BLE001 - report, do not crash the table
        print(f"torch.compile failed: {type(exc).__name__}: {str(exc)[:200]}")
        return {"step": "torch.compile: failed", "compile_s": float("nan"),
                "samples": [float("nan")]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip full-width models")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--step-model", default="resnet50")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--peak-size", type=int, default=2048)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_peak_gflops(args.peak_size)
    print(f"CPU forward at {WIDTH}x{HEIGHT}, {args.threads} threads, torch "
          f"{torch.__version__}; float32 matmul peak {peak:.1f} GFLOP/s "
          f"({args.peak_size}^3 torch.mm, same process)\n")
    print("| model | width | batch | ms / forward | images/s | GFLOP | GFLOP/s | of peak |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    names = list(model_names())
    models = model_rows(names, args.width, args.batch, args.repeats, peak, not args.quick)
    print(f"\nInference settings, {args.step_model} width {args.width:g}, batch 1 "
          f"(median of {args.repeats}, round-robin):\n")
    print("| step | ms / forward | speed-up vs baseline |")
    print("|---|---:|---:|")
    steps = step_rows(args.step_model, args.width, args.repeats, args.threads, args.compile)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peak_gflop_per_s": peak, "models": models, "steps": steps,
                       "threads": args.threads}, f, indent=2)


if __name__ == "__main__":
    main()
