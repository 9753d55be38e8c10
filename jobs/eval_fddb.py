"""`dsfd eval fddb`: FDDB discrete and continuous ROC, as the official program writes them.

    dsfd eval fddb --pred RUN_DIR|DET_FILE --annotations FILE_OR_FOLDS_DIR
                   --sizes IMG_DIR|SIZES_TSV [--det-format rect|ellipse]
                   [--ellipse identity|s3fd|FILE.json] --out PREFIX [--fp-budget 1000]
                   [--fit-ellipse OUT.json] [--image-ext .jpg]
                   [--bootstrap N [--seed S] [--compare RUN_B]]

Writes ``PREFIXDiscROC.txt`` and ``PREFIXContROC.txt`` (byte-identical to the official
``evaluate -r PREFIX``) and ``PREFIXfddb.json`` (the resolved settings, the TPR at the
budget and the annotated images without a prediction), and prints the TPR at the
false-positive budget for both curves; with ``--bootstrap N`` also a 95% interval of each
(images resampled, :mod:`reports.fddb.bootstrap`, from the evaluation's own per-image entries)
and, with ``--compare RUN_B``, the paired difference TPR(--pred) - TPR(RUN_B) with its interval
and p-value, in the JSON under ``bootstrap``.
Annotated images a run directory never covered count as missed faces; their number is printed
on stderr. ``--pred``, ``--compare``, ``--annotations`` and a size table may be object-storage
URIs (``s3://bucket/run``); a store that refuses one is a one-line error naming it. Loads
neither torch nor Ray.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.common import CommandError, add_bootstrap_arguments, check_bootstrap_arguments

if TYPE_CHECKING:
    from pipeline.datasets.fddb import DetFormat, FddbImage
    from reports.fddb import FddbResult
    from reports.fddb.inputs import Detections


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `dsfd eval fddb` (no heavy imports here)."""
    parser.add_argument(
        "--pred",
        required=True,
        help="run directory (Parquet detections, xyxy pixels) or an official detection file; "
        "a local path or a URI (s3://bucket/run)",
    )
    parser.add_argument(
        "--annotations",
        required=True,
        help="ellipse-list file, or an FDDB-folds folder / FDDB root (folds 1..10 in order)",
    )
    parser.add_argument(
        "--sizes",
        required=True,
        help="image folder (IMG_DIR/<image_id><ext>, e.g. originalPics) or a size table TSV "
        "(header 'name width height'); the table may be a URI (s3://...)",
    )
    parser.add_argument("--image-ext", default=".jpg", help="image extension under --sizes DIR")
    parser.add_argument(
        "--det-format",
        choices=("rect", "ellipse"),
        default="rect",
        help="detection file lines: 'x y w h score' (rect, -f 0) or 'ra rb angle cx cy score'",
    )
    parser.add_argument(
        "--ellipse",
        default="identity",
        help="rectangle -> ellipse conversion: identity (evaluate rectangles), s3fd, or a "
        "regressor JSON file",
    )
    parser.add_argument("--out", required=True, help="output prefix, as the official -r")
    parser.add_argument("--fp-budget", type=float, default=1000.0, help="FP budget for the TPR")
    parser.add_argument(
        "--fit-ellipse",
        metavar="OUT.json",
        help="fit a rectangle -> ellipse regressor on the matched pairs and save it (before "
        "evaluating; pass the same path to --ellipse to apply it)",
    )
    add_bootstrap_arguments(
        parser,
        interval_help="also print a 95%% bootstrap interval of both TPRs from N image "
        "resamplings (1000 is usual; the TPRs and ROC files are unchanged)",
        compare_help="with --bootstrap: paired bootstrap of TPR(--pred) - TPR(RUN_B) on the "
        "same images (RUN_B read and converted as --pred)",
    )


def _load_detections(spec: str, det_format: DetFormat, option: str = "--pred") -> Detections:
    """``--pred`` (or ``--compare``): a run directory (rectangles) or a detection file, a
    local path or an object-storage URI, refused in one line."""
    from pipeline.storage import location, missing_reason
    from reports.fddb.inputs import read_predictions

    pred = location(spec)
    if pred.is_dir() and det_format != "rect":
        raise CommandError("a run directory holds rectangles: use --det-format rect")
    if not pred.is_dir() and not pred.is_file():
        raise CommandError(f"{option} {missing_reason(pred)}: {pred}")
    return read_predictions(pred, det_format)


