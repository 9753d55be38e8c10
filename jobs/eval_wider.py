"""``dsfd eval wider``: WIDER FACE val AP (easy/medium/hard) and PR curves.

What the official tool prints (missing files, invalid formats) goes to stdout, as the tool
prints it; our own warnings go to stderr, one line each: the number of annotated images without
a prediction, and per file the boxes of zero or negative width or height (evaluated as the tools
evaluate them). A ``nan``/``inf`` score or coordinate is refused (exit 1, file and line).

Loads neither torch nor Ray: only numpy, scipy (the .mat files), pyarrow (run directories) and,
with ``--plot``, matplotlib.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.common import CommandError

if TYPE_CHECKING:
    from reports.wider import WiderResult


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pred", required=True, help="run directory (Parquet) or folder of EVENT/NAME.txt files"
    )
    parser.add_argument(
        "--gt", required=True, help="folder with the four official .mat files (or dataset root)"
    )
    parser.add_argument(
        "--flavour",
        choices=("matlab", "pyport"),
        default="matlab",
        help="matlab: official eval_tools (default); pyport: the wondervictor Python port",
    )
    parser.add_argument("--json", metavar="FILE", help="write AP, PR curves and counts as JSON")
    parser.add_argument("--plot", metavar="PREFIX", help="write PREFIX.png and PREFIX.pdf")
    parser.add_argument("--label", default=None, help="legend name in the plot (default: --pred)")
    parser.add_argument(
        "--attributes",
        action="store_true",
        help="also report recall per attribute on hard faces (precision floor --precision)",
    )
    parser.add_argument("--precision", type=float, default=0.9, help="precision floor (0.9)")


def _write_json(path: str, doc: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    """Evaluate (:func:`reports.wider.evaluate_run`), print, write the JSON and the plot."""
    from reports.wider import WiderPortCrash, evaluate_run

    if not Path(args.pred).is_dir():
        raise CommandError(f"--pred {args.pred}: not a folder")
    try:
        result = evaluate_run(args.pred, args.gt, args.flavour, attributes=args.attributes,
                              target_precision=args.precision)
    except WiderPortCrash as exc:
        if args.json:
            _write_json(args.json, {"flavour": args.flavour, "error": str(exc)})
        raise CommandError(str(exc)) from None
    for line in result.messages:
        print(line)
    _warn(result)
    print(
        f"WIDER FACE val AP ({result.flavour} flavour, {result.num_images} images, "
        f"{result.num_detections} detections)"
    )
    for setting, ap in result.ap.items():
        print(f"  {setting:<7} {ap:.17g}")
    if result.attributes is not None:
        _print_breakdown(result.attributes)
    if args.json:
        _write_json(args.json, result.to_json())
    if args.plot:
        from reports.figures import save_figure
        from reports.figures.wider_pr import plot_wider_pr

        fig, _ = plot_wider_pr({args.label or Path(args.pred).name: result})
        for path in save_figure(fig, args.plot):
            print(f"wrote {path}")
    return 0


def _warn(result: WiderResult) -> None:
    """Print the result's warnings and the count of images without a prediction on stderr."""
    for line in result.warnings:
        print(f"dsfd eval wider: warning: {line}", file=sys.stderr)
    missing = result.images_without_prediction
    if missing:
        print(
            f"dsfd eval wider: warning: {len(missing)} of {result.num_images} annotated images "
            f"have no prediction (first: {missing[0]}); they count as missed faces",
            file=sys.stderr,
        )


def _print_breakdown(b: dict) -> None:
    thr = "none" if b["threshold"] is None else f"{b['threshold']:.3f}"
    print(
        f"recall on {b['setting']} faces at threshold {thr} "
        f"(precision >= {b['target_precision']}): {b['recall']:.4f}"
    )
    for attr, groups in b["groups"].items():
        cells = [
            f"{label} {g['recall']:.3f} ({g['num_faces']})"
            for label, g in groups.items()
            if g["recall"] is not None
        ]
        print(f"  {attr:<12} " + ", ".join(cells))
