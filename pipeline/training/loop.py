"""The DSFD training loop in pure PyTorch, run by every Ray Train worker and by the local mode.

SGD with momentum 0.9 and weight decay 5e-4 (or AdamW); learning rate ``lr`` then ``lr/10`` then
``lr/100`` with the paper's 40k/10k/10k schedule scaled to ``steps`` (boundaries at 2/3 and 5/6
of the steps). The loss is the progressive anchor loss (:mod:`dsfd.loss`) on IAM-augmented
images (:mod:`dsfd.augment`); each worker normalises its loss by its own positives (DDP, set up
by the caller, averages the gradients over workers). The data a step sees depends only on the
seed and the step (:class:`pipeline.training.data.TrainingImages`), so a resumed run continues
exactly.

Progress goes to ``CKPT_DIR/metrics.jsonl`` (one JSON object per logged step: loss parts, lr,
images/s, and ``resumed_from``, the step this attempt started from; one per validation: the
evaluator's ``val_*`` metrics (``val_easy``/``val_medium``/``val_hard`` for WIDER,
``val_fddb_discrete``/``val_fddb_continuous`` for FDDB), ``val_images``, ``best``), to
TensorBoard event files
under ``CKPT_DIR/tb`` and, in the process that trains (local mode), to a console callback. A
Ray Train worker shows nothing: the driver tails ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from pipeline.training.checkpoints import (
    METRICS,
    check_resumable,
    newest_readable,
    restore,
    save_training_checkpoint,
    trim_metrics,
)
from pipeline.training.config import TrainConfig, write_train_config
from pipeline.training.validation import Evaluator, is_validation_entry

Report = Callable[[int, dict[str, float], Any, Any], None]
"""``report(step, loss_parts, model, optimizer)``, called at every checkpoint step."""


def learning_rate(step: int, config: TrainConfig) -> float:
    """The paper's schedule scaled to ``config.steps``: lr, lr/10 after 2/3, lr/100 after 5/6."""
    if step < round(config.steps * 2 / 3):
        return config.lr
    if step < round(config.steps * 5 / 6):
        return config.lr * 0.1
    return config.lr * 0.01


