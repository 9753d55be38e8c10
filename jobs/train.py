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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.common import (
    RAY_LOG,
    VERBOSE_ENV,
    CommandError,
    init_ray,
    log_file_for,
    positive_int,
    verbose_requested,
)

if TYPE_CHECKING:
    import numpy as np

    from pipeline.training.validation import ValidationDetections

WIDER_SELECT_BY = ("easy", "medium", "hard")  # pipeline.training.config.WIDER_METRICS
FDDB_SELECT_BY = ("fddb_discrete", "fddb_continuous")  # pipeline.training.config.FDDB_METRICS


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
    parser.add_argument(
        "--val-dataset",
        default=None,
        metavar="SPEC",
        help="validate on this split with dsfd run's single-scale path: a WIDER-style one "
        "(wider:ROOT:val, synthetic:DIR:val; AP easy/medium/hard) or an FDDB one (fddb:ROOT, "
        "synthetic-fddb:DIR; TPR at 1000 false positives, discrete and continuous); the "
        "metrics go to metrics.jsonl and best.pt keeps the best step",
    )
    parser.add_argument("--val-every", type=int, default=0,
                        help="steps between validations (default 0: only at the end)")
    parser.add_argument("--val-limit", type=positive_int, default=None,
                        help="validate on the first N images only")
    parser.add_argument("--select-by", choices=WIDER_SELECT_BY + FDDB_SELECT_BY, default=None,
                        help="the metric best.pt is chosen by (default hard for a WIDER-style "
                        "--val-dataset, fddb_discrete for an FDDB one)")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help=f"also show Ray's own logs on the console (or set {VERBOSE_ENV}=1); they always "
        f"go to OUT/{RAY_LOG}",
    )


def run(args: argparse.Namespace) -> int:
    """Resolve the config, check it can run, start Ray (unless local mode) and train."""
    from pipeline.errors import root_cause
    from pipeline.training import fit

    val_kind = _check_val_dataset(args.val_dataset) if args.val_dataset is not None else None
    config = _config(args, val_kind)
    _check_dataset(config.dataset)
    _check_out(config, restart=args.restart)
    evaluator = ValidationEvaluator(val_kind) if val_kind is not None else None
    console = TrainConsole()
    log = None
    started = time.perf_counter()
    try:
        if config.workers > 0:
            os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
            from jobs.common import RayLog

            log = RayLog(log_file_for(config.out), verbose=verbose_requested(args.verbose))
            with log.stdout():
                init_ray(args.address, log)
                _check_workers_fit(config)
                final = fit(config, console=console, evaluator=evaluator)
        else:
            final = fit(config, console=console, evaluator=evaluator)
    except CommandError:
        raise
    except (ValueError, OSError) as exc:
        if log is not None:
            log.write_failure("train", exc)
        raise CommandError(str(exc).strip().splitlines()[0]) from exc
    except Exception as exc:  # noqa: BLE001 - Ray Train wraps a worker's error: its last line
        where = ""
        if log is not None:
            log.write_failure("train", exc)
            where = f" (full log: {log.path})"
        raise CommandError(f"training failed: {root_cause(exc)}{where}") from exc
    finally:
        console.close()
        if log is not None:
            log.close()
    print(_summary(config, final, time.perf_counter() - started), flush=True)
    return 0


@dataclass(frozen=True)
class ValidationEvaluator:
    """Scores a validation during training with the evaluators of ``dsfd eval``: WIDER FACE
    AP per setting (matlab flavour) or FDDB TPR at 1000 false positives (discrete and
    continuous, :func:`reports.fddb.evaluate_run`). Pickled to the Ray Train workers.

    Attributes:
        kind: ``"wider"`` or ``"fddb"``.
    """

    kind: str

    def __call__(self, found: ValidationDetections) -> dict[str, float]:
        from pipeline.datasets import ground_truth

        gt = ground_truth(found.spec)
        if self.kind == "fddb":
            return _fddb_metrics(found, gt)
        return _wider_metrics(found, gt)


def _wider_metrics(found: ValidationDetections, gt: Any) -> dict[str, float]:
    """WIDER AP (matlab flavour) on the images detected on (the ground truth cut to them)."""
    import numpy as np

    from pipeline.datasets.wider import WiderGroundTruth
    from reports.wider.evaluate import evaluate_predictions
    from reports.wider.predictions import WiderPredictions, group_detection_columns

    seen = set(found.image_ids)
    subset = WiderGroundTruth(images=tuple(i for i in gt if i.image_id in seen),
                              events=gt.events, settings=gt.settings, source=gt.source)
    values = _stacked(found.detections)  # (N, 5)
    image_ids = np.asarray([i for i, d in zip(found.image_ids, found.detections, strict=True)
                            for _ in range(len(d))], dtype=object)
    pred = WiderPredictions(flavour="matlab", source=found.spec)
    for image_id, det in group_detection_columns(image_ids, values[:, :4], values[:, 4]):
        if image_id in subset:
            pred.images[image_id] = det
    result, _ = evaluate_predictions(pred, subset)
    return {**{f"val_{s}": float(result.ap[s]) for s in WIDER_SELECT_BY},
            "val_images": float(len(subset))}


