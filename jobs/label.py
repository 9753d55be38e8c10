"""`dsfd label`: pseudo-label an image folder or list file, then export the labels.

The same pipeline as ``dsfd run`` (resumable run directory of Parquet parts) over
``folder:PATH`` or ``list:FILE``; ``--min-score`` is applied only when exporting, so one run
can be exported at several thresholds. ``--export coco`` writes ``RUN_DIR/labels.coco.json``;
``--export wider`` writes the WIDER FACE submission text files under ``RUN_DIR/labels.wider/``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from jobs.common import CommandError
from jobs.run import add_run_arguments, describe_summary, run_job

DEFAULT_MIN_SCORE = 0.5
COCO_FILE = "labels.coco.json"
WIDER_DIR = "labels.wider"


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a score in [0, 1], got {text!r}") from exc
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"expected a score in [0, 1], got {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, metavar="PATH_OR_LIST",
                        help="an image folder, a list file (one path per line), or a "
                             "folder:/list: spec")
    add_run_arguments(parser)
    parser.add_argument("--min-score", type=_score, default=DEFAULT_MIN_SCORE, metavar="S",
                        help=f"export boxes scoring at least S (default {DEFAULT_MIN_SCORE})")
    parser.add_argument("--export", choices=("coco", "wider"), default="coco",
                        help="label format written into RUN_DIR (default coco)")


def images_spec(images: str) -> str:
    """``folder:PATH`` for a directory, ``list:FILE`` for a file, a spec kept as it is."""
    if images.startswith(("folder:", "list:")):
        return images
    if os.path.isdir(images):
        return f"folder:{images}"
    if os.path.isfile(images):
        return f"list:{images}"
    raise CommandError(f"--images {images!r}: no such folder or list file")


def export_labels(run_dir: str, kind: str, min_score: float) -> str:
    """Export the run's detections with ``score >= min_score``, clipped to each image (boxes
    left without area dropped; the Parquet rows stay as detected); returns what was written."""
    if kind == "coco":
        from pipeline.coco import export_coco

        out = os.path.join(run_dir, COCO_FILE)
        s = export_coco(run_dir, out, min_score=min_score, clip=True)
        return (f"{out} ({s.num_images} images, {s.num_annotations} faces, "
                f"{s.num_errors} unreadable images left out)")
    from reports.wider_export import export_wider_txt

    out = os.path.join(run_dir, WIDER_DIR)
    w = export_wider_txt(run_dir, out, clip=True, min_score=min_score)
    return (f"{out} ({w.num_files} files, {w.num_detections} faces, {w.num_empty} images "
            "without faces)")


def run(args: argparse.Namespace) -> int:
    summary = run_job(args, images_spec(args.images), "label")
    print(f"dsfd label: {describe_summary(summary)}", file=sys.stdout)
    print(f"dsfd label: wrote {export_labels(args.out, args.export, args.min_score)}",
          file=sys.stdout)
    return 0
