"""`dsfd train`: train DSFD with Ray Train (data parallel); rerunning the command resumes.

Example (the small CPU model of the demo)::

    dsfd synth --out /data/synth
    dsfd train --dataset synthetic:/data/synth --model vgg16 --width 0.25 \\
        --out /data/ckpt --workers 2 --steps 600 --batch-size 8 --image-size 256
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from jobs.common import CommandError, init_ray


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
        "--bn",
        choices=("auto", "train", "sync", "frozen"),
        default="auto",
        help="BatchNorm in training: train (each worker's batch), sync (the global batch, "
        "across workers), frozen (ImageNet statistics); auto (default): frozen with "
        "--backbone-weights, sync with several workers, else train",
    )
    parser.add_argument(
        "--conf-normalizer",
        choices=("positives", "positives+negatives"),
        default="positives",
        help="N_conf of eq. (2): positives (the official code, default) or positives+negatives "
        "(the paper's text)",
    )
    parser.add_argument(
        "--l2norm",
        choices=("before_fem", "per_shot"),
        default="before_fem",
        help="VGG16 L2Norm placement: before the FEM (the official code, default) or per shot",
    )
    parser.add_argument(
        "--expand-prob",
        type=float,
        default=0.0,
        help="probability of the SSD branch's zoom-out (0, the official setting)",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="remove what an earlier training run wrote in --out (its config, checkpoints, "
        "metrics, Ray Train storage) instead of resuming it",
    )
    parser.add_argument(
        "--stop-at",
        type=int,
        default=None,
        help="stop after this step (checkpointed); rerun to continue",
    )


def run(args: argparse.Namespace) -> int:
    """Resolve the config, check it can run, start Ray (unless local mode) and train."""
    from pipeline.training import fit

    config = _config(args)
    _check_dataset(config.dataset)
    _check_out(config, restart=args.restart)
    if config.workers > 0:
        _init_ray(args.address)
        _check_workers_fit(config)
    try:
        final = fit(config)
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc).strip().splitlines()[0]) from exc
    except Exception as exc:  # noqa: BLE001 - Ray Train wraps a worker's error: its last line
        from pipeline.errors import root_cause

        raise CommandError(f"training failed: {root_cause(exc)}") from exc
    print(
        f"done: step {final.get('step')} loss {final.get('loss', float('nan')):.4f}; "
        f"checkpoint {config.out}/last.pt"
    )
    return 0


def _config(args: argparse.Namespace) -> Any:
    from dsfd.config import ModelConfig
    from pipeline.training import TrainConfig

    if args.model == "release-r152":
        raise CommandError("release-r152 has no training path (no first shot); pick a paper model")
    if args.backbone_weights and not os.path.isfile(args.backbone_weights):
        raise CommandError(f"--backbone-weights: no such file {args.backbone_weights}")
    l2norm = {"l2norm": args.l2norm} if args.model == "vgg16" else {}
    return TrainConfig(
        dataset=args.dataset,
        out=os.path.abspath(args.out),
        model=ModelConfig(name=args.model, width=args.width, input_size=args.image_size,
                          **l2norm),
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
        bn=args.bn,
        conf_normalizer=args.conf_normalizer,
        expand_prob=args.expand_prob,
    )


def _check_dataset(spec: str) -> None:
    """Refuse a dataset without training images or without a single face."""
    from pipeline.datasets import face_records

    try:
        records = face_records(spec)
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from exc
    if not records or all(r.path is None for r in records):
        raise CommandError(f"{spec}: no training images")
    if not any(len(r.boxes_xyxy) for r in records):
        raise CommandError(f"{spec}: {len(records)} images but no face boxes to learn from")


def _check_out(config: Any, *, restart: bool) -> None:
    """``--restart`` removes the earlier run's files; else a changed config is refused."""
    from pathlib import Path

    from pipeline.training.checkpoints import check_resumable, remove_training_outputs

    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {out} is a file, not a directory")
    if restart:
        removed = remove_training_outputs(out)
        if removed:
            print(f"dsfd train: note: --restart removed {len(removed)} files of the earlier "
                  f"run in {out}", file=sys.stderr)
    check_resumable(config)


def _check_workers_fit(config: Any) -> None:
    """Refuse a worker group no cluster can place (Ray Train would wait forever)."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    cpus = sum(float(n.get("CPU", 0.0)) for n in nodes)
    gpus = sum(float(n.get("GPU", 0.0)) for n in nodes)
    if config.workers > cpus:
        raise CommandError(f"--workers {config.workers} needs {config.workers} CPUs (one per "
                           f"worker); the cluster has {cpus:g}")
    if config.gpus_per_worker and config.workers * config.gpus_per_worker > gpus:
        raise CommandError(f"--workers {config.workers} x --gpus-per-worker "
                           f"{config.gpus_per_worker:g} needs more GPUs than the cluster's "
                           f"{gpus:g}")


def _init_ray(address: str | None) -> None:
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    init_ray(address)
