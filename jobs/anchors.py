"""`dsfd anchors`: matched-anchor statistics of a dataset (the paper's Fig. 4 and Fig. 5).

Writes ``OUT/anchor_stats.parquet`` (one row per augmented face), ``OUT/summary.json`` (the
resolved config, the image-size assumption of a boxes-only source and the mean matched anchors
per face of each policy) and ``OUT/face_scales.{png,pdf}``, ``OUT/matched_anchors.{png,pdf}``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from jobs.common import CommandError

if TYPE_CHECKING:
    import pyarrow as pa

    from pipeline.training.anchor_table import AnchorJob


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``dsfd anchors``."""
    parser.add_argument(
        "--dataset",
        required=True,
        help="wider:ROOT[:split], synthetic:DIR[:split] or wider-gt:GT_DIR|MAT_FILE (boxes of "
        "wider_face_val.mat; images absent, 1024x768 canvases assumed)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--policy", choices=("ssd", "iam", "both"), default="both")
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        help="augmented samples per policy (default: one per image)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=640, help="square training input")
    parser.add_argument(
        "--shot",
        choices=("second", "first"),
        default="second",
        help="anchor design: second shot 16..512 (Table 1) or first shot 8..256",
    )
    parser.add_argument("--pos-thresh", type=float, default=0.4, help="matching IoU threshold")
    parser.add_argument(
        "--split", default="train", help="split when the dataset spec names none (default train)"
    )


def run(args: argparse.Namespace) -> int:
    """Compute the table, summary and figures; print the mean matched anchors per policy."""
    import torch

    from pipeline.datasets import face_records
    from pipeline.training.anchor_table import AnchorJob, collect_anchor_table

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    policies = ("ssd", "iam") if args.policy == "both" else (args.policy,)
    job = AnchorJob(
        policies=policies,
        samples=args.samples,
        seed=args.seed,
        image_size=args.image_size,
        shot=args.shot,
        pos_thresh=args.pos_thresh,
    )
    try:
        records = face_records(args.dataset, default_split=args.split)
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from exc
    if not any(len(r.boxes_xyxy) for r in records):
        raise CommandError(f"{args.dataset}: {len(records)} images but no face boxes; "
                           "matched-anchor statistics need faces")
    table = collect_anchor_table(records, job)
    assumed = any(r.path is None for r in records)  # a boxes-only source (wider-gt)
    summary = _write_outputs(table, args.out, job, args.dataset, assumed)
    if summary["image_size_assumption"]:
        print(f"note: {summary['image_size_assumption']}")
    for policy, entry in summary["policies"].items():
        print(
            f"{policy}: {entry['num_faces']} faces, mean matched anchors per face "
            f"{entry['mean_matched']:.3f}"
        )
    print(f"wrote {args.out}")
    return 0


def _write_outputs(table: pa.Table, out: str, job: AnchorJob, dataset: str,
                   assumed: bool) -> dict[str, Any]:
    """The table (pipeline), its per-policy statistics and figures (reports), ``summary.json``."""
    from pipeline.training.anchor_table import (
        anchor_note,
        size_assumption,
        write_anchor_summary,
        write_anchor_table,
    )
    from reports.figures.anchors import summarize, write_figures

    write_anchor_table(table, out)
    frame = table.to_pandas()
    assumption = size_assumption(assumed)
    summary = write_anchor_summary(out, job, dataset, assumption, summarize(frame))
    write_figures(frame, out, note=anchor_note(job, dataset, assumption))
    return summary
