"""Every registered model: builds, runs a small forward with finite outputs, back-propagates to
every parameter; plus the release network's exact state_dict layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dsfd import DSFDOutput, ModelConfig, build_model
from dsfd.anchors import feature_sizes, make_anchors
from dsfd.backbones import L2Norm
from dsfd.fem import FeatureEnhanceModule
from dsfd.registry import model_names
from dsfd.release import ReleaseDSFD, max_in_out

NAMES = list(model_names())  # every registered architecture
RELEASE_PARAMS = 120_058_406


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.mark.parametrize(("name", "l2norm"),
                         [(n, "before_fem") for n in NAMES] + [("vgg16", "per_shot")])
def test_forward_backward_small(name: str, l2norm: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, width=0.125, l2norm=l2norm)
    x = torch.randn(2, 3, 96, 72)  # BN in train mode needs > 1 value per channel at 1x1 maps
    out = model(x)
    assert isinstance(out, DSFDOutput)
    shots = [out.second] if name == "release-r152" else [out.first, out.second]
    assert (out.first is None) == (name == "release-r152")
    num_anchors = make_anchors(model.anchor_specs[1], (96, 72)).shape[0]
    loss = torch.zeros(())
    for shot in shots:
        assert shot is not None
        assert shot.loc.shape == (2, num_anchors, 4)
        assert shot.conf.shape == (2, num_anchors, 2)
        assert shot.feature_hw == feature_sizes((96, 72), (4, 8, 16, 32, 64, 128))
        assert torch.isfinite(shot.loc).all() and torch.isfinite(shot.conf).all()
        loss = loss + shot.loc.square().mean() + shot.conf.square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reaches {missing[:5]}"
    assert model.config == ModelConfig(name=name, width=0.125, l2norm=l2norm)


@pytest.mark.parametrize("hw", [(64, 64), (33, 47), (128, 96)])
def test_feature_sizes_match_real_maps(hw: tuple[int, int]) -> None:
    for name in ("vgg16", "resnet50", "release-r152"):
        model = build_model(name, width=0.0625).eval()
        with torch.no_grad():
            out = model(torch.zeros(1, 3, *hw))
        assert out.second.feature_hw == feature_sizes(hw, (4, 8, 16, 32, 64, 128)), name


def test_vgg16_l2norm_and_torchvision_names() -> None:
    model = build_model("vgg16", width=0.125)
    norms = [m for m in model.norms if isinstance(m, L2Norm)]
    assert [n.scale for n in norms] == [10.0, 8.0, 5.0]
    keys = set(model.backbone.state_dict())
    # torchvision vgg16 "features" indices of conv1_1, conv3_3, conv5_3
    assert {"features.0.weight", "features.14.weight", "features.28.bias"} <= keys
    x = torch.randn(1, 4, 5, 5) * 3
    y = L2Norm(4, 10.0)(x)
    torch.testing.assert_close(y.norm(dim=1), torch.full((1, 5, 5), 10.0))


def _capture_inputs(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """First input of the FEM's level 0 and of both shots' level-0 loc heads."""
    seen: dict[str, torch.Tensor] = {}
    modules = {"fem": model.fem.levels[0], "first": model.first_loc[0],
               "second": model.second_loc[0]}
    handles = [m.register_forward_pre_hook(
        lambda _m, args, key=key: seen.__setitem__(key, args[0].detach().clone()))
        for key, m in modules.items()]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def _channel_norm(t: torch.Tensor) -> torch.Tensor:
    return t.norm(dim=1)  # [N, H, W]


def test_vgg16_l2norm_placements() -> None:
    x = torch.randn(1, 3, 64, 64)
    torch.manual_seed(0)
    before = build_model("vgg16", width=0.125).eval()
    assert before.config.l2norm == "before_fem"
    assert sum(isinstance(m, L2Norm) for m in before.modules()) == 3
    seen = _capture_inputs(before, x)
    with torch.no_grad():
        raw1 = before.raw_maps(x)[0]
    # The official placement: the FEM and the first shot see the same normalised conv3_3.
    torch.testing.assert_close(seen["fem"], seen["first"])
    torch.testing.assert_close(_channel_norm(seen["fem"]), torch.full_like(raw1[:, 0], 10.0))

    torch.manual_seed(0)
    per_shot = build_model("vgg16", width=0.125, l2norm="per_shot").eval()
    assert [m.scale for m in per_shot.enhanced_norms if isinstance(m, L2Norm)] == [10, 8, 5]
    # Same initial weights apart from the three extra L2Norm scales.
    assert set(per_shot.state_dict()) - set(before.state_dict()) == {
        f"enhanced_norms.{k}.weight" for k in range(3)}
    seen = _capture_inputs(per_shot, x)
    torch.testing.assert_close(seen["fem"], raw1)  # the FEM takes the raw conv3_3
    torch.testing.assert_close(_channel_norm(seen["first"]), torch.full_like(raw1[:, 0], 10.0))
    norms = _channel_norm(seen["second"])  # ef1 normalised to 10 (where it is not all zero)
    assert torch.allclose(norms[norms > 0], torch.tensor(10.0), rtol=1e-5)
    with pytest.raises(ValueError, match="only vgg16 has L2Norm"):
        ModelConfig(name="resnet50", l2norm="per_shot")
    with pytest.raises(ValueError, match="l2norm"):
        ModelConfig(name="vgg16", l2norm="after")


def test_resnet_torchvision_names() -> None:
    keys = set(build_model("resnet50", width=0.125).backbone.state_dict())
    assert {"conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight",
            "layer1.0.downsample.1.running_mean", "layer3.5.conv2.weight",
            "layer4.2.bn3.bias"} <= keys
    assert "layer3.6.conv1.weight" not in keys  # resnet50 has 6 blocks in layer3


def test_fem_keeps_shapes_and_uses_upper_map() -> None:
    torch.manual_seed(0)
    fem = FeatureEnhanceModule([12, 9, 6])
    maps = [torch.randn(1, 12, 8, 10), torch.randn(1, 9, 4, 5), torch.randn(1, 6, 2, 3)]
    out = fem(maps)
    assert [o.shape for o in out] == [m.shape for m in maps]
    changed = [maps[0], maps[1] * 2, maps[2]]
    out2 = fem(changed)
    assert not torch.allclose(out[0], out2[0])  # level 1 depends on the upper original map
    torch.testing.assert_close(out[2], out2[2])  # the top level does not depend on lower ones


def test_max_in_out_golden() -> None:
    conf = torch.tensor([1.0, 5.0, 2.0, 3.0, 7.0, 8.0]).reshape(1, 6, 1, 1)
    assert max_in_out(conf, 0).flatten().tolist() == [5.0, 3.0]  # bg = max(c0..c2), face = c3
    assert max_in_out(conf, 1).flatten().tolist() == [3.0, 5.0]  # bg = c3, face = max(c0..c2)


def _table(data_dir: Path) -> dict[str, list[int]]:
    table: dict[str, list[int]] = {}
    path = data_dir / "reference" / "dsfd_release_state_dict.tsv"
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")
            table[key] = [int(v) for v in shape.strip("[]").split(",")]
    return table


def test_release_state_dict_parity(data_dir: Path) -> None:
    table = _table(data_dir)
    assert len(table) == 967
    model = ReleaseDSFD(ModelConfig(name="release-r152"))
    own = {k: list(v.shape) for k, v in model.state_dict().items()
           if not k.endswith("num_batches_tracked")}
    assert own == table
    assert sum(p.numel() for p in model.parameters()) == RELEASE_PARAMS
    # a legacy-style state_dict (no num_batches_tracked) with seeded values loads strictly
    gen = torch.Generator().manual_seed(1234)
    state = {k: torch.randn(shape, generator=gen) for k, shape in table.items()}
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.cpm7.cpm5.bias, state["cpm7.cpm5.bias"])
    assert torch.equal(model.layer3[0][35].bn3.running_var, state["layer3.0.35.bn3.running_var"])


def test_release_forward_uses_face_slices() -> None:
    torch.manual_seed(0)
    model = build_model("release-r152", width=0.0625).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        srcs = model.sources(x)
        raw_loc0 = model.loc[0](srcs[0])  # [1, 4, 16, 16]
        raw_conf5 = model.conf[5](srcs[5])  # [1, 8, 1, 1]
    torch.testing.assert_close(out.second.loc[0, :256], raw_loc0.permute(0, 2, 3, 1)[0]
                               .reshape(-1, 4))
    last = raw_conf5.flatten()
    want = torch.stack((last[3], last[:3].max()))
    torch.testing.assert_close(out.second.conf[0, -1], want)


def test_release_auxiliary_outputs_are_the_head_and_body_slices() -> None:
    torch.manual_seed(0)
    model = build_model("release-r152", width=0.0625).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
        srcs = model.sources(x)
        raw_loc = [head(s) for head, s in zip(model.loc, srcs, strict=True)]
        raw_conf = [head(s) for head, s in zip(model.conf, srcs, strict=True)]
    head, body = out.auxiliary
    assert [name for name, _ in model.auxiliary_anchor_specs] == ["head", "body"]
    for shot, (_, spec) in zip(out.auxiliary, model.auxiliary_anchor_specs, strict=True):
        count = make_anchors(spec, (64, 96)).shape[0]
        assert shot.loc.shape == (1, count, 4) and shot.conf.shape == (1, count, 2)
    assert head.feature_hw == out.second.feature_hw[1:]
    assert body.feature_hw == out.second.feature_hw[2:]
    # level 1 opens the head branch: loc channels 4..7, raw conf 4..5 (after the face's 0..3)
    cells1 = raw_loc[1].shape[-2] * raw_loc[1].shape[-1]
    torch.testing.assert_close(head.loc[0, :cells1],
                               raw_loc[1][0, 4:8].permute(1, 2, 0).reshape(-1, 4))
    torch.testing.assert_close(head.conf[0, :cells1],
                               raw_conf[1][0, 4:6].permute(1, 2, 0).reshape(-1, 2))
    # level 2 opens the body branch: loc 8..11, raw conf 6..7
    cells2 = raw_loc[2].shape[-2] * raw_loc[2].shape[-1]
    torch.testing.assert_close(body.loc[0, :cells2],
                               raw_loc[2][0, 8:12].permute(1, 2, 0).reshape(-1, 4))
    torch.testing.assert_close(body.conf[0, :cells2],
                               raw_conf[2][0, 6:8].permute(1, 2, 0).reshape(-1, 2))
    torch.testing.assert_close(body.conf[0, -1], raw_conf[5][0, 6:8, -1, -1])
