"""DSFD training on Ray Train (TorchTrainer, data parallel): the driver and the per-worker entry.

One global batch (16 in the paper) is split over the workers (gloo on CPU, NCCL on GPU); every
worker runs :func:`pipeline.training.loop.train_loop`. Rank 0 writes the checkpoints
(:mod:`pipeline.training.checkpoints`) every ``checkpoint_every`` steps and at the end and
reports each to Ray Train, whose run state lives under ``CKPT_DIR/ray``. A worker failure
restarts the workers from the last reported checkpoint (``FailureConfig(max_failures=...)``);
rerunning the same command resumes from the newest of the Ray checkpoint and ``last.pt``.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from pipeline.training.checkpoints import (
    LAST,
    check_resumable,
    read_training_checkpoint,
    save_training_checkpoint,
)
from pipeline.training.config import TrainConfig, write_train_config
from pipeline.training.loop import train_in_process, train_loop

RUN_NAME = "dsfd-train"


def _report(
    step: int, parts: dict[str, float], model: Any, optimizer: Any, config: TrainConfig, rank: int
) -> None:
    """Checkpoint (rank 0) and report to Ray Train (every rank, in step)."""
    import ray.train

    out = Path(config.out)
    metrics = {"step": step, **parts}
    if rank != 0:
        ray.train.report(metrics, checkpoint=None)
        return
    path = save_training_checkpoint(out, step, getattr(model, "module", model), optimizer, config)
    with tempfile.TemporaryDirectory(prefix="dsfd-ckpt-") as tmp:
        shutil.copyfile(path, Path(tmp) / LAST)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _ray_checkpoint() -> dict[str, Any] | None:
    """The checkpoint Ray Train restored this worker group from, if any."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        path = Path(directory) / LAST
        try:
            return read_training_checkpoint(path)
        except (ValueError, OSError, RuntimeError) as exc:  # torn: fall back to OUT's own
            warnings.warn(f"skipping unreadable Ray Train checkpoint {path}: {exc}; resuming "
                          "from the newest readable checkpoint of the output folder",
                          stacklevel=2)
            return None


def train_loop_per_worker(config_dict: dict[str, Any]) -> None:
    """Ray Train's per-worker function: build, restore, train, checkpoint."""
    import ray.train
    import ray.train.torch

    config = TrainConfig.from_dict(config_dict)
    rank = ray.train.get_context().get_world_rank()

    def report(step: int, parts: dict[str, float], model: Any, optimizer: Any) -> None:
        _report(step, parts, model, optimizer, config, rank)

    train_loop(config, rank=rank, report=report, prepare_model=ray.train.torch.prepare_model,
               restored=_ray_checkpoint())


def fit(config: TrainConfig, *, controller_failure_limit: int = -1) -> dict[str, Any]:
    """Train with Ray Train's TorchTrainer (Ray must already be initialised), or in this
    process without Ray when ``config.workers == 0``.

    Args:
        config: the resolved settings; ``config.out`` is created and receives
            ``train_config.json``, checkpoints and ``metrics.jsonl``.
        controller_failure_limit: Ray Train controller retries (-1: unlimited, Ray's default;
            tests pass 0 so a worker group that cannot start fails instead of retrying forever).

    Returns:
        The final metrics reported by rank 0 (``step`` and the loss parts).

    Raises:
        ValueError: ``config.out`` holds checkpoints of another model.
    """
    if config.workers == 0:
        return train_in_process(config)
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    check_resumable(config)
    write_train_config(config)
    use_gpu = config.gpus_per_worker > 0
    scaling = ScalingConfig(
        num_workers=config.workers,
        use_gpu=use_gpu,
        resources_per_worker={"CPU": 1, "GPU": config.gpus_per_worker} if use_gpu else {"CPU": 1},
    )
    run = RunConfig(
        name=RUN_NAME,
        storage_path=str(Path(config.out) / "ray"),
        checkpoint_config=CheckpointConfig(num_to_keep=1),
        # Train V2's FailureConfig (the stubs mypy sees are V1's).
        failure_config=FailureConfig(  # type: ignore[call-arg]
            max_failures=config.max_failures, controller_failure_limit=controller_failure_limit
        ),
    )
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config.to_dict(),
        scaling_config=scaling,
        run_config=run,
    )
    result = trainer.fit()
    return dict(result.metrics or {})
