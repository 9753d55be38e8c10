"""DSFD training on Ray Train (TorchTrainer, data parallel): the loop, checkpoints, resume.

One global batch (16 in the paper) is split over the workers (gloo on CPU, NCCL on GPU); SGD with
momentum 0.9 and weight decay 5e-4; learning rate ``lr`` then ``lr/10`` then ``lr/100`` with the
paper's 40k/10k/10k schedule scaled to ``steps`` (boundaries at 2/3 and 5/6 of the steps). The
loss is the progressive anchor loss (:mod:`dsfd.loss`) on IAM-augmented images
(:mod:`dsfd.augment`). Each worker normalises its loss by its own positives; DDP averages the
gradients over workers.

Checkpoints (``dsfd.checkpoint.save_checkpoint``: model config and weights, plus optimizer
state, step, RNG states and the train config in ``extra``) are written atomically every
``checkpoint_every`` steps and at the end as ``CKPT_DIR/checkpoint-NNNNNNN.pt`` and
``CKPT_DIR/last.pt`` (loadable with ``dsfd.load_model``), and reported to Ray Train, whose run
state lives under ``CKPT_DIR/ray``. A worker failure restarts the workers from the last reported
checkpoint (``FailureConfig(max_failures=...)``); rerunning the same command resumes from the
newest of the Ray checkpoint and ``last.pt``. The data a step sees depends only on the seed and
the step (:class:`pipeline.train_data.TrainingImages`), so a resumed run continues exactly.

Progress goes to the console and to ``CKPT_DIR/metrics.jsonl`` (one JSON object per logged step:
loss parts, lr, images/s, and ``resumed_from``, the step this attempt started from); the resolved
config to ``CKPT_DIR/train_config.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RUN_NAME = "dsfd-train"
LAST = "last.pt"
METRICS = "metrics.jsonl"
CONFIG = "train_config.json"


@dataclass(frozen=True)
class TrainConfig:
    """Resolved settings of ``dsfd train`` (saved as ``train_config.json``).

    Attributes:
        dataset: ``wider:ROOT[:split]`` or ``synthetic:DIR[:split]`` (train split by default).
        out: absolute checkpoint folder.
        model: architecture name (``vgg16``, ``resnet50``, ...).
        width: channel multiplier.
        workers: Ray Train workers (0: local mode, the loop runs in the calling process).
        gpus_per_worker: GPUs per worker (0 on CPU).
        steps: total optimisation steps (60k in the paper).
        batch_size: global batch, split evenly over the workers.
        image_size: square training input in pixels.
        lr: initial learning rate.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        checkpoint_every: steps between checkpoints.
        log_every: steps between progress lines.
        backbone_weights: local torchvision ImageNet state_dict for the backbone, or None.
        seed: seeds the initialisation, the data order and the augmentation.
        policy: ``"iam"`` or ``"ssd"`` augmentation.
        second_shot_weight: lambda of eq. (4).
        max_failures: worker-failure restarts Ray Train attempts.
        loader_workers: DataLoader processes per Ray worker (0: load in the training process).
        keep_checkpoints: numbered checkpoint files kept in ``out`` (``last.pt`` always).
        optimizer: ``"sgd"`` (the paper's: momentum, weight decay) or ``"adamw"`` (same lr
            schedule and weight decay; converges far faster from scratch, e.g. for the small
            synthetic-benchmark model, but is not the paper's setting).
        stop_at: end this invocation (with a checkpoint) after this step, e.g. to share a
            machine in time slices; rerunning continues to ``steps``. None: run to ``steps``.
    """

    dataset: str
    out: str
    model: str = "vgg16"
    width: float = 1.0
    workers: int = 2
    gpus_per_worker: float = 0.0
    steps: int = 60000
    batch_size: int = 16
    image_size: int = 640
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    checkpoint_every: int = 1000
    log_every: int = 10
    backbone_weights: str | None = None
    seed: int = 0
    policy: str = "iam"
    second_shot_weight: float = 1.0
    max_failures: int = 3
    loader_workers: int = 0
    keep_checkpoints: int = 3
    stop_at: int | None = None
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        if not os.path.isabs(self.out):
            raise ValueError(f"TrainConfig.out must be an absolute path, got {self.out!r}")
        if self.steps <= 0 or self.batch_size <= 0 or self.checkpoint_every <= 0:
            raise ValueError(
                f"steps, batch_size and checkpoint_every must be positive, got {self.steps}, "
                f"{self.batch_size}, {self.checkpoint_every}"
            )
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.batch_size % max(self.workers, 1):
            raise ValueError(
                f"batch size {self.batch_size} does not split evenly over {self.workers} workers"
            )
        if self.policy not in ("iam", "ssd"):
            raise ValueError(f"policy must be 'iam' or 'ssd', got {self.policy!r}")
        if self.stop_at is not None and not 0 < self.stop_at <= self.steps:
            raise ValueError(f"stop_at must be in 1..steps ({self.steps}), got {self.stop_at}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.log_every <= 0:
            raise ValueError(f"log_every must be positive, got {self.log_every}")

    @property
    def world_size(self) -> int:
        """Number of data-parallel processes (1 in local mode)."""
        return max(self.workers, 1)


def learning_rate(step: int, config: TrainConfig) -> float:
    """The paper's schedule scaled to ``config.steps``: lr, lr/10 after 2/3, lr/100 after 5/6."""
    if step < round(config.steps * 2 / 3):
        return config.lr
    if step < round(config.steps * 5 / 6):
        return config.lr * 0.1
    return config.lr * 0.01


# ------------------------------------------------------------------------------------------
# Checkpoints


def _checkpoint_extra(step: int, optimizer: Any, config: TrainConfig) -> dict[str, Any]:
    import torch

    return {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "train_config": asdict(config),
    }


def _save(out: Path, step: int, model: Any, optimizer: Any, config: TrainConfig) -> Path:
    """Write ``checkpoint-NNNNNNN.pt`` and ``last.pt`` atomically; prune old numbered files."""
    from dsfd.checkpoint import save_checkpoint

    path = out / f"checkpoint-{step:07d}.pt"
    save_checkpoint(path, model, _checkpoint_extra(step, optimizer, config))
    tmp = out / f".{LAST}.tmp"
    shutil.copyfile(path, tmp)
    os.replace(tmp, out / LAST)
    numbered = sorted(out.glob("checkpoint-*.pt"))
    for old in numbered[: max(0, len(numbered) - config.keep_checkpoints)]:
        old.unlink(missing_ok=True)
    return path


def _read(path: Path) -> dict[str, Any]:
    from dsfd.checkpoint import read_weights_file

    obj = read_weights_file(path)
    if not isinstance(obj, dict) or "extra" not in obj or "step" not in obj["extra"]:
        raise ValueError(f"{path}: not a training checkpoint (no extra.step)")
    return obj


def _latest_checkpoint(out: Path, distributed: bool = True) -> dict[str, Any] | None:
    """The newest of Ray Train's restored checkpoint (when under Ray Train) and
    ``out/last.pt`` (by step)."""
    found = []
    if distributed:
        import ray.train

        ray_ckpt = ray.train.get_checkpoint()
        if ray_ckpt is not None:
            with ray_ckpt.as_directory() as d:
                found.append(_read(Path(d) / LAST))
    local = _newest_readable(out)
    if local is not None:
        found.append(local)
    return max(found, key=lambda o: o["extra"]["step"]) if found else None


def _newest_readable(out: Path) -> dict[str, Any] | None:
    """The newest checkpoint of ``out`` that reads: ``last.pt``, else the numbered files from
    the newest down. A torn or unreadable file (a crash during a copy, a full disk) is skipped
    with a warning naming it; leftover temporaries of interrupted writes are removed.

    Raises:
        ValueError: checkpoints exist but none reads (rather than silently starting over).
    """
    for tmp in out.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    candidates = [out / LAST, *sorted(out.glob("checkpoint-*.pt"), reverse=True)]
    errors: list[Exception] = []
    for path in candidates:
        if not path.is_file():
            continue
        try:
            return _read(path)
        except (ValueError, OSError, RuntimeError) as exc:
            errors.append(exc)
            warnings.warn(f"skipping unreadable checkpoint {path}: {exc}", stacklevel=2)
    if errors:
        raise ValueError(str(errors[0])) from errors[0]
    return None


def _restore(state: dict[str, Any], model: Any, optimizer: Any, config: TrainConfig) -> int:
    import torch

    from dsfd.checkpoint import load_weights

    stored = state["model_config"]
    if stored.get("name") != config.model or float(stored.get("width")) != float(config.width):
        raise ValueError(
            f"{config.out}: checkpoint holds {stored}, not model {config.model!r} width "
            f"{config.width}; use another --out"
        )
    load_weights(model, state["state_dict"], source=f"{config.out}/{LAST}")
    optimizer.load_state_dict(state["extra"]["optimizer"])
    torch.set_rng_state(state["extra"]["torch_rng"])
    return int(state["extra"]["step"])


def _trim_metrics(out: Path, step: int) -> None:
    """Drop progress lines past ``step`` (logged after the checkpoint a resume starts from)."""
    path = out / METRICS
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
    tmp = out / f".{METRICS}.tmp"
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------
# The loop run by every worker


def _build(config: TrainConfig) -> Any:
    import torch

    from dsfd.build import build_model
    from dsfd.checkpoint import load_backbone_weights

    torch.manual_seed(config.seed)  # identical initial weights on every worker
    model = build_model(config.model, width=config.width, input_size=config.image_size)
    if config.backbone_weights:
        load_backbone_weights(model, config.backbone_weights)
    return model


def _loader(config: TrainConfig, input_format: str, start: int, rank: int) -> Any:
    from torch.utils.data import DataLoader

    from dsfd.augment import AugmentConfig
    from pipeline.train_data import StepBatchSampler, TrainingImages, collate, load_face_records

    records = [r for r in load_face_records(config.dataset) if r.path is not None]
    augment = AugmentConfig(image_size=config.image_size, policy=config.policy)  # type: ignore[arg-type]
    data = TrainingImages(records, augment, config.seed, input_format)
    stop = config.steps if config.stop_at is None else config.stop_at
    sampler = StepBatchSampler(start, stop, config.batch_size, rank, config.world_size)
    return DataLoader(
        data,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=config.loader_workers,
        persistent_workers=False,
    )


def _step_loss(model: Any, images: Any, boxes: list[Any], config: TrainConfig) -> Any:
    from dsfd.anchors import cached_anchors
    from dsfd.loss import LossConfig, progressive_anchor_loss

    core = getattr(model, "module", model)
    out = model(images)
    hw = (images.shape[-2], images.shape[-1])
    first_spec, second_spec = core.anchor_specs
    anchors_first = (
        cached_anchors(first_spec, hw, out.first.feature_hw, images.device)
        if out.first is not None and first_spec is not None
        else None
    )
    anchors_second = cached_anchors(second_spec, hw, out.second.feature_hw, images.device)
    targets = [b.to(images.device) for b in boxes]
    loss_config = LossConfig(second_shot_weight=config.second_shot_weight)
    return progressive_anchor_loss(
        out.first, out.second, (anchors_first, anchors_second), targets, loss_config
    )


class _Progress:
    """Rank 0's console and ``metrics.jsonl`` output."""

    def __init__(self, out: Path, config: TrainConfig, start: int) -> None:
        self.path, self.config, self.start = out / METRICS, config, start
        self.last_time, self.last_step = time.perf_counter(), start

    def log(self, step: int, lr: float, parts: dict[str, float]) -> None:
        now = time.perf_counter()
        rate = (step - self.last_step) * self.config.batch_size / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        entry = {
            "step": step,
            "lr": lr,
            **parts,
            "images_per_s": rate,
            "time": time.time(),
            "resumed_from": self.start,
        }
        with open(self.path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")
        print(
            f"step {step}/{self.config.steps} lr {lr:.1e} loss {parts['loss']:.4f} "
            f"(second conf {parts['second_conf']:.3f} box {parts['second_box']:.3f}) "
            f"{rate:.1f} img/s",
            flush=True,
        )


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
    path = _save(out, step, getattr(model, "module", model), optimizer, config)
    with tempfile.TemporaryDirectory(prefix="dsfd-ckpt-") as tmp:
        shutil.copyfile(path, Path(tmp) / LAST)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _make_optimizer(model: Any, config: TrainConfig) -> Any:
    import torch

    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def _train(config: TrainConfig, rank: int, device: Any, distributed: bool,
           report: Callable[[int, dict[str, float], Any, Any], None]) -> dict[str, float]:
    """The training loop shared by Ray Train workers and the in-process mode.

    Builds the model, restores the newest checkpoint of ``config.out``, trains to
    ``config.steps`` (or ``stop_at``) and calls ``report(step, parts, model, optimizer)`` at
    every checkpoint step. Returns the last step's loss parts.
    """
    out = Path(config.out)
    model = _build(config)
    optimizer = _make_optimizer(model, config)
    state = _latest_checkpoint(out, distributed)
    start = _restore(state, model, optimizer, config) if state is not None else 0
    if rank == 0:
        _trim_metrics(out, start)
        print(f"training from step {start} to {config.steps}", flush=True)
    if distributed:
        import ray.train.torch

        model = ray.train.torch.prepare_model(model)
    else:
        model = model.to(device)
    device = next(model.parameters()).device
    model.train()
    progress = _Progress(out, config, start) if rank == 0 else None
    parts: dict[str, float] = {}
    step = start
    input_format = str(getattr(model, "module", model).input_format)
    for images, boxes in _loader(config, input_format, start, rank):
        lr = learning_rate(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = _step_loss(model, images.to(device), boxes, config)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()
        step += 1
        parts = loss.as_dict()
        if progress is not None and (step % config.log_every == 0 or step == config.steps):
            progress.log(step, lr, parts)
        if step % config.checkpoint_every == 0 or step in (config.steps, config.stop_at):
            report(step, parts, model, optimizer)
    return {"step": step, **parts}


def train_loop_per_worker(config_dict: dict[str, Any]) -> None:
    """Ray Train's per-worker function: build, restore, train, checkpoint."""
    import ray.train

    config = TrainConfig(**config_dict)
    rank = ray.train.get_context().get_world_rank()

    def report(step: int, parts: dict[str, float], model: Any, optimizer: Any) -> None:
        _report(step, parts, model, optimizer, config, rank)

    _train(config, rank, None, distributed=True, report=report)


def train_in_process(config: TrainConfig, device: str | None = None) -> dict[str, Any]:
    """Train in the calling process, without Ray (``workers == 0``).

    The same loop, data, checkpoints and metrics as a Ray Train worker of rank 0.

    Args:
        config: the resolved settings (``workers`` must be 0).
        device: torch device; default CUDA when ``gpus_per_worker > 0`` and available, else CPU.

    Returns:
        The final step and loss parts.
    """
    import torch

    if config.workers != 0:
        raise ValueError(f"train_in_process needs workers == 0, got {config.workers}")
    if device is None:
        use_cuda = config.gpus_per_worker > 0 and torch.cuda.is_available()
        device = "cuda" if use_cuda else "cpu"
    _write_config(config)

    def report(step: int, parts: dict[str, float], model: Any, optimizer: Any) -> None:
        _save(Path(config.out), step, getattr(model, "module", model), optimizer, config)

    return _train(config, 0, torch.device(device), distributed=False, report=report)


def _write_config(config: TrainConfig) -> None:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{CONFIG}.tmp"
    tmp.write_text(json.dumps(asdict(config), indent=2) + "\n")
    os.replace(tmp, out / CONFIG)


# ------------------------------------------------------------------------------------------
# The driver


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
    """
    if config.workers == 0:
        return train_in_process(config)
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    out = Path(config.out)
    _write_config(config)
    use_gpu = config.gpus_per_worker > 0
    scaling = ScalingConfig(
        num_workers=config.workers,
        use_gpu=use_gpu,
        resources_per_worker={"CPU": 1, "GPU": config.gpus_per_worker} if use_gpu else {"CPU": 1},
    )
    run = RunConfig(
        name=RUN_NAME,
        storage_path=str(out / "ray"),
        checkpoint_config=CheckpointConfig(num_to_keep=1),
        # Train V2's FailureConfig (the stubs mypy sees are V1's).
        failure_config=FailureConfig(  # type: ignore[call-arg]
            max_failures=config.max_failures, controller_failure_limit=controller_failure_limit
        ),
    )
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=asdict(config),
        scaling_config=scaling,
        run_config=run,
    )
    result = trainer.fit()
    return dict(result.metrics or {})