def build_model(config: TrainConfig) -> torch.nn.Module:
    """The randomly initialised model of ``config.model`` (the same weights on every worker:
    seeded by ``config.seed``), with the backbone weights loaded when given and its
    BatchNorm layers set up for ``config.bn_mode``."""
    from dsfd.build import build_from_config
    from dsfd.checkpoint import load_backbone_weights
    from pipeline.training.batchnorm import convert_batchnorm

    torch.manual_seed(config.seed)  # identical initial weights on every worker
    model = build_from_config(config.model)
    if config.backbone_weights:
        load_backbone_weights(model, config.backbone_weights)
    return convert_batchnorm(model, config.bn_mode)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay (the paper's), or AdamW (``config.optimizer``)."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def make_loader(config: TrainConfig, input_format: str, start: int, rank: int) -> DataLoader:
    """The batches of worker ``rank`` for steps ``start`` to ``config.last_step``."""
    from pipeline.datasets import face_records
    from pipeline.training.data import StepBatchSampler, TrainingImages, collate

    records = [r for r in face_records(config.dataset) if r.path is not None]
    data = TrainingImages(records, config.augment_config(), config.seed, input_format)
    sampler = StepBatchSampler(start, config.last_step, config.batch_size, rank,
                               config.world_size)
    return DataLoader(
        data,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=config.loader_workers,
        persistent_workers=False,
    )


def step_loss(model: Any, images: torch.Tensor, boxes: list[torch.Tensor],
              config: TrainConfig) -> Any:
    """The loss of one batch (``images [B, 3, S, S]``, per-image boxes): both shots'
    progressive anchor loss, plus the auxiliary branches' losses where the model has them
    (the release's head and body)."""
    from dsfd.loss import detection_loss

    core = getattr(model, "module", model)
    out = model(images)
    targets = [b.to(images.device) for b in boxes]
    return detection_loss(core, out, images.shape[-2:], targets, config.loss_config())


Console = Callable[[dict[str, Any], int], None]
"""``console(entry, steps)``, called with every entry rank 0 appends to ``metrics.jsonl``
(loss lines and ``val_*`` lines), to show it; ``dsfd train`` renders them as one bar."""

SKIPPED_IN_TENSORBOARD = frozenset({"step", "time", "resumed_from", "best"})


def format_entry(entry: dict[str, Any], steps: int) -> str:
    """One console line for a ``metrics.jsonl`` entry (a loss line or a validation line)."""
    if is_validation_entry(entry):
        values = " ".join(f"{k.removeprefix('val_')} {v:.4f}" for k, v in entry.items()
                          if k.startswith("val_") and k != "val_images")
        metric = "TPR@1000FP" if any(k.startswith("val_fddb") for k in entry) else "AP"
        return (f"validation step {entry['step']}/{steps}: {metric} {values} "
                f"({entry['val_images']:.0f} images)" + (" best" if entry.get("best") else ""))
    return (f"step {entry['step']}/{steps} lr {entry['lr']:.1e} loss {entry['loss']:.4f} "
            f"(second conf {entry['second_conf'] + 0.0:.3f} "  # + 0.0: no "-0.000"
            f"box {entry['second_box'] + 0.0:.3f}) "
            f"{entry['images_per_s']:.1f} img/s")


def print_entry(entry: dict[str, Any], steps: int) -> None:
    """The default :data:`Console`: one line per entry on stdout."""
    print(format_entry(entry, steps), flush=True)


class TensorBoard:
    """Rank 0's scalars as TensorBoard event files under ``OUT/tb`` (tensorboardX, which
    ``ray[train]`` brings): ``loss/PART``, ``lr``, ``images_per_s``, ``val/SETTING``."""

    def __init__(self, out: Path, start: int) -> None:
        import os
        import uuid

        from tensorboardX import SummaryWriter

        # tensorboardX names a file by the second and the host only: a resume within the same
        # second would truncate the earlier invocation's file
        suffix = f".{os.getpid()}.step{start}.{uuid.uuid4().hex[:8]}"
        self.writer = SummaryWriter(logdir=str(out / "tb"), flush_secs=30,
                                    filename_suffix=suffix)

    def add(self, entry: dict[str, Any]) -> None:
        """Write the numeric values of one metrics entry at its step."""
        for key, value in entry.items():
            if key in SKIPPED_IN_TENSORBOARD or not isinstance(value, int | float):
                continue
            if key.startswith("val_"):
                tag = f"val/{key[4:]}"
            elif key in ("lr", "images_per_s"):
                tag = key
            else:
                tag = f"loss/{key}"
            self.writer.add_scalar(tag, float(value), global_step=int(entry["step"]),
                                   walltime=entry.get("time"))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Progress:
    """Rank 0's ``metrics.jsonl``, TensorBoard events and console entries."""

    def __init__(self, out: Path, config: TrainConfig, start: int,
                 console: Console | None = None) -> None:
        self.path, self.config, self.start = out / METRICS, config, start
        self.last_time, self.last_step = time.perf_counter(), start
        self.console = console
        self.tensorboard = TensorBoard(out, start)

    def log(self, step: int, lr: float, parts: dict[str, float]) -> None:
        """Append one metrics line (loss parts, lr, images/s) and show it."""
        now = time.perf_counter()
        rate = (step - self.last_step) * self.config.batch_size / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        self.record({"step": step, "lr": lr, **parts, "images_per_s": rate})

    def record(self, values: dict[str, Any]) -> None:
        """Append ``values`` (with ``time`` and ``resumed_from``) to ``metrics.jsonl``, to
        TensorBoard and to the console."""
        entry = {**values, "time": time.time(), "resumed_from": self.start}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")
        self.tensorboard.add(entry)
        if self.console is not None:
            self.console(entry, self.config.steps)

    def close(self) -> None:
        self.tensorboard.close()


def _validate(config: TrainConfig, step: int, model: Any, progress: Progress,
              best: dict[str, Any] | None, evaluator: Evaluator) -> dict[str, Any] | None:
    """Validate the current model (rank 0), record ``val_*`` and keep ``best.pt``; returns
    the best record so far."""
    from pipeline.training.validation import is_better, save_best, validation_metrics

    if config.val_dataset is None:
        return best
    core = getattr(model, "module", model)
    device = next(core.parameters()).device
    try:
        metrics = validation_metrics(core, config.val_dataset, evaluator,
                                     limit=config.val_limit, device=device)
    finally:
        core.train()  # dsfd.Detector switched it to eval mode
    metric = f"val_{config.select_by}"
    if metric not in metrics:
        raise ValueError(f"--select-by {config.select_by}: the validation of "
                         f"{config.val_dataset} gives {sorted(metrics)}")
    improved = is_better(metrics[metric], best)
    if improved:
        best = save_best(Path(config.out), step, core, metric, metrics[metric],
                         {"train_config": config.to_dict(), **metrics})
    progress.record({"step": step, **metrics, "best": improved})
    return best


def _resume(config: TrainConfig, model: Any, optimizer: Any,
            restored: dict[str, Any] | None) -> int:
    """Restore the newest of ``restored`` and ``out``'s newest readable checkpoint (by step);
    returns the step to start from (0 without a checkpoint)."""
    found = [s for s in (restored, newest_readable(Path(config.out))) if s is not None]
    if not found:
        return 0
    state = max(found, key=lambda s: s["extra"]["step"])
    return restore(state, model, optimizer, config)


def train_loop(
    config: TrainConfig,
    *,
    rank: int,
    report: Report,
    device: torch.device | None = None,
    prepare_model: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    restored: dict[str, Any] | None = None,
    console: Console | None = print_entry,
    evaluator: Evaluator | None = None,
) -> dict[str, float]:
    """Build, restore, train to ``config.last_step``, calling ``report`` at checkpoint steps.

    Args:
        config: the resolved settings.
        rank: this worker's rank (rank 0 logs progress).
        report: called as ``report(step, loss_parts, model, optimizer)`` every
            ``checkpoint_every`` steps, at ``steps`` and at ``stop_at``.
        device: where the model runs, when ``prepare_model`` is None.
        prepare_model: wraps and places the model for data parallelism (Ray Train's
            ``prepare_model``); the batches follow the model's device.
        restored: a checkpoint handed over by the caller (Ray Train's), used when it is newer
            than the newest readable checkpoint of ``config.out``.
        console: shows rank 0's metrics entries (None: nothing is shown).
        evaluator: scores the validations (needed when ``config.val_dataset`` is set).

    Returns:
        The last step and its loss parts.

    Raises:
        ValueError: ``config.val_dataset`` is set but no ``evaluator`` given.
    """
    if config.val_dataset is not None and evaluator is None:
        raise ValueError(f"validation on {config.val_dataset} needs an evaluator")
    out = Path(config.out)
    model = build_model(config)
    optimizer = make_optimizer(model, config)
    start = _resume(config, model, optimizer, restored)
    if rank == 0:
        trim_metrics(out, start)
        print(f"training from step {start} to {config.steps}", flush=True)
    model = prepare_model(model) if prepare_model is not None else model.to(device)
    device = next(model.parameters()).device
    model.train()
    progress = Progress(out, config, start, console) if rank == 0 else None
    best = _best_so_far(out) if rank == 0 else None
    parts: dict[str, float] = {}
    step = start
    input_format = str(getattr(model, "module", model).input_format)
    for images, boxes in make_loader(config, input_format, start, rank):
        lr = learning_rate(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = step_loss(model, images.to(device), boxes, config)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()
        step += 1
        parts = loss.as_dict()
        if progress is not None and (step % config.log_every == 0 or step == config.steps):
            progress.log(step, lr, parts)
        if progress is not None and evaluator is not None and config.validates_at(step):
            best = _validate(config, step, model, progress, best, evaluator)
        if step % config.checkpoint_every == 0 or step in (config.steps, config.stop_at):
            report(step, parts, model, optimizer)
    if progress is not None:
        progress.close()
    return {"step": step, **parts}


def _best_so_far(out: Path) -> dict[str, Any] | None:
    from pipeline.training.validation import read_best

    return read_best(out)


def train_in_process(config: TrainConfig, device: str | None = None,
                     console: Console | None = print_entry,
                     evaluator: Evaluator | None = None) -> dict[str, Any]:
    """Train in the calling process, without Ray (``workers == 0``).

    The same loop, data, checkpoints and metrics as a Ray Train worker of rank 0; writes
    ``train_config.json`` first.

    Args:
        config: the resolved settings (``workers`` must be 0).
        device: torch device; default CUDA when ``gpus_per_worker > 0`` and available, else CPU.
        console: shows the metrics entries (default: one printed line each).
        evaluator: scores the validations (needed when ``config.val_dataset`` is set).

    Returns:
        The final step and loss parts.

    Raises:
        ValueError: ``workers`` is not 0, or ``out`` holds a run of another model.
    """
    if config.workers != 0:
        raise ValueError(f"train_in_process needs workers == 0, got {config.workers}")
    if device is None:
        use_cuda = config.gpus_per_worker > 0 and torch.cuda.is_available()
        device = "cuda" if use_cuda else "cpu"
    check_resumable(config)
    write_train_config(config)

    def report(step: int, parts: dict[str, float], model: Any, optimizer: Any) -> None:
        core = getattr(model, "module", model)
        save_training_checkpoint(Path(config.out), step, core, optimizer, config)

    return train_loop(config, rank=0, report=report, device=torch.device(device),
                      console=console, evaluator=evaluator)
