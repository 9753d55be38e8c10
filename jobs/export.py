"""``dsfd export KIND RUN_DIR --out OUT [--min-score S]``: a run's detections in a label or
submission format, one ``KIND`` per exporter of :mod:`pipeline.exports` (coco, wider, yolo).

The boxes are written as detected (a benchmark submission keeps what the detector found),
except by ``yolo``, which always clips them to the image (normalised coordinates outside
``[0, 1]`` are invalid there). ``OUT`` may be new or an earlier export of the same kind; the
exporter refuses anything else before writing, and its files appear only complete. Loads
neither torch nor Ray. ``RUN_DIR`` and ``OUT`` may be object-storage URIs (``s3://``,
``gs://``; see :mod:`pipeline.storage`).
"""

from __future__ import annotations

import argparse

from jobs.common import CommandError, score
from pipeline.exports import get_exporter
from pipeline.storage import StorageError, location


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory (Parquet)")
    parser.add_argument("--out", required=True, metavar="OUT",
                        help="output file (coco) or folder (wider, yolo): new, empty, or an "
                             "earlier export of the same kind (replaced)")
    parser.add_argument("--min-score", type=score, default=0.0, metavar="S",
                        help="export detections scoring at least S (default 0: all)")


def run(args: argparse.Namespace) -> int:
    exporter = get_exporter(args.subcommand)
    try:
        if not location(args.run_dir).is_dir():
            raise CommandError(f"{args.run_dir}: not a folder")
        summary = exporter.export(args.run_dir, args.out, min_score=args.min_score, clip=False)
    except StorageError as exc:
        raise CommandError(str(exc)) from None
    print(f"wrote {summary.describe()} to {args.out}")
    return 0
