"""DSFD: the Dual Shot Face Detector in pure PyTorch.

Public API: :func:`build_model`, :func:`load_model`, :func:`save_checkpoint`,
:class:`Detector`, :class:`PostprocessConfig`, :class:`ModelConfig`, :class:`ModelInfo`,
and the model output types :class:`DSFDOutput` / :class:`Shot`.
"""

from dsfd.build import build_from_config, build_model
from dsfd.checkpoint import ModelInfo, load_backbone_weights, load_model, save_checkpoint
from dsfd.config import MODEL_NAMES, ModelConfig
from dsfd.detector import Detector
from dsfd.model import DSFDOutput, Shot
from dsfd.postprocess import PostprocessConfig

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
    "save_checkpoint",
]
