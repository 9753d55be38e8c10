"""`dsfd eval fddb`: FDDB discrete and continuous ROC, as the official program writes them.

    dsfd eval fddb --pred RUN_DIR|DET_FILE --annotations FILE_OR_FOLDS_DIR
                   --sizes IMG_DIR|SIZES_TSV [--det-format rect|ellipse]
                   [--ellipse identity|s3fd|FILE.json] --out PREFIX [--fp-budget 1000]
                   [--fit-ellipse OUT.json] [--image-ext .jpg]

Writes ``PREFIXDiscROC.txt`` and ``PREFIXContROC.txt`` (byte-identical to the official
``evaluate -r PREFIX``) and ``PREFIXfddb.json`` (the resolved settings, the TPR at the
budget and the annotated images without a prediction), and prints the TPR at the
false-positive budget for both curves. Annotated images a run directory never covered count as
missed faces; their number is printed on stderr. Loads neither torch nor Ray.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.cli import CommandError

if TYPE_CHECKING:
    from reports.fddb_eval import FddbRoc


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
    roc: FddbRoc,
    num_images: int,
    tpr: tuple[float, float],
    paths: tuple[Path, Path],
) -> None:
    """Write ``PREFIXfddb.json``: settings, counts, TPR (discrete, continuous), ROC files."""
    summary = {
        "pred": str(args.pred),
        "annotations": str(args.annotations),
        "sizes": str(args.sizes),
        "det_format": args.det_format,
        "ellipse": args.ellipse,
        "fp_budget": args.fp_budget,
        "num_images": num_images,
        "num_faces": roc.num_faces,
        "num_images_without_prediction": roc.num_images_without_prediction,
        "images_without_prediction": list(roc.images_without_prediction),
        "num_points": int(len(roc.fp)),
        "tpr_disc": tpr[0],
        "tpr_cont": tpr[1],
        "disc_roc": str(paths[0]),
        "cont_roc": str(paths[1]),
    }
    summary_path = Path(str(args.out) + "fddb.json")
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the ROC files and print the TPR at the budget."""
    from pipeline.datasets.fddb import read_annotations
    from reports.fddb_ellipse import fit_ellipse_regressor, load_rect_to_ellipse, matched_pairs
    from reports.fddb_eval import evaluate_fddb, tpr_at_fp, write_roc
    from reports.fddb_inputs import index_detections

    annotations = read_annotations(args.annotations)
    image_ids = [a.image_id for a in annotations]
    detections = _load_detections(Path(args.pred), args.det_format)
    sizes = _load_sizes(Path(args.sizes), image_ids, args.image_ext)
    _note_unknown_images(detections, image_ids)
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
    _write_summary(args, roc, len(annotations), (tpr_disc, tpr_cont), (disc_path, cont_path))
    _note_missing_images(roc.images_without_prediction, len(annotations))
    budget = f"{args.fp_budget:g}"
    print(f"FDDB {len(annotations)} images, {roc.num_faces} faces, ellipse={args.ellipse}")
    print(f"discrete   TPR@{budget}FP = {tpr_disc:.6f}  ({disc_path})")
    print(f"continuous TPR@{budget}FP = {tpr_cont:.6f}  ({cont_path})")
    return 0
