"""Detectors from outside the project: ``py:MODULE:CALLABLE`` (a user's own factory) and
installed plugins of the entry-point group ``dsfd.detectors``.

A factory is called as ``factory(*args, device=..., batch_size=...)``, each keyword passed only
when its signature takes it; ``py:`` factories get no positional argument, an entry point
``NAME:ARG`` gets ``ARG``. It returns a :class:`~pipeline.detectors.base.FaceDetector` whose
``identity`` has at least a ``name``. The identity a run records adds what makes it exact:

- ``checksum``: the factory's own, else the sha256 of the file its identity names under
  ``file``, else ``module:`` and the sha256 of the source file of the factory's module;
- ``file_sha256`` when the identity names a ``file``;
- ``distribution``: ``{"name", "version"}`` of the installed distribution that provides the
  module (``importlib.metadata``), or ``None`` for a module that is not installed;
- ``plugin``: how it was found (``py`` or ``entry-point``, module, callable);
- ``postprocess``: the factory's, else ``{}``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata as metadata
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline.detectors.base import FaceDetector, register_detector

ENTRY_POINT_GROUP = "dsfd.detectors"


class PluginDetector:
    """A plugin's detector with the identity a run records; everything else is the plugin's.

    Args:
        inner: the detector the factory returned.
        identity: the recorded identity (see the module docstring).
    """

    def __init__(self, inner: FaceDetector, identity: dict[str, Any]) -> None:
        self.inner = inner
        self.identity = identity
        self.device = inner.device

    def prepare(self, pixels: np.ndarray, *, max_size: int | None) -> Any:
        return self.inner.prepare(pixels, max_size=max_size)

    def detect_prepared(self, batch: Sequence[Any],
                        sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
        return self.inner.detect_prepared(batch, sizes)

    def detect_multiscale(self, pixels: np.ndarray, *, max_size: int | None) -> np.ndarray:
        return self.inner.detect_multiscale(pixels, max_size=max_size)

    def __getattr__(self, name: str) -> Any:  # the plugin's extras (e.g. a ``detect``)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def open_python_detector(spec: str, device: str, batch_size: int) -> PluginDetector:
    """Open ``py:MODULE:CALLABLE`` (``CALLABLE`` may be dotted, ``Class.create``).

    Raises:
        ValueError: the module cannot be imported, the callable is missing or not callable, or
            it fails or returns no valid detector (one line naming the spec).
    """
    module_name, _, attribute = spec.removeprefix("py:").partition(":")
    if not module_name or not attribute:
        raise ValueError(f"model {spec!r}: expected py:MODULE:CALLABLE")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's input
        raise ValueError(f"model {spec!r}: cannot import module {module_name!r}: "
                         f"{_one_line(exc)}") from None
    factory: Any = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise ValueError(f"model {spec!r}: module {module_name!r} has no attribute "
                             f"{attribute!r}")
        factory = getattr(factory, part)
    detector = _make(spec, factory, (), device, batch_size)
    where = {"kind": "py", "module": module_name, "callable": attribute}
    return PluginDetector(detector, _recorded_identity(spec, detector, module,
                                                       _distribution_of(module_name), where))


def _entry_points(name: str) -> list[metadata.EntryPoint]:
    return [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]


def is_entry_point_spec(spec: str) -> bool:
    """Whether an installed plugin registered the name ``spec`` (or ``NAME`` of ``NAME:ARG``)."""
    return bool(_entry_points(spec.partition(":")[0]))


def open_entry_point_detector(spec: str, device: str, batch_size: int) -> PluginDetector:
    """Open ``NAME`` or ``NAME:ARG`` through the ``dsfd.detectors`` entry point ``NAME``.

    Raises:
        ValueError: two distributions register ``NAME``, or the plugin fails to load or returns
            no valid detector (one line naming the spec).
    """
    name, has_arg, arg = spec.partition(":")
    found = _entry_points(name)
    if len(found) != 1:
        owners = sorted({ep.dist.name if ep.dist else "?" for ep in found})
        raise ValueError(f"model {spec!r}: {len(found)} installed plugins register "
                         f"{name!r} ({', '.join(owners)})")
    entry = found[0]
    try:
        factory = entry.load()
    except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not raised
        raise ValueError(f"model {spec!r}: cannot load the plugin {entry.value!r}: "
                         f"{_one_line(exc)}") from None
    detector = _make(spec, factory, (arg,) if has_arg else (), device, batch_size)
    distribution = ({"name": entry.dist.name, "version": entry.dist.version}
                    if entry.dist else None)
    where = {"kind": "entry-point", "group": ENTRY_POINT_GROUP, "name": name,
             "value": entry.value}
    module = sys.modules.get(entry.module)
    return PluginDetector(detector, _recorded_identity(spec, detector, module, distribution,
                                                       where))


def _make(spec: str, factory: Any, args: tuple[str, ...], device: str,
          batch_size: int) -> FaceDetector:
    """Call ``factory`` and check that it returned a detector with an identity."""
    if not callable(factory):
        raise ValueError(f"model {spec!r}: {_name_of(factory)} is not callable "
                         f"(expected a factory returning a FaceDetector)")
    kwargs = {k: v for k, v in (("device", device), ("batch_size", batch_size))
              if _takes_keyword(factory, k)}
    try:
        detector = factory(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the plugin's failure, in one line
        raise ValueError(f"model {spec!r}: {_name_of(factory)} failed: "
                         f"{_one_line(exc)}") from None
    if not isinstance(detector, FaceDetector):
        raise ValueError(f"model {spec!r}: {_name_of(factory)} returned "
                         f"{type(detector).__name__}, not a FaceDetector (needs identity, "
                         "device, prepare, detect_prepared, detect_multiscale)")
    identity = getattr(detector, "identity", None)
    if not isinstance(identity, dict) or not isinstance(identity.get("name"), str) \
            or not identity["name"]:
        raise ValueError(f"model {spec!r}: the detector's identity must be a dict with a "
                         f"non-empty 'name', got {identity!r:.200}")
    return detector


def _recorded_identity(spec: str, detector: FaceDetector, module: Any,
                       distribution: dict[str, str] | None,
                       where: dict[str, str]) -> dict[str, Any]:
    """The factory's identity plus checksum, distribution and origin (see the module doc)."""
    identity = dict(detector.identity)
    file = identity.get("file")
    if isinstance(file, str) and file:
        try:
            identity["file_sha256"] = _sha256_file(file)
        except OSError as exc:
            raise ValueError(f"model {spec!r}: the detector's identity names the file {file!r}, "
                             f"which cannot be read: {exc.strerror or exc}") from None
    if not identity.get("checksum"):
        source = getattr(module, "__file__", None)
        identity["checksum"] = (identity.get("file_sha256")
                                or (f"module:{_sha256_file(source)}" if source else ""))
    if not identity["checksum"]:
        raise ValueError(f"model {spec!r}: the detector's identity has no 'checksum' and "
                         "names no 'file' to take one from")
    identity.setdefault("postprocess", {})
    identity["distribution"] = distribution
    identity["plugin"] = where
    try:
        json.dumps(identity)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model {spec!r}: the detector's identity is not JSON-able: "
                         f"{exc}") from None
    return identity


def _distribution_of(module_name: str) -> dict[str, str] | None:
    """Name and version of the installed distribution providing ``module_name``, if any."""
    top = module_name.partition(".")[0]
    names = metadata.packages_distributions().get(top, [])
    if not names:
        return None
    return {"name": names[0], "version": metadata.version(names[0])}


def _takes_keyword(factory: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature (a builtin): pass nothing extra
        return False
    return any(p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               or p.kind is p.VAR_KEYWORD for p in parameters)


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _name_of(obj: Any) -> str:
    return f"{getattr(obj, '__qualname__', None) or type(obj).__name__ + ' object'!r:.100}"


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


register_detector("py", lambda spec: spec.startswith("py:"), open_python_detector)
register_detector("entry-point", is_entry_point_spec, open_entry_point_detector)
