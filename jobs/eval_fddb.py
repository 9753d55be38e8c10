"""`dsfd eval fddb`: FDDB discrete and continuous ROC, as the official program writes them.

    dsfd eval fddb --pred RUN_DIR|DET_FILE --annotations FILE_OR_FOLDS_DIR
                   --sizes IMG_DIR|SIZES_TSV [--det-format rect|ellipse]
                   [--ellipse identity|s3fd|FILE.json] --out PREFIX [--fp-budget 1000]
                   [--fit-ellipse OUT.json] [--image-ext .jpg]

Writes ``PREFIXDiscROC.txt`` and ``PREFIXContROC.txt`` (byte-identical to the official
``evaluate -r PREFIX``) and ``PREFIXfddb.json`` (the resolved settings and the TPR at the
budget), and prints the TPR at the false-positive budget for both curves. Loads neither torch
nor Ray.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.cli import CommandError


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `dsfd eval fddb` (no heavy imports here)."""
    parser.add_argument(
        "--pred",
        required=True,
        help="run directory (Parquet detections, xyxy pixels) or an official detection file",
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
        "(header 'name width height')",
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


def _load_detections(pred: Path, det_format: str):
    from pipeline.datasets.fddb import read_detections
    from reports.fddb_inputs import detections_from_run_dir

    if pred.is_dir():
        if det_format != "rect":
            raise CommandError("a run directory holds rectangles: use --det-format rect")
        return detections_from_run_dir(pred)
    if not pred.is_file():
        raise CommandError(f"--pred not found: {pred}")
    return read_detections(pred, det_format)  # type: ignore[arg-type]


def _load_sizes(spec: Path, image_ids: list[str], ext: str) -> dict[str, tuple[int, int]]:
    from pipeline.datasets.fddb import read_image_sizes_from_dir, read_image_sizes_tsv

    if spec.is_dir():
        return read_image_sizes_from_dir(spec, image_ids, ext)
    if not spec.is_file():
        raise CommandError(f"--sizes not found: {spec}")
    sizes = read_image_sizes_tsv(spec)
    missing = [i for i in image_ids if i not in sizes]
    if missing:
        raise CommandError(f"{spec}: no size for {len(missing)} images, e.g. {missing[0]!r}")
    return sizes


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the ROC files and print the TPR at the budget."""
    import json
    import sys

    from pipeline.datasets.fddb import read_annotations
    from reports.fddb_ellipse import fit_ellipse_regressor, load_rect_to_ellipse, matched_pairs
    from reports.fddb_eval import evaluate_fddb, tpr_at_fp, write_roc
    from reports.fddb_inputs import index_detections

    annotations = read_annotations(args.annotations)
    image_ids = [a.image_id for a in annotations]
    detections = _load_detections(Path(args.pred), args.det_format)
    sizes = _load_sizes(Path(args.sizes), image_ids, args.image_ext)
    if isinstance(detections, dict):
        unknown = sorted(set(detections) - set(image_ids))
        if unknown:
            print(
                f"dsfd eval fddb: ignoring detections on {len(unknown)} images outside the "
                f"annotation list, e.g. {unknown[0]!r}",
                file=sys.stderr,
            )
    if args.fit_ellipse:
        if args.det_format != "rect":
            raise CommandError("--fit-ellipse needs rectangle detections (--det-format rect)")
        rects, ellipses = matched_pairs(annotations, index_detections(detections), sizes)
        regressor = fit_ellipse_regressor(rects, ellipses, name=Path(args.fit_ellipse).stem)
        regressor.save(args.fit_ellipse)
        print(f"fitted ellipse regressor on {len(rects)} pairs: {args.fit_ellipse}")
    to_ellipse = load_rect_to_ellipse(args.ellipse)
    if to_ellipse is not None and args.det_format != "rect":
        raise CommandError("--ellipse converts rectangles: use it with --det-format rect")
    roc = evaluate_fddb(annotations, detections, sizes, args.det_format, to_ellipse)
    disc_path, cont_path = write_roc(args.out, roc)
    tpr_disc = tpr_at_fp(roc.tpr_disc, roc.fp, args.fp_budget)
    tpr_cont = tpr_at_fp(roc.tpr_cont, roc.fp, args.fp_budget)
    summary = {
        "pred": str(args.pred),
        "annotations": str(args.annotations),
        "sizes": str(args.sizes),
        "det_format": args.det_format,
        "ellipse": args.ellipse,
        "fp_budget": args.fp_budget,
        "num_images": len(annotations),
        "num_faces": roc.num_faces,
        "num_points": int(len(roc.fp)),
        "tpr_disc": tpr_disc,
        "tpr_cont": tpr_cont,
        "disc_roc": str(disc_path),
        "cont_roc": str(cont_path),
    }
    summary_path = Path(str(args.out) + "fddb.json")
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    budget = f"{args.fp_budget:g}"
    print(f"FDDB {len(annotations)} images, {roc.num_faces} faces, ellipse={args.ellipse}")
    print(f"discrete   TPR@{budget}FP = {tpr_disc:.6f}  ({disc_path})")
    print(f"continuous TPR@{budget}FP = {tpr_cont:.6f}  ({cont_path})")
    return 0
