"""``dsfd eval wider``: WIDER FACE val AP (easy/medium/hard) and PR curves.

What the official tool prints (missing files, invalid formats) goes to stdout, as the tool
prints it; our own warnings go to stderr, one line each: the number of annotated images without
a prediction, and per file the boxes of zero or negative width or height (evaluated as the tools
evaluate them). A ``nan``/``inf`` score or coordinate is refused (exit 1, file and line).

``--bootstrap N [--seed S]`` adds a 95% interval to each AP (images resampled, the score
normalisation held fixed: :mod:`reports.wider.bootstrap`) and ``--compare RUN_B`` the paired
difference AP(--pred) - AP(RUN_B) with its interval and p-value; both go to the JSON under the
new key ``bootstrap`` (the existing keys and the printed AP lines are unchanged).

``--pred``, ``--compare`` and ``--gt`` may be object-storage URIs (``s3://bucket/run``); a
missing run or a store that refuses the request is a one-line error naming the URI.

Loads neither torch nor Ray: only numpy, scipy (the .mat files), pyarrow (run directories) and,
with ``--plot``, matplotlib.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.common import CommandError, add_bootstrap_arguments, check_bootstrap_arguments

if TYPE_CHECKING:
    from reports.wider import WiderResult


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pred", required=True,
        help="run directory (Parquet) or folder of EVENT/NAME.txt files; a local path or a URI "
        "(s3://bucket/run)"
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
    add_bootstrap_arguments(
        parser,
        interval_help="also print a 95%% bootstrap interval per setting from N image "
        "resamplings (1000 is usual; the AP printed above is unchanged)",
        compare_help="with --bootstrap: paired bootstrap of AP(--pred) - AP(RUN_B) on the same "
        "images",
    )


def _write_json(path: str, doc: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    """Evaluate (:func:`reports.wider.evaluate_run`), print, write the JSON and the plot; a
    store that refuses an input is one line naming it."""
    from pipeline.storage import StorageError

    try:
        return _evaluate(args)
    except StorageError as exc:  # access denied, no bucket, store unreachable
        raise CommandError(str(exc)) from None


def _check_folder(option: str, text: str) -> None:
    """Refuse, in one line, a ``text`` (a local path or an object-storage URI) that is no
    folder or prefix: a file, nothing, or a missing bucket."""
    from pipeline.storage import location, missing_reason

    where = location(text)
    if where.is_dir():
        return
    reason = "not a folder" if where.is_file() else missing_reason(where)
    raise CommandError(f"{option} {text}: {reason}")


def _evaluate(args: argparse.Namespace) -> int:
    from pipeline.storage import location
    from reports.wider import WiderPortCrash, evaluate_run

    _check_folder("--pred", args.pred)
    _check_bootstrap_args(args)
    extra: dict | None = None
    try:
        if args.bootstrap is None:
            result = evaluate_run(args.pred, args.gt, args.flavour, attributes=args.attributes,
                                  target_precision=args.precision)
        else:
            result, extra = _evaluate_with_bootstrap(args)
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
    if extra is not None:
        _print_bootstrap(result, extra)
    if result.attributes is not None:
        _print_breakdown(result.attributes)
    if args.json:
        doc = result.to_json()
        if extra is not None:
            doc["bootstrap"] = extra
        _write_json(args.json, doc)
    if args.plot:
        from reports.figures import save_figure
        from reports.figures.wider_pr import plot_wider_pr

        fig, _ = plot_wider_pr({args.label or location(args.pred).name: result})
        for path in save_figure(fig, args.plot):
            print(f"wrote {path}")
    return 0


def _check_bootstrap_args(args: argparse.Namespace) -> None:
    """``--bootstrap N`` needs N >= 1; ``--compare`` needs ``--bootstrap`` and a folder."""
    check_bootstrap_arguments(args)
    if args.compare is not None:
        _check_folder("--compare", args.compare)


def _evaluate_with_bootstrap(args: argparse.Namespace) -> tuple[WiderResult, dict]:
    """The official result (predictions read and evaluated once, as without ``--bootstrap``,
    keeping each image's tables on the way) and the ``bootstrap`` entry of the JSON document:
    the intervals and, with ``--compare``, the paired differences (intervals as [lo, hi], NaN
    as null)."""
    import numpy as np

    from reports.wider import evaluate_run, load_ground_truth, load_predictions
    from reports.wider.bootstrap import (
        BootstrapCollector,
        bootstrap_interval,
        bootstrap_state,
        paired_bootstrap,
    )

    gt = load_ground_truth(args.gt)
    pred = load_predictions(args.pred, gt, args.flavour)
    collector = BootstrapCollector(len(gt), args.flavour)
    result = evaluate_run(pred, gt, args.flavour, attributes=args.attributes,
                          target_precision=args.precision, per_image=collector.add)
    state = collector.state()
    point = state.point_estimate()
    if not all(np.array_equal(point[s], result.ap[s], equal_nan=True) for s in result.ap):
        raise CommandError(f"internal error: per-image tables give {point}, not {result.ap}")
    level = 0.95
    intervals = bootstrap_interval(state, args.bootstrap, seed=args.seed, level=level)
    doc: dict = {
        "replicates": args.bootstrap,
        "seed": args.seed,
        "level": level,
        "resampled": "images",
        "held_fixed": "score normalisation (the point estimate's bounds)",
        "intervals": {s: [_null(lo), _null(hi)] for s, (lo, hi) in intervals.items()},
    }
    if args.compare is not None:
        state_b = bootstrap_state(load_predictions(args.compare, gt, args.flavour), gt)
        paired = paired_bootstrap(state, state_b, args.bootstrap, seed=args.seed, level=level)
        doc["compare"] = {
            "run_b": str(args.compare),
            "ap_b": {s: _null(v) for s, v in state_b.point_estimate().items()},
            "diff": {
                s: {"diff": _null(d["diff"]), "interval": [_null(x) for x in d["interval"]],
                    "p_value": _null(d["p_value"])}
                for s, d in paired.items()
            },
        }
    return result, doc


def _null(x: float) -> float | None:
    return None if x != x else float(x)  # NaN -> null


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "nan" if x is None else format(x, spec)


def _print_bootstrap(result: WiderResult, doc: dict) -> None:
    """Each AP with its interval (``hard 0.8161 [0.8012, 0.8297]``) and the paired
    differences."""
    pct = f"{doc['level'] * 100:g}%"
    print(
        f"{pct} bootstrap intervals ({doc['replicates']} replicates, seed {doc['seed']}; "
        "images resampled, score normalisation fixed)"
    )
    for s, ap in result.ap.items():
        lo, hi = doc["intervals"][s]
        print(f"  {s:<7} {ap:.4f} [{_fmt(lo)}, {_fmt(hi)}]")
    if "compare" in doc:
        cmp = doc["compare"]
        print(f"paired bootstrap: AP(--pred) - AP({cmp['run_b']}), {pct} interval, p-value")
        for s, d in cmp["diff"].items():
            lo, hi = d["interval"]
            print(
                f"  {s:<7} {_fmt(d['diff'], '+.4f')} [{_fmt(lo, '+.4f')}, {_fmt(hi, '+.4f')}] "
                f"p={_fmt(d['p_value'], '.3g')}  (B: {_fmt(cmp['ap_b'][s])})"
            )


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
