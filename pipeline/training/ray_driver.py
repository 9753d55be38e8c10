"""DSFD training on Ray Train (TorchTrainer, data parallel): the driver and the per-worker entry.

One global batch (16 in the paper) is split over the workers (gloo on CPU, NCCL on GPU); every
worker runs :func:`pipeline.training.loop.train_loop`. Rank 0 writes the checkpoints
(:mod:`pipeline.training.checkpoints`) every ``checkpoint_every`` steps and at the end and
reports each to Ray Train, whose run state lives under ``CKPT_DIR/ray``. A worker failure
restarts the workers from the last reported checkpoint (``FailureConfig(max_failures=...)``);
rerunning the same command resumes from the newest of the Ray checkpoint and ``last.pt``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from pipeline.training.checkpoints import (
    LAST,
    METRICS,
    check_resumable,
    read_training_checkpoint,
    save_training_checkpoint,
)
from pipeline.training.config import TrainConfig, write_train_config
from pipeline.training.loop import Console, print_entry, train_in_process, train_loop
from pipeline.training.validation import Evaluator, is_validation_entry

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


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train's per-worker function: build, restore, train, checkpoint.

    Args:
        loop_config: ``{"train_config": TrainConfig.to_dict(), "evaluator": Evaluator | None}``.
    """
    import ray.train
    import ray.train.torch

    config = TrainConfig.from_dict(loop_config["train_config"])
    rank = ray.train.get_context().get_world_rank()

    def report(step: int, parts: dict[str, float], model: Any, optimizer: Any) -> None:
        _report(step, parts, model, optimizer, config, rank)

    train_loop(config, rank=rank, report=report, prepare_model=ray.train.torch.prepare_model,
               restored=_ray_checkpoint(), console=None, evaluator=loop_config["evaluator"])


class MetricsTail:
    """The driver's view of rank 0's progress: a thread that reads the entries rank 0
    appends to ``metrics.jsonl`` (Ray Train workers print nothing to the driver) and hands
    each one to ``console`` once: only entries written after ``since``, and a step shown
    before (a worker group restarted from an older checkpoint) is not shown again."""

    def __init__(self, path: Path, console: Console, steps: int, since: float,
                 poll_s: float = 0.5) -> None:
        self.path, self.console, self.steps, self.since = path, console, steps, since
        self.poll_s = poll_s
        self.shown: dict[str, int] = {}  # kind -> last step shown
        self.offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dsfd-metrics-tail", daemon=True)

    def __enter__(self) -> MetricsTail:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # the last lines

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def poll(self) -> None:
        """Show the complete lines appended since the last poll."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(0, 2)
                if fh.tell() < self.offset:  # rewritten (trimmed by a resume): start over
                    self.offset = 0
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            self._show(entry)

    def _show(self, entry: dict[str, Any]) -> None:
        if not isinstance(entry, dict) or entry.get("time", 0.0) < self.since:
            return
        kind = "val" if is_validation_entry(entry) else "loss"
        step = int(entry.get("step", 0))
        if step <= self.shown.get(kind, -1):
            return
        self.shown[kind] = step
        self.console(entry, self.steps)


def fit(config: TrainConfig, *, controller_failure_limit: int = -1,
        console: Console | None = print_entry,
        evaluator: Evaluator | None = None) -> dict[str, Any]:
    """Train with Ray Train's TorchTrainer (Ray must already be initialised), or in this
    process without Ray when ``config.workers == 0``.

    Args:
        config: the resolved settings; ``config.out`` is created and receives
            ``train_config.json``, checkpoints and ``metrics.jsonl``.
        controller_failure_limit: Ray Train controller retries (-1: unlimited, Ray's default;
            tests pass 0 so a worker group that cannot start fails instead of retrying forever).
        console: shows rank 0's metrics entries once each (default: a printed line each;
            None: nothing). With Ray the driver tails ``metrics.jsonl`` (:class:`MetricsTail`).
        evaluator: scores the validations (needed when ``config.val_dataset`` is set); it is
            pickled with the training function to the workers.

    Returns:
        The final metrics reported by rank 0 (``step`` and the loss parts).

    Raises:
        ValueError: ``config.out`` holds checkpoints of another model; a validation without
            an evaluator.
    """
    if config.val_dataset is not None and evaluator is None:
        raise ValueError(f"validation on {config.val_dataset} needs an evaluator")
    if config.workers == 0:
        return train_in_process(config, console=console, evaluator=evaluator)
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
        train_loop_config={"train_config": config.to_dict(), "evaluator": evaluator},
        scaling_config=scaling,
        run_config=run,
    )
    if console is None:
        result = trainer.fit()
    else:
        with MetricsTail(Path(config.out) / METRICS, console, config.steps, time.time()):
            result = trainer.fit()
    return dict(result.metrics or {})
