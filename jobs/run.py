"""`dsfd run`: the detector over a dataset on Ray, writing a run directory of Parquet parts.

With no ``--address`` (and no ``RAY_ADDRESS``) a local Ray is started for the job and shut
down after it; with one, the job joins that cluster. Nothing else differs between the two.
Running the same command again resumes: complete shards are skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from jobs.cli import CommandError

DEFAULT_MODEL = "shipped"
DEFAULT_SHARD_SIZE = 64


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from exc
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``dsfd run`` and ``dsfd label`` (all but the dataset)."""
    parser.add_argument("--out", required=True, metavar="RUN_DIR",
                        help="run directory (resumed when it holds a run of the same config)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="model name (random weights), 'shipped', a checkpoint of ours, or "
                             "release-r152:PATH; a path must exist on every node (default: the "
                             "shipped small model, trained on the synthetic benchmark only)")
    parser.add_argument("--multiscale", action="store_true",
                        help="the official multi-scale test (11 passes per image)")
    parser.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                        help="detector actors (default: one per GPU, else one per 4 CPUs)")
    parser.add_argument("--gpus-per-worker", type=_non_negative_float, default=None,
                        metavar="G", help="GPUs per actor (default 1 if the cluster has GPUs)")
    parser.add_argument("--cpus-per-worker", type=_non_negative_float, default=None,
                        metavar="C", help="CPUs (torch threads) per actor (default: a share)")
    parser.add_argument("--address", default=None, metavar="RAY_ADDRESS",
                        help="join this Ray cluster (default: $RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--shard-size", type=_positive_int, default=DEFAULT_SHARD_SIZE,
                        metavar="K", help=f"images per shard (default {DEFAULT_SHARD_SIZE})")
    parser.add_argument("--max-size", type=_positive_int, default=None, metavar="PX",
                        help="downscale images whose longer side exceeds PX pixels")
    parser.add_argument("--max-pixels", type=_positive_int, default=None, metavar="P",
                        help="refuse images with more pixels (default: Pillow's 178956970)")
    parser.add_argument("--batch-size", type=_positive_int, default=1, metavar="B",
                        help="images per forward pass, single-scale (default 1)")
    parser.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                        help="only the first N images of the dataset (in manifest order)")
    parser.add_argument("--restart", action="store_true",
                        help="clear an existing run in RUN_DIR instead of resuming it")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, metavar="SPEC",
                        help="wider:ROOT[:split], fddb:ROOT, folder:PATH, list:FILE, "
                             "synthetic:DIR")
    add_run_arguments(parser)


def init_ray(address: str | None) -> bool:
    """Start a local Ray, or join ``address`` / ``$RAY_ADDRESS``; True when started here."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)
    return True


def check_out_dir(out: str) -> None:
    """Refuse, before Ray starts, an ``--out`` that is a file or lies under one."""
    from pathlib import Path

    path = Path(out).expanduser()
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                what = "is a file" if part == path else f"lies under a file ({part})"
                raise CommandError(f"--out {out} {what}, not a directory")
            return


def run_job(args: argparse.Namespace, dataset_spec: str) -> Any:
    """Open the dataset, bring up Ray and run the pipeline; returns the RunSummary."""
    from pipeline.datasets.spec import limit_dataset, open_dataset
    from pipeline.images import DEFAULT_MAX_PIXELS
    from pipeline.runner import ClusterConfig, RunConfig, run_inference

    check_out_dir(args.out)
    source = limit_dataset(open_dataset(dataset_spec), getattr(args, "limit", None))
    config = RunConfig(model=args.model, multiscale=args.multiscale, max_size=args.max_size,
                       shard_size=args.shard_size,
                       max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
    cluster = ClusterConfig(num_workers=args.workers, num_gpus_per_worker=args.gpus_per_worker,
                            num_cpus_per_worker=args.cpus_per_worker or None,
                            batch_size=args.batch_size)
    started = init_ray(args.address)
    try:
        return run_inference(source, args.out, config, cluster, dataset_spec=dataset_spec,
                             restart=args.restart)
    except RuntimeError as exc:
        raise CommandError(str(exc).splitlines()[0]) from exc
    except OSError as exc:  # the run directory: disk full, read-only, vanished, ...
        if isinstance(exc, FileNotFoundError | PermissionError | NotADirectoryError):
            raise
        raise CommandError(str(exc).strip().splitlines()[0] if str(exc).strip()
                           else type(exc).__name__) from exc
    finally:
        if started:
            import ray

            ray.shutdown()


def describe_summary(summary: Any) -> str:
    """One line: images, shards run/skipped, errors, detections, time, throughput."""
    rate = summary.images_run / summary.seconds if summary.seconds else 0.0
    return (f"{summary.num_images} images in {summary.num_shards} shards "
            f"({summary.shards_run} run, {summary.shards_skipped} already done): "
            f"{summary.errors_run} errors, {summary.detections_run} detections, "
            f"{summary.seconds:.1f} s ({rate:.1f} images/s, {summary.num_workers} workers) "
            f"-> {summary.run_dir}")


def run(args: argparse.Namespace) -> int:
    summary = run_job(args, args.dataset)
    print(f"dsfd run: {describe_summary(summary)}", file=sys.stdout)
    return 0
