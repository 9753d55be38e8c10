"""`dsfd train`: train DSFD with Ray Train (data parallel); rerunning the command resumes.

Example (the small CPU model of the demo)::

    dsfd synth --out /data/synth
    dsfd train --dataset synthetic:/data/synth --model vgg16 --width 0.25 \\
        --out /data/ckpt --workers 2 --steps 600 --batch-size 8 --image-size 256
"""

from __future__ import annotations

import argparse
import os

from jobs.common import CommandError


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``dsfd train``."""
    parser.add_argument(
        "--dataset",
        required=True,
        help="a dataset spec with face boxes and images: wider:ROOT[:split] or "
        "synthetic:DIR[:split] (train split by default)",
    )
    parser.add_argument("--out", required=True, help="checkpoint folder (resumed when it exists)")
    parser.add_argument(
        "--model", default="vgg16", help="vgg16, resnet50, resnet101 or resnet152 (default vgg16)"
    )
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="Ray Train workers; 0 runs the same loop in this process without Ray "
        "(on CUDA when --gpus-per-worker > 0)",
    )
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    parser.add_argument(
        "--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a local Ray)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=60000,
        help="total steps; lr drops 10x at 2/3 and again at 5/6 (paper 60k)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="global batch over workers")
    parser.add_argument("--image-size", type=int, default=640, help="square training input")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--checkpoint-every", type=int, default=1000)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument(
        "--backbone-weights",
        default=None,
        help="local torchvision ImageNet state_dict file for the backbone",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--policy",
        choices=("iam", "ssd"),
        default="iam",
        help="augmentation: IAM (paper) or SSD-style only",
    )
    parser.add_argument(
        "--second-shot-weight",
        type=float,
        default=1.0,
        help="lambda of L_PAL = L_FSL + lambda * L_SSL",
    )
    parser.add_argument(
        "--max-failures",
        type=int,
        default=3,
        help="worker failures Ray Train recovers from (from the last checkpoint)",
    )
    parser.add_argument(
        "--loader-workers", type=int, default=0, help="DataLoader processes per training worker"
    )
    parser.add_argument(
        "--optimizer",
        choices=("sgd", "adamw"),
        default="sgd",
        help="sgd (the paper's) or adamw (same schedule; much faster from scratch)",
    )
    parser.add_argument(
        "--stop-at",
        type=int,
        default=None,
        help="stop after this step (checkpointed); rerun to continue",
    )


def run(args: argparse.Namespace) -> int:
    """Resolve the config, start Ray (unless local mode) and train."""
    from dsfd.config import ModelConfig
    from pipeline.datasets import face_records
    from pipeline.training import TrainConfig, fit

    if args.model == "release-r152":
        raise CommandError("release-r152 has no training path (no first shot); pick a paper model")
    if args.backbone_weights and not os.path.isfile(args.backbone_weights):
        raise CommandError(f"--backbone-weights: no such file {args.backbone_weights}")
    config = TrainConfig(
        dataset=args.dataset,
        out=os.path.abspath(args.out),
        model=ModelConfig(name=args.model, width=args.width, input_size=args.image_size),
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        backbone_weights=os.path.abspath(args.backbone_weights) if args.backbone_weights else None,
        seed=args.seed,
        policy=args.policy,
        second_shot_weight=args.second_shot_weight,
        max_failures=args.max_failures,
        loader_workers=args.loader_workers,
        stop_at=args.stop_at,
        optimizer=args.optimizer,
    )
    try:
        records = face_records(config.dataset)
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from exc
    if not records or all(r.path is None for r in records):
        raise CommandError(f"{config.dataset}: no training images")
    if config.workers > 0:
        _init_ray(args.address)
    final = fit(config)
    print(
        f"done: step {final.get('step')} loss {final.get('loss', float('nan')):.4f}; "
        f"checkpoint {config.out}/last.pt"
    )
    return 0


def _init_ray(address: str | None) -> None:
    import ray

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:
        ray.init(include_dashboard=False)
