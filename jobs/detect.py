"""`dsfd detect IMAGE...`: detect faces in image files and print them (table or JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from jobs.cli import CommandError

DEFAULT_MODEL = "shipped"


def _width(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 4], got {text!r}") from exc
    if not 0 < value <= 4:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 4], got {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dsfd detect``."""
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="model name (vgg16, resnet50, resnet101, resnet152, release-r152; "
                             "random weights), 'shipped', a checkpoint of ours, the official "
                             "state_dict file, or release-r152:PATH. Default: the shipped small "
                             "model, trained on the synthetic benchmark only (for real photos "
                             "use release-r152:PATH)")
    parser.add_argument("--multiscale", action="store_true",
                        help="the official WIDER FACE multi-scale + flip test with box voting")
    parser.add_argument("--json", action="store_true",
                        help='print [{"image": PATH, "detections": [[x1, y1, x2, y2, score], '
                             '...]}, ...]')
    parser.add_argument("--width", type=_width, default=None, metavar="W",
                        help="channel multiplier of a model given by name (default 1.0)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available, else cpu")
    parser.add_argument("--min-score", type=float, default=0.0, metavar="S",
                        help="print only boxes scoring at least S (default: all)")


def _read_image(path: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise CommandError(f"{path}: no such image file")
    try:
        with Image.open(p) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise CommandError(f"{path}: not a readable image ({exc})") from exc


def _load(args: argparse.Namespace) -> Any:
    import torch

    import dsfd

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise CommandError("--device cuda: no CUDA device available")
    if args.width is not None:
        if args.model not in dsfd.MODEL_NAMES:
            raise CommandError("--width applies only to a model given by name")
        model = dsfd.build_model(args.model, width=args.width).to(device).eval()
    else:
        try:
            model, _ = dsfd.load_model(args.model, map_location=device)
        except (ValueError, TypeError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
    return dsfd.Detector(model, device=device)


def _print_table(results: list[tuple[str, Any]]) -> None:
    for path, dets in results:
        print(f"{path}: {len(dets)} faces")
        if len(dets):
            print(f"  {'x1':>8} {'y1':>8} {'x2':>8} {'y2':>8} {'score':>6}")
        for x1, y1, x2, y2, score in dets.tolist():
            print(f"  {x1:8.1f} {y1:8.1f} {x2:8.1f} {y2:8.1f} {score:6.3f}")


def run(args: argparse.Namespace) -> int:
    """Detect and print; exit status 0, or a one-line error."""
    images = [_read_image(p) for p in args.images]  # fail fast before loading the model
    detector = _load(args)
    results = []
    for path, image in zip(args.images, images, strict=True):
        dets = (detector.detect_multiscale(image) if args.multiscale
                else detector.detect([image])[0])
        results.append((path, dets[dets[:, 4] >= args.min_score]))
    if args.json:
        payload = [{"image": path, "detections": [[float(v) for v in row] for row in dets]}
                   for path, dets in results]
        json.dump(payload, sys.stdout)
        sys.stdout.write("\n")
    else:
        _print_table(results)
    return 0
