"""Model configuration: the settings a checkpoint stores so the model can be rebuilt."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

INPUT_FORMATS: tuple[str, ...] = ("bgr_mean", "rgb_imagenet")


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
    """

    name: str = "vgg16"
    width: float = 1.0
    input_size: int = 640

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
