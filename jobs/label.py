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
from typing import Any

from jobs.common import CommandError, score
from jobs.run import add_run_arguments, describe_summary, run_job
from pipeline.exports import exporter_names, get_exporter
from pipeline.storage import StorageError, is_remote, location, open_input

DEFAULT_MIN_SCORE = 0.5
DEFAULT_KEEP_SCORE = 0.1
DEFAULT_EXPORT = "coco"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", required=True, metavar="PATH_OR_LIST",
                        help="an image folder, a list file (one path per line), or a "
                             "folder:/list:/manifest: spec")
    add_run_arguments(parser)
    parser.add_argument("--min-score", type=score, default=None, metavar="S",
                        help=f"export boxes scoring at least S (default {DEFAULT_MIN_SCORE}, "
                             "or the score --threshold-from picks)")
    parser.add_argument("--threshold-from", metavar="EVAL_JSON", default=None,
                        help="pick --min-score from the PR curve of `dsfd eval wider --json` "
                             "(a file or an s3:// / gs:// object) "
                             "on a labelled validation run of the same model (with --precision "
                             "or --recall); recorded in run.json and the export")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--precision", type=score, default=None, metavar="P",
                        help="with --threshold-from: the lowest score reaching precision P")
    target.add_argument("--recall", type=score, default=None, metavar="R",
                        help="with --threshold-from: the highest score reaching recall R")
    parser.add_argument("--subset", choices=("easy", "medium", "hard"), default="hard",
                        help="with --threshold-from: the WIDER subset whose curve is read "
                             "(default hard: every face counts, the honest precision)")
    parser.add_argument("--export", choices=exporter_names(), default=DEFAULT_EXPORT,
                        help=f"label format written into RUN_DIR (default {DEFAULT_EXPORT})")
    # a label run stores boxes above a storage threshold (a benchmark run keeps 0.01): about
    # 750 boxes and 21 KB of Parquet per image otherwise; exports choose --min-score above it
    parser.set_defaults(keep_score=DEFAULT_KEEP_SCORE)


def images_spec(images: str) -> str:
    """``folder:PATH`` for a directory, ``list:FILE`` for a file, a ``folder:``, ``list:`` or
    ``manifest:`` spec kept as it is."""
    if images.startswith(("folder:", "list:", "manifest:")):
        return images
    if is_remote(images):  # an object-storage prefix (a folder) or object (a list file)
        try:
            where = location(images)
            kind = "folder" if where.is_dir() else "list" if where.is_file() else None
        except StorageError as exc:
            raise CommandError(f"--images {images}: {exc}") from None
        if kind is None:
            raise CommandError(f"--images {images}: no objects under this prefix")
        return f"{kind}:{images}"
    if os.path.isdir(images):
        return f"folder:{images}"
    if os.path.isfile(images):
        return f"list:{images}"
    raise CommandError(f"--images {images!r}: no such folder or list file")


def export_labels(run_dir: str, kind: str, min_score: float,
                  info: dict[str, Any] | None = None) -> str:
    """Export the run's detections with ``score >= min_score`` through the exporter ``kind``
    into its default output inside ``run_dir``, clipped to each image (boxes left without
    area dropped; the Parquet rows stay as detected); ``info`` is provenance for formats with
    a place for it (COCO ``info``); returns what was written, in words."""
    exporter = get_exporter(kind)
    out = f"{run_dir.rstrip('/')}/{exporter.default_output}" if is_remote(run_dir) \
        else os.path.join(run_dir, exporter.default_output)
    summary = exporter.export(run_dir, out, min_score=min_score, clip=True, info=info)
    return f"{summary.describe()} to {out}"


def chosen_threshold(args: argparse.Namespace) -> Any:
    """The :class:`reports.thresholds.ChosenThreshold` of ``--threshold-from``, or None."""
    if args.threshold_from is None:
        if args.precision is not None or args.recall is not None:
            raise CommandError("--precision/--recall need --threshold-from EVAL_JSON")
        return None
    if args.min_score is not None:
        raise CommandError("--min-score and --threshold-from both set the export threshold; "
                           "give one")
    if args.precision is None and args.recall is None:
        raise CommandError("--threshold-from needs a target: --precision P or --recall R")
    from reports.thresholds import threshold_from_json

    try:  # a local file or an object (s3://...), recorded as an absolute path or the URI
        where = location(args.threshold_from)
        source = str(where) if is_remote(where) else os.path.abspath(str(where))
        return threshold_from_json(open_input(str(where)), source, precision=args.precision,
                                   recall=args.recall, subset=args.subset)
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CommandError(f"--threshold-from {args.threshold_from}: {reason}") from None


def record_export(run_dir: str, kind: str, min_score: float, chosen: Any) -> None:
    """Add how the labels were exported to ``run.json`` (key ``label``: format, min_score and,
    with ``--threshold-from``, the threshold's source)."""
    from pipeline.rundir import RunDir

    run = RunDir.open_for_writing(run_dir)
    try:
        run.finish(lambda record: record.update(label={
            "export": kind, "min_score": min_score,
            "threshold_from": chosen.to_json() if chosen is not None else None}))
    finally:
        run.release()


def run(args: argparse.Namespace) -> int:
    chosen = chosen_threshold(args)
    min_score = chosen.score if chosen is not None else (
        DEFAULT_MIN_SCORE if args.min_score is None else args.min_score)
    if args.keep_score is not None and min_score < args.keep_score:
        what = (f"the threshold {chosen.score:.6g} picked by --threshold-from" if chosen
                else f"--min-score {min_score:g}")
        raise CommandError(f"{what} is below --keep-score {args.keep_score:g}: the run stores "
                           "no boxes under it" + ("; lower --keep-score" if chosen else ""))
    if chosen is not None:
        print(f"dsfd label: export threshold {chosen.describe()}", file=sys.stdout)
    summary = run_job(args, images_spec(args.images), "label")
    print(f"dsfd label: {describe_summary(summary)}", file=sys.stdout)
    record_export(args.out, args.export, min_score, chosen)
    info = {"threshold_from": chosen.to_json()} if chosen is not None else None
    print(f"dsfd label: wrote {export_labels(args.out, args.export, min_score, info)}",
          file=sys.stdout)
    return 0
