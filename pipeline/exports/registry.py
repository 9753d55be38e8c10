"""The exporter registry: one :class:`Exporter` per format, looked up by name.

Registering names a function ``"module:function"`` that is imported only when an export
runs, so listing the formats (``dsfd --help``, the ``--export`` choices of ``dsfd label``)
imports neither numpy nor pyarrow. Nothing here imports torch or Ray.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ExportSummary", "Exporter", "check_min_score", "exporter_names", "get_exporter",
           "register"]


@dataclass(frozen=True)
class ExportSummary:
    """What one export wrote (every format).

    Attributes:
        num_images: images in the export: COCO ``images`` entries, WIDER and YOLO label files.
        num_detections: boxes written.
        num_empty: images in the export without a box.
        num_errors: unreadable (``error``) images left out of the export. WIDER writes them
            as empty files instead (its evaluators expect a file per image), so they count
            in ``num_images`` and ``num_empty`` there and this is 0.
        num_files: files written (COCO 1; WIDER one per image; YOLO one per image plus
            ``classes.txt``).
    """

    num_images: int
    num_detections: int
    num_empty: int
    num_errors: int
    num_files: int

    def describe(self) -> str:
        """One line for the command line, e.g. ``3 files (5 detections, 1 images without
        detections)``; unreadable images left out are named when there are any."""
        if self.num_files == self.num_images:
            what = f"{self.num_files} files"
        else:
            what = (f"{self.num_images} images in {self.num_files} "
                    f"file{'' if self.num_files == 1 else 's'}")
        counts = [f"{self.num_detections} detections",
                  f"{self.num_empty} images without detections"]
        if self.num_errors:
            counts.append(f"{self.num_errors} unreadable images left out")
        return f"{what} ({', '.join(counts)})"


ExportFunction = Callable[..., ExportSummary]


@dataclass(frozen=True)
class Exporter:
    """One export format.

    Attributes:
        name: the ``KIND`` of ``dsfd export KIND`` and ``dsfd label --export KIND``.
        description: one line for ``--help``.
        default_output: the file or folder ``dsfd label`` writes inside the run directory.
        target: ``"module:function"``; the function takes ``(run_dir, out, *, min_score,
            clip)`` (no ``clip`` when ``always_clips``) and returns an :class:`ExportSummary`.
        always_clips: the format cannot hold boxes outside the image (YOLO's normalised
            coordinates), so boxes are clipped whatever ``clip`` asks.
        takes_info: the format has a place for provenance (COCO's ``info``): the function
            also takes ``info``, a JSON-able dict written there.
    """

    name: str
    description: str
    default_output: str
    target: str
    always_clips: bool = False
    takes_info: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.name, str) and self.name.isidentifier()):
            raise ValueError(f"exporter name must be a word, got {self.name!r}")
        module, _, function = self.target.partition(":")
        if not (module and function):
            raise ValueError(f"exporter {self.name!r}: target must be 'module:function', "
                             f"got {self.target!r}")
        if not self.default_output or os.sep in self.default_output or "/" in self.default_output:
            raise ValueError(f"exporter {self.name!r}: default_output must be a plain name, "
                             f"got {self.default_output!r}")

    def function(self) -> ExportFunction:
        """The export function (its module imported now)."""
        module, _, name = self.target.partition(":")
        function: ExportFunction = getattr(importlib.import_module(module), name)
        return function

    def export(self, run_dir: str | os.PathLike[str], out: str | os.PathLike[str], *,
               min_score: float = 0.0, clip: bool = False,
               info: dict[str, Any] | None = None) -> ExportSummary:
        """Export the detections of ``run_dir`` with ``score >= min_score`` to ``out``.

        Args:
            run_dir: a run directory.
            out: the file or folder to write (see the format's module for what it accepts).
            min_score: keep detections whose float32 score is at least this (0..1).
            clip: clip boxes to their image and drop those left without area (labels);
                False keeps the boxes as detected (a benchmark submission). Ignored, as
                True, when :attr:`always_clips`.
            info: provenance written into the export where the format has a place for it
                (:attr:`takes_info`), e.g. how ``min_score`` was chosen; else left out.
        """
        kwargs: dict[str, Any] = {"min_score": min_score}
        if not self.always_clips:
            kwargs["clip"] = clip
        if info and self.takes_info:
            kwargs["info"] = info
        if isinstance(out, str) and out.startswith(("s3://", "gs://", "gcs://")):
            from pipeline.exports.remote import export_to_store  # staged, then uploaded

            return export_to_store(self.function(), run_dir, out, kwargs)
        return self.function()(run_dir, out, **kwargs)


_EXPORTERS: dict[str, Exporter] = {}


def register(exporter: Exporter) -> Exporter:
    """Add ``exporter`` to the registry and return it.

    Raises:
        TypeError: not an :class:`Exporter`.
        ValueError: its name is taken.
    """
    if not isinstance(exporter, Exporter):
        raise TypeError(f"expected an Exporter, got {type(exporter).__name__}")
    if exporter.name in _EXPORTERS:
        raise ValueError(f"an exporter named {exporter.name!r} is already registered")
    _EXPORTERS[exporter.name] = exporter
    return exporter


def get_exporter(name: str) -> Exporter:
    """The exporter registered as ``name``.

    Raises:
        ValueError: no such exporter (the known names are listed).
    """
    try:
        return _EXPORTERS[name]
    except KeyError:
        raise ValueError(f"no exporter named {name!r}; known: "
                         f"{', '.join(exporter_names())}") from None


def exporter_names() -> tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(_EXPORTERS)


def check_min_score(min_score: float) -> float:
    """``min_score`` as a float.

    Raises:
        ValueError: not a finite number in ``[0, 1]``.
    """
    if not (isinstance(min_score, int | float) and not isinstance(min_score, bool)
            and math.isfinite(min_score) and 0.0 <= min_score <= 1.0):
        raise ValueError(f"min_score must be a number in [0, 1], got {min_score!r}")
    return float(min_score)
