"""DSFD training: config, data, the pure-torch loop, the Ray Train driver, the anchor table.

:mod:`~pipeline.training.config` (:class:`TrainConfig`, saved as ``train_config.json``),
:mod:`~pipeline.training.data` (the augmented samples and the per-worker sampler),
:mod:`~pipeline.training.checkpoints` (atomic checkpoints, resume),
:mod:`~pipeline.training.loop` (the training loop, and the local mode without Ray),
:mod:`~pipeline.training.ray_driver` (Ray Train: :func:`fit`) and
:mod:`~pipeline.training.anchor_table` (the matched-anchor table of ``dsfd anchors``).
Importing this package loads torch but not Ray.
"""

from pipeline.training.config import TrainConfig, read_train_config, write_train_config
from pipeline.training.loop import learning_rate, train_in_process
from pipeline.training.ray_driver import fit

__all__ = [
    "TrainConfig",
    "fit",
    "learning_rate",
    "read_train_config",
    "write_train_config",
    "train_in_process",
]
