"""Inference transforms: folded BatchNorm gives the same outputs and detections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dsfd import Detector, build_model
from dsfd.optimize import InferenceOptions, conv_bn_pairs, fuse_batchnorm, optimize_for_inference


def _randomise_bn(model: nn.Module, seed: int) -> None:
    """Non-trivial running statistics and affine parameters, as trained weights have."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


@pytest.mark.parametrize(("name", "width"), [("resnet50", 0.0625), ("release-r152", 0.0625)])
def test_fused_outputs_and_detections_match(name: str, width: float) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = build_model(name, width=width).eval()
    _randomise_bn(model, 1)
    x = torch.randn(1, 3, 64, 96)
    fused = fuse_batchnorm(model, x)
    num_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(conv_bn_pairs(model, x)) == num_bn  # every BN follows a conv here
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched
    with torch.no_grad():
        want, got = model(x).second, fused(x).second
    for g, w in ((got.loc, want.loc), (got.conf, want.conf)):  # untrained: large values
        assert float((g - w).abs().max()) <= 1e-5 * float(w.abs().max())
    if name == "release-r152":  # untrained LFPN products reach ~1e5: boxes are not comparable
        return
    img = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    a, b = Detector(model).detect([img])[0], Detector(fused).detect([img])[0]
    top = min(len(a), len(b), 20)
    np.testing.assert_allclose(b[:top], a[:top], rtol=1e-4, atol=1e-3)


def test_channels_last_and_no_fusion() -> None:
    torch.manual_seed(0)
    model = build_model("vgg16", width=0.0625)
    x = torch.randn(1, 3, 32, 32)
    out = optimize_for_inference(model, x, InferenceOptions(fuse_batchnorm=False,
                                                            channels_last=True))
    conv = next(m for m in out.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(out(x).second.conf, model.eval()(x).second.conf,
                                   rtol=1e-4, atol=1e-5)
    assert out.anchor_specs == model.anchor_specs and out.input_format == model.input_format


def test_bad_arguments_and_failed_check() -> None:
    model = build_model("resnet50", width=0.0625)
    with pytest.raises(ValueError, match="example"):
        optimize_for_inference(model, torch.zeros(3, 32, 32))
    with pytest.raises(TypeError, match="InferenceOptions"):
        optimize_for_inference(model, torch.zeros(1, 3, 32, 32), {"fuse": True})  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="folding BatchNorm"):
        fuse_batchnorm(model, torch.randn(1, 3, 32, 32), check_rtol=-1.0)
