"""DSFD: the Dual Shot Face Detector in pure PyTorch.

Public API: :func:`build_model`, :func:`load_model`, :func:`save_checkpoint`,
:class:`Detector`, :class:`PostprocessConfig`, :class:`ModelConfig`, :class:`ModelInfo`,
the architecture registry (:func:`model_names`, :func:`register_model`),
and the model output types :class:`DSFDOutput` / :class:`Shot`.
"""

from dsfd.build import build_from_config, build_model
from dsfd.checkpoint import ModelInfo, load_backbone_weights, load_model, save_checkpoint
from dsfd.config import ModelConfig
from dsfd.detector import Detector
from dsfd.model import DSFDOutput, Shot
from dsfd.postprocess import PostprocessConfig
from dsfd.registry import model_names, register_model

MODEL_NAMES: tuple[str, ...] = model_names()  # the built-in architectures, at import time

__all__ = [
    "MODEL_NAMES",
    "DSFDOutput",
    "Detector",
    "ModelConfig",
    "ModelInfo",
    "PostprocessConfig",
    "Shot",
    "build_from_config",
    "build_model",
    "load_backbone_weights",
    "load_model",
    "model_names",
    "register_model",
    "save_checkpoint",
]
