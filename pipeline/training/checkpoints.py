"""Training checkpoints in ``CKPT_DIR``: atomic writes, the newest readable one, restore, and the
resume check against the saved ``train_config.json`` (torch, no Ray).

A checkpoint is :func:`dsfd.checkpoint.save_checkpoint`'s file (model config and weights) with
``extra`` holding the optimizer state, the step, the torch RNG state and the train config. It is
written as ``checkpoint-NNNNNNN.pt`` and copied to ``last.pt`` through a temporary name, so a
killed writer leaves a torn temporary, never a torn ``last.pt``; ``last.pt`` loads with
``dsfd.load_model``.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from pipeline.training.config import CONFIG_FILE, TrainConfig, read_train_config

LAST = "last.pt"
METRICS = "metrics.jsonl"


def _checkpoint_extra(step: int, optimizer: Any, config: TrainConfig) -> dict[str, Any]:
    import torch

    return {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "train_config": config.to_dict(),
    }


def save_training_checkpoint(
    out: Path, step: int, model: Any, optimizer: Any, config: TrainConfig
) -> Path:
    """Write ``checkpoint-NNNNNNN.pt`` and ``last.pt`` atomically; prune old numbered files
    (``config.keep_checkpoints`` are kept). Returns the numbered file."""
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


def read_training_checkpoint(path: Path) -> dict[str, Any]:
    """The content of a training checkpoint.

    Raises:
        ValueError: not a loadable weights-only file, or no ``extra.step`` in it.
    """
    from dsfd.checkpoint import read_weights_file

    obj = read_weights_file(path)
    if not isinstance(obj, dict) or "extra" not in obj or "step" not in obj["extra"]:
        raise ValueError(f"{path}: not a training checkpoint (no extra.step)")
    return obj


def newest_readable(out: Path) -> dict[str, Any] | None:
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
            return read_training_checkpoint(path)
        except (ValueError, OSError, RuntimeError) as exc:
            errors.append(exc)
            warnings.warn(f"skipping unreadable checkpoint {path}: {exc}", stacklevel=2)
    if errors:
        raise ValueError(str(errors[0])) from errors[0]
    return None


def restore(state: dict[str, Any], model: Any, optimizer: Any, config: TrainConfig) -> int:
    """Load a checkpoint's weights, optimizer and torch RNG state; returns its step.

    Raises:
        ValueError: the checkpoint holds another architecture or width than ``config.model``.
    """
    import torch

    from dsfd.checkpoint import load_weights

    stored = state["model_config"]
    wanted = config.model
    if stored.get("name") != wanted.name or float(stored.get("width")) != float(wanted.width):
        raise ValueError(
            f"{config.out}: checkpoint holds {stored}, not model {wanted.name!r} width "
            f"{wanted.width}; use another --out"
        )
    load_weights(model, state["state_dict"], source=f"{config.out}/{LAST}")
    optimizer.load_state_dict(state["extra"]["optimizer"])
    torch.set_rng_state(state["extra"]["torch_rng"])
    return int(state["extra"]["step"])


def check_resumable(config: TrainConfig) -> None:
    """Refuse to resume ``config.out`` with another model, before anything is written there.

    When ``out`` holds checkpoints and a ``train_config.json`` (of either layout), its model
    name and width must be ``config``'s (the other settings may change between invocations).
    An unreadable ``train_config.json`` only warns: the checkpoint itself is checked again when
    it is restored.

    Raises:
        ValueError: another model, naming the folder and both models.
    """
    out = Path(config.out)
    saved = out / CONFIG_FILE
    if not saved.is_file() or not any(out.glob("*.pt")):
        return
    try:
        old = read_train_config(saved).model
    except ValueError as exc:
        warnings.warn(f"cannot read {saved}: {exc}", stacklevel=2)
        return
    new = config.model
    if old.name != new.name or float(old.width) != float(new.width):
        raise ValueError(
            f"{out}: checkpoint holds model {old.name!r} width {old.width} ({CONFIG_FILE}), "
            f"not model {new.name!r} width {new.width}; use another --out"
        )


def trim_metrics(out: Path, step: int) -> None:
    """Drop progress lines past ``step`` (logged after the checkpoint a resume starts from)."""
    path = out / METRICS
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
    tmp = out / f".{METRICS}.tmp"
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)
