"""`dsfd train`: train DSFD with Ray Train (data parallel); rerunning the command resumes.

Example (the small CPU model of the demo)::

    dsfd synth --out /data/synth
    dsfd train --dataset synthetic:/data/synth --model vgg16 --width 0.25 \\
        --out /data/ckpt --workers 2 --steps 600 --batch-size 8 --image-size 256
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from jobs.common import CommandError, check_ray_address, interrupt_on_sigterm, positive_int

VERBOSE_ENV = "DSFD_VERBOSE"
RAY_LOG = "logs/ray.log"


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
        help="validate on this WIDER-style split (e.g. synthetic:DIR:val) with dsfd run's "
        "single-scale path; AP goes to metrics.jsonl and best.pt keeps the best step",
    )
    parser.add_argument("--val-every", type=int, default=0,
                        help="steps between validations (default 0: only at the end)")
    parser.add_argument("--val-limit", type=positive_int, default=None,
                        help="validate on the first N images only")
    parser.add_argument("--select-by", choices=("easy", "medium", "hard"), default="hard",
                        help="the AP setting best.pt is chosen by (default hard)")
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

    config = _config(args)
    _check_dataset(config.dataset)
    if config.val_dataset is not None:
        _check_val_dataset(config.val_dataset)
    _check_out(config, restart=args.restart)
    verbose = args.verbose or os.environ.get(VERBOSE_ENV, "") not in ("", "0")
    log_path = Path(config.out) / RAY_LOG
    console = TrainConsole()
    started = time.perf_counter()
    try:
        if config.workers > 0:
            _route_ray_logs(log_path, verbose=verbose)
            _init_ray(args.address, log_path, verbose=verbose)
            _check_workers_fit(config)
        final = fit(config, console=console)
    except CommandError:
        raise
    except (ValueError, OSError) as exc:
        _log_failure(log_path, exc, config.workers)
        raise CommandError(str(exc).strip().splitlines()[0]) from exc
    except Exception as exc:  # noqa: BLE001 - Ray Train wraps a worker's error: its last line
        _log_failure(log_path, exc, config.workers)
        where = f" (full log: {log_path})" if config.workers else ""
        raise CommandError(f"training failed: {root_cause(exc)}{where}") from exc
    finally:
        console.close()
    print(_summary(config, final, time.perf_counter() - started), flush=True)
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
        val_dataset=args.val_dataset,
        val_every=args.val_every,
        val_limit=args.val_limit,
        select_by=args.select_by,
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


def _check_val_dataset(spec: str) -> None:
    """Refuse a validation spec without WIDER ground truth before training starts."""
    from pipeline.datasets import ground_truth
    from pipeline.datasets.wider import WiderGroundTruth

    try:
        gt = ground_truth(spec)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(f"--val-dataset: {str(exc).splitlines()[0]}") from exc
    if not isinstance(gt, WiderGroundTruth):
        raise CommandError(f"--val-dataset {spec}: validation needs WIDER-style ground truth "
                           "(wider: or synthetic: specs)")


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

        if self.bar is None and self.tty and "loss" in entry:
            from tqdm import tqdm

            self.bar = tqdm(total=steps, initial=int(entry.get("resumed_from", 0)),
                            unit="step", desc="train", file=sys.stderr, dynamic_ncols=True,
                            smoothing=0.1)
        if "val_hard" in entry or self.bar is None:
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


def _route_ray_logs(log_path: Path, *, verbose: bool) -> None:
    """Ray's driver-side Python logging (``ray``, ``ray.train``, ...) to ``log_path``; kept on
    the console too when ``verbose``."""
    import ray  # noqa: F401 - sets up the "ray" logger and its console handler

    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("ray")
    if not verbose:
        for old in list(logger.handlers):
            if isinstance(old, logging.StreamHandler) and not isinstance(
                    old, logging.FileHandler):
                logger.removeHandler(old)
    logger.addHandler(handler)


def _worker_lines_to(log_path: Path) -> Any:
    """A handler of Ray's worker-output stream that appends each line, prefixed with the
    worker as Ray prints it, to ``log_path``."""
    fh = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the driver's lifetime

    def handle(data: dict[str, Any]) -> None:
        who = data.get("actor_name") or data.get("task_name") or ""
        prefix = f"({who} pid={data.get('pid')}, ip={data.get('ip')})"
        for line in data.get("lines", []):
            fh.write(f"{prefix} {line}\n")

    return handle


def _init_ray(address: str | None, log_path: Path, *, verbose: bool) -> None:
    """Start a local Ray or join ``address`` (as :func:`jobs.common.init_ray`), with the
    workers' output streamed into ``log_path`` instead of the console (to both when
    ``verbose``)."""
    import signal

    import ray
    from ray._private.worker import global_worker_stdstream_dispatcher

    from jobs.common import _start_reaper, stdout_to_stderr

    for key, value in (("RAY_AUTH_MODE", "disabled"), ("RAY_USAGE_STATS_ENABLED", "0"),
                       ("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0"), ("RAY_TRAIN_V2_ENABLED", "1")):
        os.environ.setdefault(key, value)
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "auto":
        check_ray_address(address)
    if ray.is_initialized():
        return
    with stdout_to_stderr():  # ray.init prints its banner on stdout
        if address:
            try:
                ray.init(address=address, log_to_driver=True)
            except ConnectionError as exc:  # e.g. "auto" with no cluster running
                lines = str(exc).strip().splitlines() or [type(exc).__name__]
                raise CommandError(f"--address {address}: {lines[0]}") from None
        else:
            _start_reaper()
            ray.init(include_dashboard=False, log_to_driver=True)
    if not verbose:
        global_worker_stdstream_dispatcher.remove_handler("ray_print_logs")
    global_worker_stdstream_dispatcher.add_handler("dsfd_ray_log", _worker_lines_to(log_path))
    try:  # ray.init installs a handler that exits at once on SIGTERM: take it back
        signal.signal(signal.SIGTERM, interrupt_on_sigterm)
    except ValueError:  # not the main thread
        pass


def _log_failure(log_path: Path, exc: BaseException, workers: int) -> None:
    """The full error, with its traceback, at the end of ``log_path`` (Ray runs only)."""
    import traceback

    if workers == 0:
        return
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as fh:
            fh.write("dsfd train failed:\n" + "".join(traceback.format_exception(exc)))
    except OSError:
        pass
