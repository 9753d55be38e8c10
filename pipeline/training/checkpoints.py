"""Training checkpoints in ``CKPT_DIR``: atomic writes, the newest readable one, restore, and the
resume check against the saved ``train_config.json`` (torch, no Ray).

A checkpoint is :func:`dsfd.checkpoint.save_checkpoint`'s file (model config and weights) with
``extra`` holding the optimizer state, the step, the torch RNG state and the train config. It is
written as ``checkpoint-NNNNNNN.pt`` and copied to ``last.pt`` through a temporary name, so a
killed writer leaves a torn temporary, never a torn ``last.pt``; ``last.pt`` loads with
``dsfd.load_model``.
"""

from __future__ import annotations

import contextlib
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
    tmp = out / f".{LAST}.tmp"
    try:
        save_checkpoint(path, model, _checkpoint_extra(step, optimizer, config))
        shutil.copyfile(path, tmp)
        os.replace(tmp, out / LAST)
    except (OSError, RuntimeError) as exc:  # torch's writer raises RuntimeError on a full disk
        reason = _write_reason(exc, [path, tmp])
        for torn in (tmp, path):  # our exact names: a torn file is never left behind
            torn.unlink(missing_ok=True)
        raise OSError(f"cannot write the step {step} checkpoint to {out}: {reason}; free space "
                      "or fix the folder, then run the same command again to resume") from exc
    numbered = sorted(out.glob("checkpoint-*.pt"))
    for old in numbered[: max(0, len(numbered) - config.keep_checkpoints)]:
        old.unlink(missing_ok=True)
    return path


def _write_reason(exc: BaseException, written: list[Path]) -> str:
    """The system's words for a failed write (``No space left on device``), one line.

    torch's writer reports a short write as ``unexpected pos A vs B`` without the error
    number; then the cause is found from where it stopped: at the process's file-size limit
    (EFBIG), or on a file system with no room left (ENOSPC).
    """
    import errno as errno_codes
    import re
    import resource

    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    text = str(exc)
    found = re.search(r"errno[ =:]*(\d+)", text, flags=re.IGNORECASE)
    if found:
        return os.strerror(int(found[1]))
    for code in (errno_codes.ENOSPC, errno_codes.EFBIG, errno_codes.EDQUOT):
        if os.strerror(code).lower() in text.lower():
            return os.strerror(code)
    short = re.search(r"unexpected pos (\d+) vs (\d+)", text)
    if short:  # torch wrote up to the second number, then a write fell short
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and int(short[2]) + 64 * 1024 > limit:
            return os.strerror(errno_codes.EFBIG)
        if written and shutil.disk_usage(written[0].parent).free < 1024 * 1024:
            return os.strerror(errno_codes.ENOSPC)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


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


# settings that may change between invocations of one training run (they do not change what
# is learnt, or only where it stops)
RESUMABLE_CHANGES = frozenset({"stop_at", "log_every", "checkpoint_every", "max_failures",
                               "loader_workers", "keep_checkpoints", "gpus_per_worker",
                               "workers", "val_every"})


def check_resumable(config: TrainConfig) -> None:
    """Refuse to resume ``config.out`` with another config, before anything is written there.

    When ``out`` holds checkpoints and a ``train_config.json`` (of either layout), every
    setting but :data:`RESUMABLE_CHANGES` must be ``config``'s, and so must the resolved
    BatchNorm mode. An unreadable ``train_config.json`` only warns: the checkpoint itself is
    checked again when it is restored.

    Raises:
        ValueError: another config, naming the folder and every difference.
    """
    from pipeline.rundir import config_differences

    out = Path(config.out)
    saved = out / CONFIG_FILE
    if not saved.is_file() or not any(out.glob("*.pt")):
        return
    try:
        old = read_train_config(saved)
    except ValueError as exc:
        warnings.warn(f"cannot read {saved}: {exc}", stacklevel=2)
        return

    def compared(c: TrainConfig) -> dict[str, Any]:
        data = {k: v for k, v in c.to_dict().items() if k not in RESUMABLE_CHANGES}
        return {**data, "bn": c.bn_mode}

    diffs = config_differences(compared(old), compared(config))
    if diffs:
        raise ValueError(f"{out} holds a training run with another config ({'; '.join(diffs)});"
                         " use --restart to start over, or another --out")


def remove_training_outputs(out: Path) -> list[Path]:
    """``--restart``: remove what ``dsfd train`` wrote in ``out`` (its config, checkpoints,
    the best checkpoint, metrics, its TensorBoard event files and Ray Train's storage folder)
    and nothing else; returns what went."""
    removed: list[Path] = []
    for path in [out / CONFIG_FILE, out / LAST, out / METRICS, out / "best.pt",
                 out / "best.json",
                 *out.glob("checkpoint-[0-9][0-9][0-9][0-9][0-9][0-9][0-9].pt"),
                 # ours carry the suffix loop.TensorBoard gives them (pid, step, token)
                 *(out / "tb").glob("events.out.tfevents.*.step[0-9]*.*")]:
        if path.is_file():
            path.unlink()
            removed.append(path)
    with contextlib.suppress(OSError):
        (out / "tb").rmdir()  # only when nothing else is in it
    storage = out / "ray" / "dsfd-train"
    if storage.is_dir():
        shutil.rmtree(storage)
        removed.append(storage)
        with contextlib.suppress(OSError):
            (out / "ray").rmdir()  # only when nothing else is in it
    return removed


def trim_metrics(out: Path, step: int) -> None:
    """Drop progress lines past ``step`` (logged after the checkpoint a resume starts from),
    and a torn last line (a writer killed mid-line); every other line is kept as it is."""
    path = out / METRICS
    if not path.is_file():
        return

    def step_of(line: str) -> float:
        try:
            entry = json.loads(line)
            return float(entry["step"])
        except (ValueError, TypeError, KeyError):
            return float("inf")  # torn or foreign: dropped

    kept = [line for line in path.read_text().splitlines() if step_of(line) <= step]
    tmp = out / f".{METRICS}.tmp"
    tmp.write_text("".join(f"{line}\n" for line in kept))
    os.replace(tmp, path)
