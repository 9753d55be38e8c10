"""Model configuration: the settings a checkpoint stores so the model can be rebuilt."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

INPUT_FORMATS: tuple[str, ...] = ("bgr_mean", "rgb_imagenet")
# Where VGG16's L2Norm layers sit (see ``docs/model.md``): "before_fem" normalises conv3_3..5_3
# once and feeds the normalised maps to the first shot and to the FEM (the official code);
# "per_shot" normalises of1..of3 for the first shot and ef1..ef3 for the second, the FEM seeing
# the raw maps (DSFD.pytorch).
L2NORM_PLACEMENTS: tuple[str, ...] = ("before_fem", "per_shot")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture settings of a DSFD model.

    Attributes:
        name: a registered architecture (:func:`dsfd.registry.model_names`): ``"vgg16"``,
            ``"resnet50"``, ``"resnet101"``, ``"resnet152"`` (paper-faithful dual shot) or
            ``"release-r152"`` (the network of the official checkpoint).
        width: channel multiplier (1.0 = the real network); small values make fast variants
            for tests and CPU demos. Every channel count ``c`` becomes ``max(4, round(c*width))``.
        input_size: nominal square training/input side in pixels (640 in the paper). The model
            runs on any size; this only documents what it was trained for.
        l2norm: where VGG16's L2Norm layers sit (:data:`L2NORM_PLACEMENTS`): ``"before_fem"``
            (default, as the official code: of1..of3 normalised once, for the first shot and
            the FEM) or ``"per_shot"`` (of1..of3 for the first shot, ef1..ef3 for the second,
            as DSFD.pytorch). Only ``vgg16`` has L2Norm; other models keep the default.
            Checkpoints written before this field existed load with the default, which is
            what they were built with.
    """

    name: str = "vgg16"
    width: float = 1.0
    input_size: int = 640
    l2norm: str = "before_fem"

    def __post_init__(self) -> None:
        from dsfd.registry import model_names

        if self.name not in model_names():
            raise ValueError(f"ModelConfig.name: expected one of {model_names()}, "
                             f"got {self.name!r}")
        if not isinstance(self.width, int | float) or not 0 < self.width <= 4:
            raise ValueError(f"ModelConfig.width: expected a number in (0, 4], got {self.width!r}")
        if not isinstance(self.input_size, int) or self.input_size < 32:
            raise ValueError(f"ModelConfig.input_size: expected an int >= 32, "
                             f"got {self.input_size!r}")
        if self.l2norm not in L2NORM_PLACEMENTS:
            raise ValueError(f"ModelConfig.l2norm: expected one of {L2NORM_PLACEMENTS}, "
                             f"got {self.l2norm!r}")
        if self.l2norm != L2NORM_PLACEMENTS[0] and self.name != "vgg16":
            raise ValueError(f"ModelConfig.l2norm={self.l2norm!r}: only vgg16 has L2Norm layers, "
                             f"{self.name!r} takes the default {L2NORM_PLACEMENTS[0]!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` for checkpoints (loadable with ``weights_only=True``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming ``source``."""
        if not isinstance(data, dict):
            raise TypeError(f"{source}: model config must be a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown model config keys {unknown}; known: "
                             f"{sorted(known)}")
        return cls(**data)


def scaled(channels: int, width: float) -> int:
    """Channel count under the width multiplier: ``max(4, round(channels * width))``."""
    if width == 1.0:
        return channels
    return max(4, int(round(channels * width)))
