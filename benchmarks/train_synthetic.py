"""A learning run: a small DSFD trained on the synthetic benchmark, WIDER AP before and after.

In one process: generate the synthetic benchmark (unless ``--synth`` already holds one), evaluate
the untrained model (the same seeded initialisation the training starts from) on the held-out
synthetic val split with the project's WIDER evaluator (``matlab`` flavour, easy/medium/hard AP),
train with ``dsfd train`` (Ray Train, ``--workers`` data-parallel workers on the CPU by default),
evaluate the trained checkpoint the same way, and print both rows with their ratio. The trained
checkpoint (``OUT/last.pt``) loads with ``dsfd.load_model``. The exact ``dsfd train`` command is
printed and stored in ``OUT/benchmark.json`` with the results.

    .venv/bin/python benchmarks/train_synthetic.py --synth /tmp/synth --out /tmp/dsfd-small \\
        [--model resnet50] [--width 0.125] [--steps 3000] [--batch-size 8] [--image-size 320] \\
        [--workers 2] [--lr 1e-3] [--optimizer adamw] [--seed 0]

The defaults are the recipe of the shipped model (dsfd/weights/README.md) on Ray Train
workers: a backbone with batch norm and AdamW. With SGD (lr 1e-3 or 1e-2) runs of a few hundred
steps stayed on the constant-prediction plateau of the confidence loss (docs/training.md); a
1/8-width VGG16 diverges at lr 1e-2.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


def evaluate(model: Any, synth: Path, txt_dir: Path) -> dict[str, float]:
    """Detect on every synthetic val image, write official txt files, WIDER AP (matlab)."""
    import numpy as np
    from PIL import Image

    from dsfd import Detector
    from pipeline.datasets.wider import WiderDataset, format_wider_detections, split_image_id
    from reports.wider import evaluate_run

    detector = Detector(model.eval(), batch_size=1)
    dataset = WiderDataset(synth / "wider", "val")
    for entry in dataset.iter_manifest():
        with Image.open(entry.path) as im:
            dets = detector.detect([np.array(im.convert("RGB"))])[0]
        event, name = split_image_id(entry.image_id)
        path = txt_dir / event / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(format_wider_detections(name, dets[:, :4], dets[:, 4]))
    result = evaluate_run(txt_dir, synth / "wider", "matlab")
    return {k: float(v) for k, v in result.to_json(with_pr=False)["ap"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synth", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=320)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default="adamw")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-images", type=int, default=300)
    parser.add_argument("--val-images", type=int, default=100)
    args = parser.parse_args()

    import torch

    from dsfd import build_model, load_model
    from jobs.cli import main as dsfd

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    if not (args.synth / "synth.json").is_file():
        dsfd(
            [
                "synth",
                "--out",
                str(args.synth),
                "--images",
                str(args.val_images),
                "--train-images",
                str(args.train_images),
                "--fddb-images",
                "0",
                "--quiet",
            ]
        )
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(args.seed)  # the initialisation `dsfd train` starts from
    untrained = build_model(args.model, width=args.width, input_size=args.image_size)
    ap_before = evaluate(untrained, args.synth, out / "eval_untrained")

    command = [
        "train",
        "--dataset",
        f"synthetic:{args.synth.resolve()}",
        "--out",
        str(out),
        "--model",
        args.model,
        "--width",
        str(args.width),
        "--workers",
        str(args.workers),
        "--gpus-per-worker",
        str(args.gpus_per_worker),
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--image-size",
        str(args.image_size),
        "--lr",
        str(args.lr),
        "--optimizer",
        args.optimizer,
        "--checkpoint-every",
        str(max(1, args.steps // 4)),
        "--log-every",
        "10",
        "--seed",
        str(args.seed),
    ]
    print("$ dsfd " + shlex.join(command), flush=True)
    start = time.perf_counter()
    if dsfd(command) != 0:
        raise SystemExit("dsfd train failed")
    train_seconds = time.perf_counter() - start

    trained, info = load_model(str(out / "last.pt"))
    ap_after = evaluate(trained, args.synth, out / "eval_trained")
    size_mb = (out / "last.pt").stat().st_size / 1e6
    print(
        f"\ntraining: {train_seconds:.0f} s wall for {args.steps} steps; checkpoint "
        f"{out / 'last.pt'} ({size_mb:.1f} MB, step {info.extra['step']})"
    )
    print("| model | easy AP | medium AP | hard AP |")
    print("|---|---|---|---|")
    for label, ap in (("untrained (same init)", ap_before), ("trained", ap_after)):
        print(f"| {label} | {ap['easy']:.4f} | {ap['medium']:.4f} | {ap['hard']:.4f} |")
    ratios = {k: ap_after[k] / ap_before[k] if ap_before[k] > 0 else float("inf") for k in ap_after}
    print(
        "| ratio trained/untrained | "
        + " | ".join(f"{ratios[k]:.1f}x" for k in ("easy", "medium", "hard"))
        + " |"
    )
    record = {
        "command": "dsfd " + shlex.join(command),
        "train_seconds": train_seconds,
        "ap_untrained": ap_before,
        "ap_trained": ap_after,
        "checkpoint_mb": size_mb,
    }
    (out / "benchmark.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