def _fddb_metrics(found: ValidationDetections, annotations: Any) -> dict[str, float]:
    """FDDB TPR at 1000 false positives, as ``dsfd eval fddb`` computes it from a run
    directory of the same detections, on the annotated images detected on."""
    import numpy as np

    from pipeline.boxes import xyxy_to_xywh
    from pipeline.datasets.fddb import FddbDetections
    from reports.fddb import evaluate_run

    detections = {i: FddbDetections(i, xyxy_to_xywh(d[:, :4]), d[:, 4].astype(np.float64))
                  for i, d in zip(found.image_ids, found.detections, strict=True)}
    sizes = dict(zip(found.image_ids, found.sizes, strict=True))
    images = [a for a in annotations if a.image_id in sizes]
    result = evaluate_run(detections, images, sizes=sizes)
    return {"val_fddb_discrete": float(result.tpr_disc),
            "val_fddb_continuous": float(result.tpr_cont), "val_images": float(len(images))}


def _stacked(detections: list[np.ndarray]) -> np.ndarray:
    import numpy as np

    return np.concatenate(detections) if detections else np.zeros((0, 5), np.float32)


def _config(args: argparse.Namespace, val_kind: str | None) -> Any:
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
        val_dataset=args.val_dataset,
        val_every=args.val_every,
        val_limit=args.val_limit,
        select_by=_select_by(args.select_by, val_kind),
    )


def _select_by(select_by: str | None, val_kind: str | None) -> str:
    """``--select-by``, defaulted by the validation set's kind and checked against it."""
    metrics = FDDB_SELECT_BY if val_kind == "fddb" else WIDER_SELECT_BY
    if select_by is None:
        return metrics[-1] if val_kind != "fddb" else metrics[0]
    if val_kind is not None and select_by not in metrics:
        raise CommandError(f"--select-by {select_by}: the {val_kind.upper()} --val-dataset gives "
                           f"{', '.join(metrics)}")
    return select_by


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


def _check_val_dataset(spec: str) -> str:
    """The kind of a validation spec's ground truth (``wider`` or ``fddb``); a spec without
    either is refused before training starts."""
    from pipeline.datasets import ground_truth
    from pipeline.datasets.fddb import FddbImage
    from pipeline.datasets.wider import WiderGroundTruth

    try:
        gt = ground_truth(spec)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(f"--val-dataset: {str(exc).splitlines()[0]}") from exc
    if isinstance(gt, WiderGroundTruth):
        kind = "wider"
    elif isinstance(gt, list) and all(isinstance(i, FddbImage) for i in gt):
        kind = "fddb"
    else:
        raise CommandError(f"--val-dataset {spec}: validation needs WIDER-style or FDDB ground "
                           "truth (wider:, synthetic:, fddb: or synthetic-fddb: specs)")
    if not len(gt):
        raise CommandError(f"--val-dataset {spec}: no annotated images")
    return kind


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


class TrainConsole:
    """``dsfd train``'s progress: one tqdm bar on stderr (step/total, loss parts, lr,
    images/s, time left) when stderr is a terminal, else one line per metrics entry on
    stderr; validation results as a line above the bar."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.tty = sys.stderr.isatty()

    def __call__(self, entry: dict[str, Any], steps: int) -> None:
        from pipeline.training.loop import format_entry
        from pipeline.training.validation import is_validation_entry

        if self.bar is None and self.tty and "loss" in entry:
            from tqdm import tqdm

            self.bar = tqdm(total=steps, initial=int(entry.get("resumed_from", 0)),
                            unit="step", desc="train", file=sys.stderr, dynamic_ncols=True,
                            smoothing=0.1)
        if is_validation_entry(entry) or self.bar is None:
            line = format_entry(entry, steps)
            if self.bar is not None:
                self.bar.write(line, file=sys.stderr)
            else:
                print(line, file=sys.stderr, flush=True)
            return
        self.bar.update(int(entry["step"]) - self.bar.n)
        parts = {k: f"{entry[k]:.3f}" for k in ("loss", "first_conf", "first_box",
                                                   "second_conf", "second_box") if k in entry}
        self.bar.set_postfix(**parts, lr=f"{entry['lr']:.1e}",
                             img_s=f"{entry['images_per_s']:.1f}")

    def close(self) -> None:
        """Finish the bar (idempotent)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _summary(config: Any, final: dict[str, Any], seconds: float) -> str:
    """The one line at the end: step, loss, time, the checkpoint and the best step."""
    from pipeline.training.validation import read_best

    best = read_best(Path(config.out))
    best_text = (f"; best {best['metric']} {best['value']:.4f} at step {best['step']} "
                 f"({config.out}/best.pt)" if best else "")
    return (f"done: step {final.get('step')} loss {final.get('loss', float('nan')):.4f} in "
            f"{seconds:.0f} s; checkpoint {config.out}/last.pt{best_text}")
