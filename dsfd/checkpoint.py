"""Checkpoints: save ours atomically, load ours / the official state_dict / ImageNet backbones.

Our checkpoint is a ``dict`` loadable with ``torch.load(weights_only=True)``::

    {"format": "dsfd-checkpoint", "version": 1,
     "model_config": ModelConfig.to_dict(),   # rebuilds the architecture from the file alone
     "state_dict": model.state_dict(),
     "extra": {...}}                            # plain data: step, metrics, ... (optional)

The official ``WIDERFace_DSFD_RES152.pth`` is a bare state_dict; it is recognised by its key
layout and loaded into ``release-r152``. Every file is read with ``weights_only=True``, so a
pickle that would run code is refused before any of it runs.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dsfd.backbones import reduced_fc
from dsfd.build import build_from_config
from dsfd.config import ModelConfig
from dsfd.registry import model_names
from dsfd.shipped import SHIPPED_SPEC, shipped_model_path

CHECKPOINT_FORMAT = "dsfd-checkpoint"
CHECKPOINT_VERSION = 1
RELEASE_PREFIX = "release-r152:"
# Keys only the official release layout has; enough to recognise a bare official state_dict.
RELEASE_MARKERS: tuple[str, ...] = ("layer1.0.weight", "latlayer3.weight", "cpm3_3.cpm1.weight",
                                    "loc.0.conv4.weight")


@dataclass(frozen=True)
class ModelInfo:
    """Where a model came from.

    Attributes:
        name: architecture name (``config.name``).
        config: the :class:`ModelConfig` it was built from.
        checksum: sha256 hex digest of the weights file, or None for a random init.
        source: ``"random-init"``, ``"checkpoint"`` (ours) or ``"official-state-dict"``.
        path: the weights file, or None.
        extra: the ``extra`` dict stored in our checkpoint (empty otherwise).
    """

    name: str
    config: ModelConfig
    checksum: str | None
    source: str
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module,
                    extra: dict[str, Any] | None = None) -> None:
    """Write ``model`` with its config to ``path`` atomically (temp file, fsync, rename).

    Args:
        path: destination file; its folder must exist.
        model: a model from :func:`dsfd.build_model` (it must carry ``model.config``).
        extra: plain data (numbers, strings, lists, dicts, tensors) stored alongside.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise TypeError(f"save_checkpoint: {type(model).__name__} has no ModelConfig "
                        "`config` attribute; build it with dsfd.build_model")
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
               "model_config": config.to_dict(), "state_dict": model.state_dict(),
               "extra": dict(extra or {})}
    dest = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_weights_file(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors naming the file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weights file not found: {p}")
    with open(p, "rb") as fh:
        head = fh.read(2)
    if head != b"PK" and head[:1] != b"\x80":  # neither torch's zip format nor a pickle
        raise ValueError(f"{p}: not a torch weights file (starts with {head!r})")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle, zip and tensor errors all mean "not a weights file"
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = [ln for ln in lines if "WeightsUnpickler error" in ln
                  or ln.startswith(("Trying to load unsupported", "Unsupported"))]
        reason = (detail or lines or [type(exc).__name__])[0]
        raise ValueError(f"{p}: not a loadable weights-only torch file ({reason})") from exc


def check_state_dict(model: nn.Module, state: Mapping[str, Any], *, source: str) -> None:
    """Raise ValueError listing missing, unexpected and mis-shaped keys (if any).

    BatchNorm ``num_batches_tracked`` buffers may be absent (files saved by torch < 0.4.1).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    misshaped = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
                 for k, v in state.items()
                 if k in own and isinstance(v, Tensor) and v.shape != own[k].shape]
    not_tensors = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if not (missing or unexpected or misshaped or not_tensors):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected),
                        ("mis-shaped", misshaped), ("not tensors", not_tensors)):
        if keys:
            shown = ", ".join(keys[:8]) + (f", ... (+{len(keys) - 8})" if len(keys) > 8 else "")
            parts.append(f"{len(keys)} {label} [{shown}]")
    raise ValueError(f"{source}: weights do not fit {getattr(model, 'config', '')}: "
                     + "; ".join(parts))


def load_weights(model: nn.Module, state: Mapping[str, Any], *, source: str) -> nn.Module:
    """Check then load ``state`` strictly into ``model``; returns ``model``."""
    check_state_dict(model, state, source=source)
    model.load_state_dict(dict(state), strict=True)
    return model


def _to(model: nn.Module, map_location: Any) -> nn.Module:
    """Move ``model`` to ``map_location`` when it names a device (str or torch.device)."""
    if isinstance(map_location, str | torch.device):
        return model.to(map_location)
    return model


def is_release_state_dict(obj: Any) -> bool:
    """True when ``obj`` looks like the official checkpoint (a bare state_dict of its layout)."""
    return isinstance(obj, Mapping) and all(k in obj for k in RELEASE_MARKERS)


def _from_our_checkpoint(obj: Mapping[str, Any], path: Path, checksum: str,
                         map_location: Any) -> tuple[nn.Module, ModelInfo]:
    version = obj.get("version")
    if version != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {version!r}, expected "
                         f"{CHECKPOINT_VERSION}")
    for key in ("model_config", "state_dict"):
        if key not in obj:
            raise ValueError(f"{path}: checkpoint has no {key!r} entry")
    config = ModelConfig.from_dict(obj["model_config"], source=f"{path}: model_config")
    model = load_weights(build_from_config(config), obj["state_dict"], source=str(path))
    info = ModelInfo(config.name, config, checksum, "checkpoint", str(path),
                     dict(obj.get("extra") or {}))
    return _to(model, map_location), info


def _release_width(state: Mapping[str, Any], path: Path) -> float:
    """Width multiplier of a release-layout state_dict, from its stem (64 channels at 1.0)."""
    stem = state.get("layer1.0.weight")
    if not isinstance(stem, Tensor) or stem.ndim != 4:
        raise ValueError(f"{path}: 'layer1.0.weight' is not a 4-D tensor")
    return 1.0 if stem.shape[0] == 64 else stem.shape[0] / 64


def _from_file(path: Path, map_location: Any, want_release: bool) -> tuple[nn.Module, ModelInfo]:
    obj = read_weights_file(path, map_location)
    checksum = sha256_file(path)
    if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        model, info = _from_our_checkpoint(obj, path, checksum, map_location)
        if want_release and info.name != "release-r152":
            raise ValueError(f"{path}: a {info.name} checkpoint, not release-r152")
        return model, info
    if isinstance(obj, Mapping) and (want_release or is_release_state_dict(obj)):
        config = ModelConfig(name="release-r152", width=_release_width(obj, path))
        model = load_weights(build_from_config(config), obj, source=str(path))
        info = ModelInfo(config.name, config, checksum, "official-state-dict", str(path))
        return _to(model, map_location), info
    kind = type(obj).__name__
    raise ValueError(f"{path}: unrecognised weights file (a {kind} that is neither a dsfd "
                     "checkpoint nor the official DSFD state_dict)")


def load_model(spec: str, map_location: Any = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Build or load a model from a spec; the model is returned in eval mode.

    Args:
        spec: a model name (random init, e.g. ``"vgg16"``), ``"shipped"`` (the small model
            shipped in the package, trained on the synthetic benchmark only), a checkpoint of
            ours, a bare official state_dict file (recognised by its keys), or
            ``"release-r152:PATH"``.
        map_location: passed to ``torch.load``; the model is moved there too.

    Returns:
        ``(model, info)``.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"model spec must be a non-empty string, got {spec!r}")
    if spec in model_names():
        config = ModelConfig(name=spec)
        model = _to(build_from_config(config), map_location).eval()
        return model, ModelInfo(spec, config, None, "random-init")
    if spec == SHIPPED_SPEC:
        spec = str(shipped_model_path())
    want_release = spec.startswith(RELEASE_PREFIX)
    path = Path(spec[len(RELEASE_PREFIX):] if want_release else spec)
    if not path.is_file():
        raise FileNotFoundError(f"model {spec!r}: not a model name {list(model_names())} and "
                                f"no such file {path}")
    model, info = _from_file(path, map_location, want_release)
    return model.eval(), info


VGG_CLASSIFIER_KEYS: tuple[str, ...] = ("classifier.0.weight", "classifier.0.bias",
                                        "classifier.3.weight", "classifier.3.bias")


def _vgg_fc_state(obj: Mapping[str, Any], own: Mapping[str, Tensor], path: str) -> dict[str, Any]:
    """``fc6``/``fc7`` entries for an extended VGG16 backbone from a torchvision state_dict.

    The ImageNet classifier is converted by :func:`dsfd.backbones.reduced_fc` when the file has
    it with finite values; otherwise (a features-only file, or torchvision's
    ``IMAGENET1K_FEATURES`` whose classifier is NaN) the layers keep their initialisation.
    """
    if "fc6.weight" in obj:  # already in our layout: loaded like the other keys
        return {}
    classifier = {k: obj[k] for k in VGG_CLASSIFIER_KEYS if k in obj}
    if len(classifier) != len(VGG_CLASSIFIER_KEYS):
        return {k: v for k, v in own.items() if k.startswith(("fc6.", "fc7."))}
    if not all(isinstance(v, Tensor) and bool(torch.isfinite(v).all())
               for v in classifier.values()):
        warnings.warn(f"{path}: the VGG16 classifier has non-finite values; fc6/fc7 keep "
                      "their initialisation", stacklevel=3)
        return {k: v for k, v in own.items() if k.startswith(("fc6.", "fc7."))}
    try:
        return reduced_fc(classifier)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def load_backbone_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load torchvision ImageNet weights (a local ``state_dict`` file) into ``model.backbone``.

    ResNet: the classifier (``fc.*``) is dropped; every other key must match. VGG16: the
    ``features.*`` keys must match, and the ImageNet classifier (``classifier.0`` = fc6,
    ``classifier.3`` = fc7) becomes the dilated ``fc6``/``fc7`` convs by SSD's "reduced fc"
    decimation (:func:`dsfd.backbones.reduced_fc`); a file without the classifier leaves them as
    initialised (Xavier).
    """
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise TypeError(f"{type(model).__name__} has no `backbone` (release-r152 loads the "
                        "official checkpoint instead)")
    obj = read_weights_file(path)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state_dict, got {type(obj).__name__}")
    state = {k: v for k, v in obj.items() if not k.startswith(("fc.", "classifier."))}
    own = backbone.state_dict()
    if "fc6.weight" in own:  # the extended VGG16
        state.update(_vgg_fc_state(obj, own, str(path)))
    load_weights(backbone, state, source=str(path))
    return model
