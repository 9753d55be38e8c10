"""NMS and box voting: ours against a per-box reference and the release's Python loop.

Inputs (seeded): 5000 detector-like boxes (clusters of near-duplicates around 60 "faces"),
5000 scattered boxes, and the ~35k boxes an untrained model gives over the 11 multi-scale
passes of a 1024x683 image (anchor-grid boxes of every pass, per-pass NMS, size filters).

Implementations, same process, same input, kept sets / voted boxes checked equal:
- ours: :func:`dsfd.nms.nms` / :func:`dsfd.nms.box_vote` (``auto``), and the dense path;
- loop: the ssd.pytorch greedy loop of the release (take the best, drop its overlaps, repeat);
- per box: one IoU at a time in Python (on the first ``--reference-boxes`` boxes only);
- for voting: the official numpy ``bbox_vote`` (a loop over leaders with ``np.delete``).

    .venv/bin/python benchmarks/bench_postprocess.py [--reference-boxes 600] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from dsfd.multiscale import multiscale_passes, size_filter, unflip  # noqa: E402
from dsfd.nms import box_vote, nms  # noqa: E402
from tests.oracles.nms_reference import reference_bbox_vote, reference_nms  # noqa: E402


def clustered(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    cx, cy = rng.uniform(0, 1024, 60), rng.uniform(0, 683, 60)
    s = np.exp(rng.uniform(np.log(10), np.log(300), 60))
    k = rng.integers(0, 60, n)
    c = np.stack([cx[k], cy[k]], 1) + rng.normal(0, 0.15, (n, 2)) * s[k, None]
    wh = s[k, None] * np.exp(rng.normal(0, 0.15, (n, 2)))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], 1)
    return torch.from_numpy(boxes).float(), torch.from_numpy(rng.uniform(0, 1, n)).float()


def scattered(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 3000, (n, 2))
    wh = np.exp(rng.uniform(np.log(4), np.log(400), (n, 2)))
    boxes = np.concatenate([xy, xy + wh], 1)
    return torch.from_numpy(boxes).float(), torch.from_numpy(rng.uniform(0, 1, n)).float()


def untrained_multiscale(height: int = 683, width: int = 1024, seed: int = 0) -> torch.Tensor:
    """``[N, 5]`` boxes as an untrained model's 11 passes give them (anchor grid + noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for p in multiscale_passes(height, width):
        h, w = round(height * p.scale), round(width * p.scale)
        boxes = []
        for stride, size in zip((4, 8, 16, 32, 64, 128), (16, 32, 64, 128, 256, 512),
                                strict=True):
            gy, gx = np.meshgrid((np.arange(-(-h // stride)) + 0.5) * stride,
                                 (np.arange(-(-w // stride)) + 0.5) * stride, indexing="ij")
            n = gx.size
            bw = size / np.sqrt(1.5) * np.exp(rng.normal(0, 0.2, n))
            bh = size * np.sqrt(1.5) * np.exp(rng.normal(0, 0.2, n))
            cx = gx.ravel() + rng.normal(0, 0.1, n) * size
            cy = gy.ravel() + rng.normal(0, 0.1, n) * size
            boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1))
        b = torch.from_numpy(np.concatenate(boxes)).float()
        s = torch.from_numpy(rng.uniform(0, 1, len(b))).float()
        top = torch.topk(s, min(5000, len(s))).indices
        keep = nms(b[top], s[top], 0.3)
        d = torch.cat([b[top][keep] / p.scale, s[top][keep, None]], 1)
        out.append(size_filter(unflip(d, width) if p.flip else d, p.keep))
    return torch.cat(out)


def loop_nms(boxes: torch.Tensor, scores: torch.Tensor, thresh: float) -> list[int]:
    """The release's (ssd.pytorch) greedy loop: best remaining box, drop its overlaps."""
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    idx = torch.sort(scores, stable=True).indices  # ascending: the best is last
    keep = []
    while idx.numel() > 0:
        i = int(idx[-1])
        keep.append(i)
        idx = idx[:-1]
        xx1, yy1 = x1[idx].clamp(min=float(x1[i])), y1[idx].clamp(min=float(y1[i]))
        xx2, yy2 = x2[idx].clamp(max=float(x2[i])), y2[idx].clamp(max=float(y2[i]))
        inter = (xx2 - xx1).clamp(min=0) * (yy2 - yy1).clamp(min=0)
        iou = inter / (area[idx] - inter + area[i])
        idx = idx[iou <= thresh]
    return keep


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def nms_rows(ref_boxes: int) -> list[dict[str, Any]]:
    rows = []
    for label, (b, s) in (("5000 clustered", clustered(5000, 0)),
                          ("5000 scattered", scattered(5000, 0))):
        ours_s, ours = timed(lambda b=b, s=s: nms(b, s, 0.3).tolist())
        dense_s, dense = timed(lambda b=b, s=s: nms(b, s, 0.3, method="dense").tolist())
        loop_s, loop = timed(lambda b=b, s=s: loop_nms(b, s, 0.3))
        sb, ss = b[:ref_boxes], s[:ref_boxes]
        sub_s, _ = timed(lambda sb=sb, ss=ss: nms(sb, ss, 0.3))
        ref_s, ref = timed(lambda sb=sb, ss=ss: reference_nms(sb.double().numpy(),
                                                            ss.double().numpy(), 0.3))
        same = ours == dense and nms(sb, ss, 0.3).tolist() == ref
        rows.append({"input": label, "kept": len(ours), "ours_s": ours_s, "dense_s": dense_s,
                     "loop_s": loop_s, "loop_ratio": loop_s / ours_s,
                     "per_box_boxes": ref_boxes, "per_box_s": ref_s,
                     "per_box_ratio": ref_s / sub_s, "identical": same,
                     "loop_same_kept_set": ours == loop})
        print(f"| NMS {label} | {len(ours)} | {ours_s * 1e3:.1f} | {dense_s * 1e3:.1f} | "
              f"{loop_s * 1e3:.1f} ({loop_s / ours_s:.1f}x) | {ref_s * 1e3:.0f} on "
              f"{ref_boxes} ({ref_s / sub_s:.0f}x) | {same} |", flush=True)
    return rows


def vote_row() -> dict[str, Any]:
    d = untrained_multiscale()
    ours_s, ours = timed(lambda: box_vote(d))
    dense_s, dense = timed(lambda: box_vote(d, method="dense"))
    ref_s, ref = timed(lambda: reference_bbox_vote(d.double().numpy()))
    same = torch.equal(ours, dense) and bool(np.allclose(ours.numpy(), ref, rtol=1e-6,
                                                         atol=1e-4))
    print(f"| box voting, {len(d)} multi-scale boxes | {len(ours)} | {ours_s * 1e3:.1f} | "
          f"{dense_s * 1e3:.1f} | official numpy loop {ref_s * 1e3:.0f} "
          f"({ref_s / ours_s:.1f}x) | - | {same} |", flush=True)
    return {"input": f"{len(d)} multi-scale boxes", "voted": len(ours), "ours_s": ours_s,
            "dense_s": dense_s, "official_s": ref_s, "official_ratio": ref_s / ours_s,
            "identical": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-boxes", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"NMS (IoU > 0.3) and box voting, {args.threads} thread(s), times in ms\n")
    print("| task | kept | ours (auto) | ours dense path | release loop (ratio) | "
          "per box (ratio) | identical |")
    print("|---|---:|---:|---:|---:|---:|---|")
    start = time.perf_counter()  # the compiled loop: compiled (or loaded) once per process
    nms(*clustered(50, 1), 0.3)
    box_vote(untrained_multiscale()[:50])
    print(f"(first call of the compiled loop, once per process: "
          f"{time.perf_counter() - start:.2f} s)", file=sys.stderr)
    result = {"nms": nms_rows(args.reference_boxes), "vote": vote_row()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
