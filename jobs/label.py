"""`dsfd label`: pseudo-label an image folder or list file, then export the labels.

The same pipeline as ``dsfd run`` (resumable run directory of Parquet parts) over
``folder:PATH`` or ``list:FILE``; ``--min-score`` is applied only when exporting, so one run
can be exported at several thresholds. ``--export KIND`` picks an exporter of
:mod:`pipeline.exports` (coco, wider, yolo) and writes its default output inside the run
directory (``labels.coco.json``, ``labels.wider/``, ``labels.yolo/``), with boxes clipped to
their image: pseudo-labels lie inside the image.
"""

from __future__ import annotations

import argparse
import os
import sys

from jobs.common import CommandError, score
from jobs.run import add_run_arguments, describe_summary, run_job
from pipeline.exports import exporter_names, get_exporter

DEFAULT_MIN_SCORE = 0.5
DEFAULT_KEEP_SCORE = 0.1
DEFAULT_EXPORT = "coco"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, metavar="PATH_OR_LIST",
                        help="an image folder, a list file (one path per line), or a "
                             "folder:/list: spec")
    add_run_arguments(parser)
    parser.add_argument("--min-score", type=score, default=DEFAULT_MIN_SCORE, metavar="S",
                        help=f"export boxes scoring at least S (default {DEFAULT_MIN_SCORE})")
    parser.add_argument("--export", choices=exporter_names(), default=DEFAULT_EXPORT,
                        help=f"label format written into RUN_DIR (default {DEFAULT_EXPORT})")
    # a label run stores boxes above a storage threshold (a benchmark run keeps 0.01): about
    # 750 boxes and 21 KB of Parquet per image otherwise; exports choose --min-score above it
    parser.set_defaults(keep_score=DEFAULT_KEEP_SCORE)


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
    """Export the run's detections with ``score >= min_score`` through the exporter ``kind``
    into its default output inside ``run_dir``, clipped to each image (boxes left without
    area dropped; the Parquet rows stay as detected); returns what was written, in words."""
    exporter = get_exporter(kind)
    out = os.path.join(run_dir, exporter.default_output)
    summary = exporter.export(run_dir, out, min_score=min_score, clip=True)
    return f"{summary.describe()} to {out}"


def run(args: argparse.Namespace) -> int:
    if args.keep_score is not None and args.min_score < args.keep_score:
        raise CommandError(f"--min-score {args.min_score:g} is below --keep-score "
                           f"{args.keep_score:g}: the run stores no boxes under it")
    summary = run_job(args, images_spec(args.images), "label")
    print(f"dsfd label: {describe_summary(summary)}", file=sys.stdout)
    print(f"dsfd label: wrote {export_labels(args.out, args.export, args.min_score)}",
          file=sys.stdout)
    return 0
