"""Inference-time model transforms (opt-in): fold BatchNorm into convolutions, channels-last.

``optimize_for_inference(model)`` returns an eval-mode copy; the input model is untouched.
Folding ``y = bn(conv(x))`` into one convolution (``w' = w * g / sqrt(v + eps)``,
``b' = (b - m) * g / sqrt(v + eps) + beta``) removes a pass over every feature map of the
ResNet backbones, the BN extras and ``release-r152``; outputs move by float rounding only
(about 1e-6 relative for trained weights). The folded copy checks itself against the original
on an example input before it is returned. Measured effects: ``benchmarks/bench_forward.py``
and ``docs/performance.md``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


@dataclass(frozen=True)
class InferenceOptions:
    """What :func:`optimize_for_inference` does.

    Attributes:
        fuse_batchnorm: fold every BatchNorm that directly follows a convolution into it.
        channels_last: store 4-D weights in ``torch.channels_last`` (feed NHWC inputs too).
        check_rtol: relative tolerance of the self-check of the folded model (against the
            largest output magnitude).
    """

    fuse_batchnorm: bool = True
    channels_last: bool = False
    check_rtol: float = 1e-4


def conv_bn_pairs(model: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """Names ``(conv, bn)`` of BatchNorms whose input is exactly a convolution's output.

    Found by running ``example`` with hooks (so it follows what ``forward`` really does, not
    the order modules were declared in); a convolution whose output feeds anything else
    besides its BatchNorm would not be folded correctly, which the self-check catches.
    """
    outputs: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    names = {id(m): n for n, m in model.named_modules()}

    def conv_hook(module: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
        outputs[id(output)] = names[id(module)]

    def bn_hook(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        conv = outputs.get(id(inputs[0]))
        if conv is not None:
            pairs.append((conv, names[id(module)]))

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(bn_hook))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return pairs


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _flat_outputs(output: object) -> list[Tensor]:
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, list | tuple):
        return [t for item in output for t in _flat_outputs(item)]
    if hasattr(output, "__dataclass_fields__"):
        return [t for f in output.__dataclass_fields__ for t in _flat_outputs(getattr(output, f))]
    return []


def fuse_batchnorm(model: nn.Module, example: Tensor, *, check_rtol: float = 1e-4) -> nn.Module:
    """An eval-mode copy of ``model`` with BatchNorm folded into the preceding convolutions.

    Args:
        model: any module (its BatchNorms use running statistics after folding).
        example: ``[N, 3, H, W]`` input used to find the pairs and check the result.
        check_rtol: largest allowed ``max |new - old| / max |old|`` over the outputs.

    Returns:
        The folded copy (the same attributes as ``model``: ``config``, ``anchor_specs``...).

    Raises:
        RuntimeError: the folded copy disagrees with the original beyond ``check_rtol``.
    """
    original = model.eval()
    fused = copy.deepcopy(original)
    for conv_name, bn_name in conv_bn_pairs(fused, example):
        conv = fused.get_submodule(conv_name)
        bn = fused.get_submodule(bn_name)
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        _set_module(fused, conv_name, fuse_conv_bn_eval(conv, bn))
        _set_module(fused, bn_name, nn.Identity())
    with torch.no_grad():
        want, got = _flat_outputs(original(example)), _flat_outputs(fused(example))
    for w, g in zip(want, got, strict=True):
        scale = float(w.abs().max()) if w.numel() else 0.0
        error = float((w - g).abs().max()) if w.numel() else 0.0
        if error > check_rtol * max(scale, 1e-12):
            raise RuntimeError(f"folding BatchNorm changed an output by {error:.3g} "
                               f"(largest value {scale:.3g}, allowed rtol {check_rtol})")
    return fused


def optimize_for_inference(model: nn.Module, example: Tensor,
                           options: InferenceOptions = InferenceOptions()) -> nn.Module:
    """An eval-mode copy of ``model`` transformed as ``options`` say.

    Args:
        model: a model from :func:`dsfd.build_model` / :func:`dsfd.load_model`.
        example: ``[N, 3, H, W]`` float input on the model's device (any size the model
            accepts), used to trace BatchNorm pairs and to check the folded copy.
        options: the transforms.

    Returns:
        The transformed copy, usable wherever ``model`` was (e.g. ``Detector(copy)``).
    """
    if not isinstance(options, InferenceOptions):
        raise TypeError(f"options must be InferenceOptions, got {type(options).__name__}")
    if example.ndim != 4 or example.shape[1] != 3:
        raise ValueError(f"example must be [N, 3, H, W], got {tuple(example.shape)}")
    out = (fuse_batchnorm(model, example, check_rtol=options.check_rtol)
           if options.fuse_batchnorm else copy.deepcopy(model).eval())
    if options.channels_last:
        out = out.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return out
