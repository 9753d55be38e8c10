"""The detector protocol and the registry of spec forms (no torch here)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class FaceDetector(Protocol):
    """What the pipeline needs of a face detector.

    Attributes:
        identity: JSON-able provenance, recorded in ``run.json`` and compared on resume:
            at least ``name`` and ``checksum`` (of the weights file, or of the weights when
            there is no file), plus ``source``, ``config`` and ``postprocess`` for DSFD.
        device: where it runs (``"cpu"``, ``"cuda"``).
    """

    identity: dict[str, Any]
    device: str

    def prepare(self, pixels: np.ndarray, *, max_size: int | None) -> Any:
        """One decoded ``(H, W, 3)`` uint8 RGB image as the detector's input (runs on decode
        threads, ahead of :meth:`detect_prepared`); ``max_size`` bounds the longer side."""
        ...

    def detect_prepared(self, batch: Sequence[Any],
                        sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        """Detect on prepared images; per image a float32 ``(K, 5)`` array ``x1 y1 x2 y2
        score`` in pixels of the original ``(H, W)`` given in ``sizes``, score descending."""
        ...

    def detect_multiscale(self, pixels: np.ndarray, *, max_size: int | None) -> np.ndarray:
        """The detector's multi-scale test on one ``(H, W, 3)`` uint8 image; float32
        ``(K, 5)`` in original pixels."""
        ...


Opener = Callable[[str, str, int], FaceDetector]
DTYPES = ("float32", "tf32", "bfloat16", "float16")
"""Forward precisions a run can ask for; ``float32`` is the default and the reference."""
_FORMS: list[tuple[str, Callable[[str], bool], Opener]] = []
_DTYPED: set[str] = set()  # forms whose opener also takes ``dtype=``


def register_detector(name: str, matches: Callable[[str], bool], opener: Opener, *,
                      takes_dtype: bool = False) -> None:
    """Register a spec form: ``matches(spec)`` says whether ``opener(spec, device,
    batch_size)`` opens it. Forms are tried in registration order; the DSFD family, which
    takes names and paths, is tried last. With ``takes_dtype`` the opener is also given
    ``dtype=`` (one of :data:`DTYPES`); other forms run float32 only."""
    if any(n == name for n, _, _ in _FORMS):
        raise ValueError(f"detector form {name!r} is already registered")
    _FORMS.append((name, matches, opener))
    if takes_dtype:
        _DTYPED.add(name)


def _load_builtin() -> None:
    # registration order is the order specs are tried; open_detector tries DSFD last
    import pipeline.detectors.dsfd_family  # noqa: F401 - registers the DSFD family
    import pipeline.detectors.onnx  # noqa: F401 - registers onnx:PATH
    import pipeline.detectors.opencv_haar  # noqa: F401 - registers opencv-haar
    import pipeline.detectors.plugins  # noqa: F401 - registers py:MODULE:CALLABLE, entry points


def open_detector(spec: str, device: str = "cpu", batch_size: int = 1, *,
                  dtype: str = "float32") -> FaceDetector:
    """Open the detector a model spec names, on ``device``, with forward precision ``dtype``.

    Raises:
        ValueError, FileNotFoundError: the spec names no detector, or its family does not run
            ``dtype`` (one line).
    """
    _load_builtin()
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"model spec must be a non-empty string, got {spec!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    ordered = [f for f in _FORMS if f[0] != "dsfd"] + [f for f in _FORMS if f[0] == "dsfd"]
    for name, matches, opener in ordered:
        if not matches(spec):
            continue
        if name in _DTYPED:
            return opener(spec, device, batch_size, dtype=dtype)  # type: ignore[call-arg]
        if dtype != "float32":
            raise ValueError(f"model {spec!r}: the {name} detector family runs float32 only, "
                             f"not dtype {dtype}")
        return opener(spec, device, batch_size)
    raise ValueError(f"model {spec!r}: no detector family takes this spec")
