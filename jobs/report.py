"""`dsfd report RUN_DIR... --out REPORT_DIR`: an HTML page with figures, and a Markdown summary.

Each run is evaluated as its recorded dataset asks (WIDER FACE: AP in both flavours, PR curves,
per-attribute recall, galleries of mistakes; FDDB: ROC curves and TPR at 1000 FP). A run
directory may be an object-storage URI (``s3://bucket/run``, read in place); the report folder
``--out`` is local. Loads neither torch nor Ray.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.common import CommandError


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `dsfd report`."""
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                        help="run directories (local or s3://bucket/run), or dsfd train "
                             "output folders")
    parser.add_argument("--out", required=True, metavar="REPORT_DIR",
                        help="report folder (a local path)")
    parser.add_argument("--anchors", metavar="DIR", help="an output folder of `dsfd anchors`")
    parser.add_argument("--name", action="append", metavar="NAME",
                        help="display name of each run, in order (repeat once per run)")
    parser.add_argument("--bootstrap", type=int, default=0, metavar="N",
                        help="bootstrap replicates of the WIDER AP intervals (0: none; "
                             "1000 is usual)")


def run(args: argparse.Namespace) -> int:
    """Check the inputs, write the report, print its Markdown summary; a store that refuses a
    run directory is one line naming it."""
    from pipeline.storage import StorageError

    try:
        return _report(args)
    except StorageError as exc:  # access denied, no bucket, store unreachable
        raise CommandError(str(exc)) from None


def _report(args: argparse.Namespace) -> int:
    from pipeline.rundir import RunDir
    from pipeline.storage import is_remote
    from reports.report import write_report
    from reports.training_report import is_training_dir

    if is_remote(args.out):
        raise CommandError(f"--out {args.out}: the report folder is written locally; copy it "
                           "to the store afterwards")
    for d in args.run_dirs:
        if not is_training_dir(d):
            RunDir.open(d)  # refuses a missing folder, no run.json or a damaged one, one line
    if args.bootstrap < 0:
        raise CommandError(f"--bootstrap {args.bootstrap}: must be >= 0")
    if args.anchors and not Path(args.anchors).is_dir():
        raise CommandError(f"--anchors {args.anchors}: not a folder")
    html_path, md_path, _ = write_report(args.run_dirs, args.out, anchors_dir=args.anchors,
                                         names=args.name, bootstrap=args.bootstrap)
    sys.stdout.write(md_path.read_text())
    print(f"report: {html_path}")
    return 0