def _load_sizes(spec: str, image_ids: list[str], ext: str) -> dict[str, tuple[int, int]]:
    """``--sizes``: an image folder or a size table (local or an object-storage URI) with a
    size for every annotated image."""
    from pipeline.storage import location, missing_reason
    from reports.fddb.inputs import read_sizes

    where = location(spec)
    if not where.is_dir() and not where.is_file():
        raise CommandError(f"--sizes {missing_reason(where)}: {where}")
    return read_sizes(where, image_ids, ext)


def _note_unknown_images(detections: object, image_ids: list[str]) -> None:
    """On stderr: how many images of a run directory with detections are not annotated."""
    if not isinstance(detections, dict):
        return  # a detection file must list exactly the annotated images
    listed = set(image_ids)
    unknown = sorted(i for i, d in detections.items() if i not in listed and d.num_detections)
    if unknown:
        print(
            f"dsfd eval fddb: ignoring detections on {len(unknown)} images outside the "
            f"annotation list, e.g. {unknown[0]!r}",
            file=sys.stderr,
        )


def _note_missing_images(missing: tuple[str, ...], num_images: int) -> None:
    """On stderr: how many annotated images have no prediction (they count as missed)."""
    if missing:
        print(
            f"dsfd eval fddb: warning: {len(missing)} of {num_images} annotated images have "
            f"no prediction (first: {missing[0]}); they count as missed faces",
            file=sys.stderr,
        )


def _write_summary(
    args: argparse.Namespace,
    result: FddbResult,
    paths: tuple[Path, Path],
    bootstrap: dict | None = None,
) -> None:
    """Write ``PREFIXfddb.json``: the inputs, the result's settings, counts and TPR (discrete,
    continuous), the ROC files, and the bootstrap intervals when computed."""
    summary: dict = {
        "pred": str(args.pred),
        "annotations": str(args.annotations),
        "sizes": str(args.sizes),
        **result.to_json(with_roc=False),
        "disc_roc": str(paths[0]),
        "cont_roc": str(paths[1]),
    }
    if bootstrap is not None:
        summary["bootstrap"] = bootstrap
    summary_path = Path(str(args.out) + "fddb.json")
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _fit_ellipse(
    args: argparse.Namespace,
    annotations: list[FddbImage],
    detections: Detections,
    sizes: dict[str, tuple[int, int]],
) -> None:
    """``--fit-ellipse``: fit a rectangle -> ellipse regressor on the matched pairs, save it."""
    from reports.fddb.ellipse import fit_ellipse_regressor, matched_pairs
    from reports.fddb.inputs import index_detections

    if args.det_format != "rect":
        raise CommandError("--fit-ellipse needs rectangle detections (--det-format rect)")
    rects, ellipses = matched_pairs(annotations, index_detections(detections), sizes)
    regressor = fit_ellipse_regressor(rects, ellipses, name=Path(args.fit_ellipse).stem)
    regressor.save(args.fit_ellipse)
    print(f"fitted ellipse regressor on {len(rects)} pairs: {args.fit_ellipse}")


def _check_ellipse(args: argparse.Namespace) -> None:
    """``--ellipse`` converts rectangles: refuse it (once resolved) with ellipse detections."""
    from reports.fddb.ellipse import load_rect_to_ellipse

    if args.det_format != "rect" and load_rect_to_ellipse(args.ellipse) is not None:
        raise CommandError("--ellipse converts rectangles: use it with --det-format rect")


def run(args: argparse.Namespace) -> int:
    """Evaluate (:func:`reports.fddb.evaluate_run`), write the ROC files and the summary, and
    print the TPR at the budget; a store that refuses an input is one line naming it."""
    from pipeline.storage import StorageError

    try:
        return _evaluate(args)
    except StorageError as exc:  # access denied, no bucket, store unreachable
        raise CommandError(str(exc)) from None


