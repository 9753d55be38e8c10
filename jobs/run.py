"""`dsfd run`: the detector over a dataset on Ray, writing a run directory of Parquet parts.

With no ``--address`` (and no ``RAY_ADDRESS``) a local Ray is started for the job and shut
down after it; with one, the job joins that cluster. Nothing else differs between the two.
Running the same command again resumes: complete shards are skipped. Everything that can be
refused is refused before Ray starts: the dataset, the weights (loaded once here), and the
output folder (foreign files, another job's lock, an overlap with the input folder).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from jobs.common import (
    RAY_LOG,
    VERBOSE_ENV,
    CommandError,
    RayLog,
    init_ray,
    log_file_for,
    non_negative_float,
    positive_float,
    positive_int,
    score,
    verbose_requested,
)

DEFAULT_MODEL = "shipped"
DEFAULT_SHARD_SIZE = 64
DTYPE_CHOICES = ("float32", "tf32", "bfloat16", "float16")  # pipeline.detectors.base.DTYPES
DTYPE_HELP = ("forward precision (default float32, which reproduces the official numbers); "
              "tf32 differs from float32 only on CUDA; bfloat16/float16 run the forward under "
              "autocast, post-processing stays float32 (see docs/performance.md)")


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
    parser.add_argument("--dtype", choices=DTYPE_CHOICES, default="float32", help=DTYPE_HELP)
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="detector actors (default: one per GPU, else one per 4 CPUs; "
                             "clamped to what fits on the cluster, with a note)")
    parser.add_argument("--gpus-per-worker", type=non_negative_float, default=None,
                        metavar="G", help="GPUs per actor (default 1 if the cluster has GPUs)")
    parser.add_argument("--cpus-per-worker", type=positive_float, default=None,
                        metavar="C", help="CPUs (torch threads) per actor, > 0 and at most one "
                                          "node's CPUs (default: a share)")
    parser.add_argument("--address", default=None, metavar="RAY_ADDRESS",
                        help="join this Ray cluster (default: $RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--shard-size", type=positive_int, default=DEFAULT_SHARD_SIZE,
                        metavar="K", help=f"images per shard (default {DEFAULT_SHARD_SIZE})")
    parser.add_argument("--max-size", type=positive_int, default=None, metavar="PX",
                        help="downscale images whose longer side exceeds PX pixels")
    parser.add_argument("--max-pixels", type=positive_int, default=None, metavar="P",
                        help="refuse images with more pixels (default: Pillow's 178956970)")
    parser.add_argument("--batch-size", type=positive_int, default=None, metavar="B",
                        help="images per forward pass; only images of equal size share one "
                             "(the one-image results) unless --bucket; multi-scale: passes of "
                             "equal size per forward (default: 16 on GPU workers, 1 on CPU "
                             "workers)")
    parser.add_argument("--bucket", action="store_true",
                        help="single-scale DSFD: pad images of mixed sizes to size buckets "
                             "(multiples of the largest stride) so they share forwards; faster "
                             "on a GPU, but boxes near the padded edges move (recorded in "
                             "run.json, compared on resume; see docs/performance.md)")
    parser.add_argument("--no-optimize", dest="optimize", action="store_false",
                        help="run the model as loaded (default: BatchNorm folded into the "
                             "convolutions and channels-last, when its self-check passes)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="only the first N images of the dataset (in manifest order); "
                             "rerunning with a larger N or none extends the run")
    parser.add_argument("--keep-score", type=score, default=None, metavar="S",
                        help="store only boxes scoring at least S (default: every box above "
                             "0.01, as the official evaluation needs)")
    parser.add_argument("--wait-timeout", type=non_negative_float, default=600.0, metavar="S",
                        help="stop when no detector actor could run for S seconds while work "
                             "waits (resources busy, nodes lost; default 600; 0 waits on)")
    parser.add_argument("--retry-errors", action="store_true",
                        help="on resume, rerun the shards that hold error rows (e.g. after a "
                             "transient read error); other complete shards are kept")
    parser.add_argument("--path-column", default=None, metavar="COL",
                        help="manifest: datasets: the column of image paths/URIs, or of "
                             "embedded image bytes (default 'path')")
    parser.add_argument("--id-column", default=None, metavar="COL",
                        help="manifest: datasets: the column of image ids (default: the path "
                             "as written, or FILE#ROW for embedded images)")
    parser.add_argument("--restart", action="store_true",
                        help="remove what an earlier run wrote in RUN_DIR (its parts and "
                             "run.json, nothing else) instead of resuming it")
    parser.add_argument("--force-unlock", action="store_true",
                        help="take over RUN_DIR's lock although another host wrote it (only "
                             "when no job runs there any more; see docs/pipeline.md)")
    parser.add_argument("--verbose", action="store_true",
                        help=f"also show Ray's own logs on the console (or set {VERBOSE_ENV}=1); "
                             f"they always go to RUN_DIR/{RAY_LOG}")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, metavar="SPEC",
                        help="wider:ROOT[:split], fddb:ROOT, folder:PATH, list:FILE, "
                             "manifest:URI, synthetic:DIR")
    add_run_arguments(parser)


def input_folders(description: dict[str, Any]) -> list[Any]:
    """The folders a dataset reads whole (a folder dataset's root, a local path or an
    object-storage prefix), which --out must avoid."""
    from pipeline.storage import location

    if description.get("kind") == "folder" and description.get("root"):
        return [location(str(description["root"]))]
    return []


def load_model_description(spec: str, dtype: str = "float32") -> dict[str, Any]:
    """The model the run will use, loaded once in this process before Ray starts."""
    from pipeline.actors import describe_model

    try:
        return describe_model(spec, dtype)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the user's input
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise CommandError(f"--model {spec}: {lines[0] if lines else type(exc).__name__}") \
            from exc


def run_job(args: argparse.Namespace, dataset_spec: str, command: str) -> Any:
    """Open the dataset and the run directory, load the model, bring up Ray, run.

    Returns:
        The :class:`~pipeline.runner.RunSummary`.
    """
    from pipeline.datasets import limit_dataset, open_dataset
    from pipeline.images import DEFAULT_MAX_PIXELS
    from pipeline.rundir import RunDir
    from pipeline.runner import ClusterConfig, RunConfig

    options = {"path_column": getattr(args, "path_column", None),
               "id_column": getattr(args, "id_column", None)}
    source = limit_dataset(open_dataset(dataset_spec, options), getattr(args, "limit", None))
    config = RunConfig(model=args.model, multiscale=args.multiscale, max_size=args.max_size,
                       shard_size=args.shard_size,
                       max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
                       keep_score=args.keep_score, dtype=args.dtype,
                       bucket=getattr(args, "bucket", False))
    cluster = ClusterConfig(num_workers=args.workers, num_gpus_per_worker=args.gpus_per_worker,
                            num_cpus_per_worker=args.cpus_per_worker,
                            batch_size=args.batch_size, optimize=args.optimize,
                            wait_timeout=args.wait_timeout or None)
    description = source.describe()
    model = load_model_description(args.model, args.dtype)
    from pipeline.storage import StorageError

    try:
        run = RunDir.open_for_writing(args.out, inputs=input_folders(description),
                                      force_unlock=getattr(args, "force_unlock", False))
    except StorageError as exc:  # the bucket: missing, access denied, unreachable
        raise CommandError(f"--out {args.out}: {exc}") from None
    try:
        if args.model == "shipped" and description.get("kind") not in (
                "synthetic", "synthetic-fddb"):
            print(f"dsfd {command}: note: the shipped model was trained on synthetic faces "
                  "only; for real photographs use the official checkpoint "
                  "(--model release-r152:PATH)", file=sys.stderr)
        if args.restart:
            run.restart()
        return _run_on_ray(args, source, run, config, cluster, dataset_spec, model)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"complete shards are kept in {run.root}: run the same command "
                                "again to resume") from None
    finally:
        run.release()


def _run_on_ray(args: argparse.Namespace, source: Any, run: Any, config: Any, cluster: Any,
                dataset_spec: str, model: dict[str, Any]) -> Any:
    from pipeline.runner import run_inference

    log = RayLog(log_file_for(args.out), verbose=verbose_requested(getattr(args, "verbose", False)))
    if log.path.parent.parent != Path(os.path.abspath(str(args.out))):
        print(f"dsfd: note: Ray's logs go to {log.path}", file=sys.stderr)
    try:
        with log.stdout():  # Ray's own messages stay off stdout, shutdown included
            started = init_ray(args.address, log)
            try:
                return run_inference(source, run, config, cluster, dataset_spec=dataset_spec,
                                     model=model, retry_errors=args.retry_errors)
            finally:
                if started:
                    import ray

                    ray.shutdown()
    except RuntimeError as exc:
        log.write_failure("run", exc)
        raise CommandError(f"{_first_line(exc)} (full log: {log.path})") from exc
    except OSError as exc:  # the run directory: disk full, read-only, vanished, ...
        if isinstance(exc, FileNotFoundError | PermissionError | NotADirectoryError):
            raise
        log.write_failure("run", exc)
        raise CommandError(_first_line(exc)) from exc
    finally:
        log.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe_summary(summary: Any) -> str:
    """One line about the whole run (earlier invocations included), then this invocation."""
    rate = summary.images_run / summary.seconds if summary.seconds else 0.0
    return (f"{summary.num_images} images in {summary.num_shards} shards: "
            f"{summary.num_errors} errors, {summary.num_detections} detections; this call ran "
            f"{summary.shards_run} shards ({summary.shards_skipped} already done) in "
            f"{summary.seconds:.1f} s ({rate:.1f} images/s, {summary.num_workers} workers) "
            f"-> {summary.run_dir}")


def run(args: argparse.Namespace) -> int:
    summary = run_job(args, args.dataset, "run")
    print(f"dsfd run: {describe_summary(summary)}", file=sys.stdout)
    return 0
