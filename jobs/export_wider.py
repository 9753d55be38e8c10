"""``dsfd export wider RUN_DIR --out TXT_DIR``: the official WIDER FACE submission format.

One file per image ``TXT_DIR/EVENT/NAME.txt``: the name, the count, then ``x y w h score``
lines with ``floor(x1) floor(y1) ceil(x2 - x1) ceil(y2 - y1)`` and a 3-decimal score. The boxes
are the run's, unclipped (a benchmark submission keeps what the detector found). Ids of
folder or list runs are mapped to ``EVENT/NAME`` as ``reports.wider_export`` documents; an id
that cannot be mapped, two ids mapping to one file, or a ``TXT_DIR`` holding anything but an
earlier export stop the command before anything is written. The files appear at once (a
temporary folder renamed into place). Loads neither torch nor Ray.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.cli import CommandError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory (Parquet)")
    parser.add_argument("--out", required=True, metavar="TXT_DIR",
                        help="output folder: new, empty, or an earlier export (replaced)")


def run(args: argparse.Namespace) -> int:
    from reports.wider_export import export_wider_txt

    if not Path(args.run_dir).is_dir():
        raise CommandError(f"{args.run_dir}: not a folder")
    summary = export_wider_txt(args.run_dir, args.out, clip=False)
    print(
        f"wrote {summary.num_files} files ({summary.num_detections} detections, "
        f"{summary.num_empty} images without detections) to {args.out}"
    )
    return 0