def _evaluate(args: argparse.Namespace) -> int:
    from reports.fddb import evaluate_run, write_roc
    from reports.fddb.inputs import load_annotations

    check_bootstrap_arguments(args)
    annotations = load_annotations(args.annotations)
    image_ids = [a.image_id for a in annotations]
    detections = _load_detections(args.pred, args.det_format)
    sizes = _load_sizes(args.sizes, image_ids, args.image_ext)
    _note_unknown_images(detections, image_ids)
    if args.fit_ellipse:
        _fit_ellipse(args, annotations, detections, sizes)
    _check_ellipse(args)
    result = evaluate_run(detections, annotations, sizes=sizes, det_format=args.det_format,
                          ellipse=args.ellipse, fp_budget=args.fp_budget)
    boot = None
    if args.bootstrap is not None:
        boot = _bootstrap(args, result, annotations, sizes)
    disc_path, cont_path = write_roc(args.out, result.roc)
    _write_summary(args, result, (disc_path, cont_path), boot)
    _note_missing_images(result.images_without_prediction, result.num_images)
    budget = f"{args.fp_budget:g}"
    print(f"FDDB {result.num_images} images, {result.num_faces} faces, ellipse={args.ellipse}")
    print(f"discrete   TPR@{budget}FP = {result.tpr_disc:.6f}  ({disc_path})")
    print(f"continuous TPR@{budget}FP = {result.tpr_cont:.6f}  ({cont_path})")
    if boot is not None:
        _print_bootstrap(result, boot, budget)
    return 0


def _bootstrap(
    args: argparse.Namespace,
    result: FddbResult,
    annotations: list[FddbImage],
    sizes: dict[str, tuple[int, int]],
) -> dict:
    """``--bootstrap N``: N resamplings of the evaluation's own per-image entries and, with
    ``--compare``, the paired differences; the ``bootstrap`` entry of ``PREFIXfddb.json`` (NaN
    as null)."""
    from reports.fddb import evaluate_run
    from reports.fddb.bootstrap import (
        bootstrap_interval,
        bootstrap_state_from_result,
        paired_bootstrap,
    )

    state = bootstrap_state_from_result(result)
    level = 0.95
    intervals = bootstrap_interval(state, args.bootstrap, seed=args.seed, level=level)
    doc: dict = {
        "replicates": args.bootstrap,
        "seed": args.seed,
        "level": level,
        "resampled": "images",
        "held_fixed": "global threshold grid (the point estimate's scores)",
        "intervals": {m: [_null(x) for x in iv] for m, iv in intervals.items()},
    }
    if args.compare is not None:
        detections_b = _load_detections(args.compare, args.det_format, "--compare")
        result_b = evaluate_run(detections_b, annotations, sizes=sizes,
                                det_format=args.det_format, ellipse=args.ellipse,
                                fp_budget=args.fp_budget)
        try:
            paired = paired_bootstrap(state, bootstrap_state_from_result(result_b),
                                      args.bootstrap, seed=args.seed, level=level)
        except ValueError as exc:
            raise CommandError(f"--compare {args.compare}: {exc}") from None
        doc["compare"] = {
            "run_b": str(args.compare),
            "tpr_b": {"tpr_disc": _null(result_b.tpr_disc), "tpr_cont": _null(result_b.tpr_cont)},
            "diff": {m: {"diff": _null(d["diff"]), "interval": [_null(x) for x in d["interval"]],
                         "p_value": _null(d["p_value"])} for m, d in paired.items()},
        }
    return doc


def _null(x: float) -> float | None:
    return None if x != x else float(x)  # NaN -> null


def _print_bootstrap(result: FddbResult, boot: dict, budget: str) -> None:
    """Each TPR with its interval (``discrete 0.6447 [0.6102, 0.6801]``)."""
    print(
        f"{boot['level'] * 100:g}% bootstrap intervals ({boot['replicates']} replicates, "
        f"seed {boot['seed']}; images resampled)"
    )
    for name, metric, value in (
        ("discrete", "tpr_disc", result.tpr_disc),
        ("continuous", "tpr_cont", result.tpr_cont),
    ):
        lo, hi = ("nan" if x is None else f"{x:.4f}" for x in boot["intervals"][metric])
        print(f"  {name:<10} TPR@{budget}FP {value:.4f} [{lo}, {hi}]")
    if "compare" in boot:
        cmp = boot["compare"]
        print(f"paired bootstrap: TPR(--pred) - TPR({cmp['run_b']}), "
              f"{boot['level'] * 100:g}% interval, p-value")
        for name, metric in (("discrete", "tpr_disc"), ("continuous", "tpr_cont")):
            d = cmp["diff"][metric]
            diff, lo, hi, b = ("nan" if x is None else f"{x:+.4f}"
                               for x in (d["diff"], *d["interval"], cmp["tpr_b"][metric]))
            p = "nan" if d["p_value"] is None else f"{d['p_value']:.3g}"
            print(f"  {name:<10} {diff} [{lo}, {hi}] p={p}  (B: {b.lstrip('+')})")
