"""`dsfd anchors`: matched-anchor statistics of a dataset (the paper's Fig. 4 and Fig. 5).

Writes ``OUT/anchor_stats.parquet`` (one row per augmented face), ``OUT/summary.json`` (the
resolved config, the image-size assumption of a boxes-only source and the mean matched anchors
per face of each policy) and ``OUT/face_scales.{png,pdf}``, ``OUT/matched_anchors.{png,pdf}``.
"""

from __future__ import annotations

import argparse

from jobs.common import CommandError


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``dsfd anchors``."""
    parser.add_argument(
        "--dataset",
        required=True,
        help="wider:ROOT[:split], synthetic:DIR[:split] or wider-gt:DIR (boxes of "
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

    from pipeline.anchor_table import AnchorJob, collect_anchor_table, write_anchor_outputs
    from pipeline.train_data import load_face_records

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
        records = load_face_records(args.dataset, default_split=args.split)
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from exc
    table = collect_anchor_table(records, job)
    assumed = args.dataset.startswith("wider-gt:")
    summary = write_anchor_outputs(table, args.out, job, args.dataset, assumed_size=assumed)
    if summary["image_size_assumption"]:
        print(f"note: {summary['image_size_assumption']}")
    for policy, entry in summary["policies"].items():
        print(
            f"{policy}: {entry['num_faces']} faces, mean matched anchors per face "
            f"{entry['mean_matched']:.3f}"
        )
    print(f"wrote {args.out}")
    return 0
