"""The registry of DSFD architectures: one decorator line per model name.

A builder takes a :class:`~dsfd.config.ModelConfig` and returns a randomly initialised model;
weights are loaded elsewhere (:mod:`dsfd.checkpoint`). Adding a backbone is one builder in
``dsfd/build.py`` (or a module imported there) under ``@register_model("name")``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from torch import nn

    from dsfd.config import ModelConfig

Builder = Callable[["ModelConfig"], "nn.Module"]
_B = TypeVar("_B", bound=Builder)
_BUILDERS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[_B], _B]:
    """Decorator: register ``builder`` as the architecture ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def add(builder: _B) -> _B:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is already registered")
        _BUILDERS[name] = builder
        return builder

    return add


def _load_builtin() -> None:
    import dsfd.build  # noqa: F401 - registers the built-in architectures


def model_names() -> tuple[str, ...]:
    """Every registered architecture name, in registration order."""
    _load_builtin()
    return tuple(_BUILDERS)


def get_builder(name: str) -> Builder:
    """The builder of ``name``.

    Raises:
        ValueError: no such architecture (the message lists the registered ones).
    """
    _load_builtin()
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; expected one of {list(_BUILDERS)}")
    return _BUILDERS[name]
