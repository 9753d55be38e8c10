"""The resolved settings of ``dsfd train`` (:class:`TrainConfig`), saved as ``train_config.json``.

The architecture is dsfd's own :class:`~dsfd.config.ModelConfig` (name, width, input size; the
input size is the square training input), the same record every checkpoint stores. The saved
layout (:meth:`TrainConfig.to_dict`) nests it under ``"model"``; :meth:`TrainConfig.from_dict`
also reads the earlier flat layout (``"model": NAME, "width": W, "image_size": S``), so a folder
written before the change resumes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dsfd.augment import AugmentConfig
from dsfd.config import ModelConfig
from dsfd.loss import LossConfig

CONFIG_FILE = "train_config.json"
WIDER_METRICS = ("easy", "medium", "hard")
"""WIDER FACE AP per setting (``val_easy``, ...), of a WIDER-style validation split."""
FDDB_METRICS = ("fddb_discrete", "fddb_continuous")
"""FDDB TPR at 1000 false positives (``val_fddb_discrete``, ...), of an FDDB validation set."""
SELECT_BY = WIDER_METRICS + FDDB_METRICS


@dataclass(frozen=True)
class TrainConfig:
    """Resolved settings of ``dsfd train``.

    Attributes:
        dataset: a dataset spec with face records (``wider:ROOT[:split]`` or
            ``synthetic:DIR[:split]``; the train split by default).
        out: absolute checkpoint folder.
        model: the architecture; ``model.input_size`` is the square training input in pixels.
        workers: Ray Train workers (0: local mode, the loop runs in the calling process).
        gpus_per_worker: GPUs per worker (0 on CPU).
        steps: total optimisation steps (60k in the paper).
        batch_size: global batch, split evenly over the workers.
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
        stop_at: end this invocation (with a checkpoint) after this step, e.g. to share a
            machine in time slices; rerunning continues to ``steps``. None: run to ``steps``.
        optimizer: ``"sgd"`` (the paper's: momentum, weight decay) or ``"adamw"`` (same lr
            schedule and weight decay; converges far faster from scratch, e.g. for the small
            synthetic-benchmark model, but is not the paper's setting).
        bn: BatchNorm in training: ``"train"`` (statistics of each worker's own batch),
            ``"sync"`` (of the global batch, across the workers), ``"frozen"`` (ImageNet
            statistics and affine kept), or ``"auto"``: frozen when ``backbone_weights`` are
            given, sync with several workers, else train (see :attr:`bn_mode`).
        conf_normalizer: ``N_conf`` of eq. (2): ``"positives"`` (the official code) or
            ``"positives+negatives"`` (the paper's text).
        auxiliary_weight: weight of each auxiliary branch's loss (the release's head/body).
        expand_prob: probability of the SSD branch's zoom-out (0, as the official code).
        val_dataset: a dataset spec with WIDER or FDDB ground truth to validate on (single
            scale, as ``dsfd run``), or None for no validation.
        val_every: steps between validations (0: only at the end); the end is always
            validated when ``val_dataset`` is set.
        val_limit: validate on the first ``val_limit`` images only (None: all).
        select_by: the metric ``best.pt`` is selected by: a WIDER AP setting (``easy``,
            ``medium``, ``hard``) or an FDDB TPR (``fddb_discrete``, ``fddb_continuous``).

    Raises:
        ValueError: a setting out of range, naming it and the value.
    """

    dataset: str
    out: str
    model: ModelConfig = field(default_factory=ModelConfig)
    workers: int = 2
    gpus_per_worker: float = 0.0
    steps: int = 60000
    batch_size: int = 16
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
    bn: str = "auto"
    conf_normalizer: str = "positives"
    auxiliary_weight: float = 1.0
    expand_prob: float = 0.0
    val_dataset: str | None = None
    val_every: int = 0
    val_limit: int | None = None
    select_by: str = "hard"

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelConfig):
            raise TypeError(f"TrainConfig.model must be a ModelConfig, got {self.model!r}")
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
        if self.bn not in ("auto", "train", "sync", "frozen"):
            raise ValueError(f"bn must be auto, train, sync or frozen, got {self.bn!r}")
        if self.conf_normalizer not in ("positives", "positives+negatives"):
            raise ValueError("conf_normalizer must be 'positives' or 'positives+negatives', "
                             f"got {self.conf_normalizer!r}")
        if not 0.0 <= self.expand_prob <= 1.0:
            raise ValueError(f"expand_prob must be in [0, 1], got {self.expand_prob}")
        if self.val_every < 0:
            raise ValueError(f"val_every must be >= 0, got {self.val_every}")
        if self.val_limit is not None and self.val_limit < 1:
            raise ValueError(f"val_limit must be >= 1 or None, got {self.val_limit}")
        if self.select_by not in SELECT_BY:
            raise ValueError(f"select_by must be one of {', '.join(SELECT_BY)}, got "
                             f"{self.select_by!r}")

    def validates_at(self, step: int) -> bool:
        """Whether ``step`` is a validation step (every ``val_every``, and the end)."""
        if self.val_dataset is None:
            return False
        return (self.val_every > 0 and step % self.val_every == 0) or step in (
            self.steps, self.stop_at)

    @property
    def bn_mode(self) -> str:
        """:attr:`bn` resolved: ``auto`` is frozen with ImageNet backbone weights, sync with
        several workers, else train."""
        if self.bn != "auto":
            return self.bn
        if self.backbone_weights:
            return "frozen"
        return "sync" if self.workers > 1 else "train"

    @property
    def image_size(self) -> int:
        """Side of the square training input in pixels (``model.input_size``)."""
        return self.model.input_size

    @property
    def world_size(self) -> int:
        """Number of data-parallel processes (1 in local mode)."""
        return max(self.workers, 1)

    @property
    def last_step(self) -> int:
        """The step this invocation ends at: ``stop_at``, else ``steps``."""
        return self.steps if self.stop_at is None else self.stop_at

    def augment_config(self) -> AugmentConfig:
        """The augmentation of the training samples (policy and input size)."""
        return AugmentConfig(image_size=self.image_size, policy=self.policy,  # type: ignore[arg-type]
                             expand_prob=self.expand_prob)

    def loss_config(self) -> LossConfig:
        """The loss settings: ``second_shot_weight``, the normaliser, the auxiliary weight."""
        return LossConfig(second_shot_weight=self.second_shot_weight,
                          conf_normalizer=self.conf_normalizer,  # type: ignore[arg-type]
                          auxiliary_weight=self.auxiliary_weight)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able ``dict``, the model config nested under ``"model"``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "train config") -> TrainConfig:
        """Inverse of :meth:`to_dict`; also reads the earlier flat layout (``"model"`` a name,
        with ``"width"`` and ``"image_size"`` beside it).

        Raises:
            TypeError, ValueError: not a dict, unknown keys or bad values (naming ``source``).
        """
        if not isinstance(data, dict):
            raise TypeError(f"{source}: train config must be a dict, got {type(data).__name__}")
        data = dict(data)
        model = data.get("model", {})
        if isinstance(model, str):  # the flat layout of earlier versions
            model = {"name": model, "width": data.pop("width", 1.0),
                     "input_size": data.pop("image_size", 640)}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown train config keys {unknown}; known: "
                             f"{sorted(known)}")
        data["model"] = ModelConfig.from_dict(model, source=f"{source}: model")
        return cls(**data)


def write_train_config(config: TrainConfig) -> Path:
    """Write ``OUT/train_config.json`` atomically (``OUT`` is created); returns its path."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{CONFIG_FILE}.tmp"
    tmp.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    os.replace(tmp, out / CONFIG_FILE)
    return out / CONFIG_FILE


def read_train_config(path: str | os.PathLike[str]) -> TrainConfig:
    """Read a ``train_config.json`` of either layout (see :meth:`TrainConfig.from_dict`).

    Raises:
        ValueError: the file is not JSON or not a train config (naming the file).
    """
    try:
        data = json.loads(Path(path).read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    try:
        return TrainConfig.from_dict(data, source=str(path))
    except TypeError as exc:
        raise ValueError(str(exc)) from None
