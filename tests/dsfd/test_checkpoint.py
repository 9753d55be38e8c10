"""Checkpoints: round trip, the official layout, and refusal of bad files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from dsfd import ModelConfig, build_model, load_backbone_weights, load_model, save_checkpoint
from dsfd.backbones import reduced_fc
from dsfd.checkpoint import sha256_file


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_round_trip_rebuilds_from_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("resnet50", width=0.125).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, extra={"step": 12, "note": "test"})
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temp file left
    loaded, info = load_model(str(path))
    assert info.config == ModelConfig(name="resnet50", width=0.125)
    assert info.name == "resnet50" and info.source == "checkpoint"
    assert info.checksum == sha256_file(path) and info.extra == {"step": 12, "note": "test"}
    assert not loaded.training
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    torch.testing.assert_close(a.second.conf, b.second.conf)


def test_model_name_gives_random_init() -> None:
    model, info = load_model("vgg16")
    assert info.source == "random-init" and info.checksum is None
    assert info.config == ModelConfig(name="vgg16")
    assert sum(p.numel() for p in model.parameters()) > 10_000_000


def test_bare_release_state_dict_recognised(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_model("release-r152", width=0.125).eval()
    state = {k: v for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}  # legacy layout, as the 0.3.1 file
    path = tmp_path / "WIDERFace_DSFD_RES152.pth"
    torch.save(state, path)
    for spec in (str(path), f"release-r152:{path}"):
        loaded, info = load_model(spec)
        assert info.source == "official-state-dict" and info.name == "release-r152"
        assert info.config.width == 0.125
        torch.testing.assert_close(loaded.loc[3].conv4.weight, model.loc[3].conv4.weight)


def test_mismatched_file_lists_keys(tmp_path: Path) -> None:
    model = build_model("release-r152", width=0.125)
    state = model.state_dict()
    state.pop("cpm7.cpm5.bias")
    state["extra.weight"] = torch.zeros(1)
    state["smooth1.weight"] = torch.zeros(3, 3, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as err:
        load_model(f"release-r152:{path}")
    msg = str(err.value)
    assert "1 missing [cpm7.cpm5.bias]" in msg
    assert "1 unexpected [extra.weight]" in msg
    assert "smooth1.weight: file (3, 3, 1, 1)" in msg and str(path) in msg


def test_wrong_architecture_in_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "vgg.pt"
    save_checkpoint(path, build_model("vgg16", width=0.125))
    with pytest.raises(ValueError, match="not release-r152"):
        load_model(f"release-r152:{path}")
    other = {"weight": torch.zeros(2)}
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="unrecognised weights file"):
        load_model(str(tmp_path / "other.pt"))


def test_not_a_weights_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a torch weights file"):
        load_model(str(text))
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model(str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="non-empty"):
        load_model("")


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # runs os.system at unpickling time if the loader allows it
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_code_executing_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _Exploit(str(marker))}, path)
    with pytest.raises(ValueError, match="weights-only .*unsupported GLOBAL posix.system"):
        load_model(str(path))
    assert not marker.exists()
    plain = tmp_path / "evil.pkl"  # a plain pickle, not even a torch file
    plain.write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(ValueError):
        load_model(str(plain))
    assert not marker.exists()


def test_load_backbone_weights_torchvision_layout(tmp_path: Path) -> None:
    torch.manual_seed(2)
    source = build_model("resnet50", width=0.125)
    state = dict(source.backbone.state_dict())
    state["fc.weight"] = torch.zeros(1000, 256)  # the ImageNet classifier is ignored
    state["fc.bias"] = torch.zeros(1000)
    torch.save(state, tmp_path / "resnet50.pth")
    target = build_model("resnet50", width=0.125)
    load_backbone_weights(target, tmp_path / "resnet50.pth")
    torch.testing.assert_close(target.backbone.layer4[2].conv3.weight,
                               source.backbone.layer4[2].conv3.weight)
    vgg_state = {k: v for k, v in build_model("vgg16", width=0.125).backbone.state_dict().items()
                 if k.startswith("features.")}
    torch.save(vgg_state, tmp_path / "vgg16.pth")
    load_backbone_weights(build_model("vgg16", width=0.125), tmp_path / "vgg16.pth")
    with pytest.raises(ValueError, match="missing"):
        load_backbone_weights(build_model("resnet101", width=0.125), tmp_path / "resnet50.pth")


def test_checkpoint_without_l2norm_field_loads_with_the_old_behaviour(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("vgg16", width=0.125).eval()
    # A checkpoint written before ModelConfig had `l2norm`: its model_config has three keys.
    payload = {"format": "dsfd-checkpoint", "version": 1,
               "model_config": {"name": "vgg16", "width": 0.125, "input_size": 640},
               "state_dict": model.state_dict(), "extra": {}}
    torch.save(payload, tmp_path / "old.pt")
    loaded, info = load_model(str(tmp_path / "old.pt"))
    assert info.config.l2norm == "before_fem" and loaded.normalise_before_fem
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).second.conf, model(x).second.conf)


def test_per_shot_l2norm_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("vgg16", width=0.125, l2norm="per_shot").eval()
    with torch.no_grad():
        model.enhanced_norms[1].weight.fill_(3.0)
    save_checkpoint(tmp_path / "m.pt", model)
    loaded, info = load_model(str(tmp_path / "m.pt"))
    assert info.config == ModelConfig(name="vgg16", width=0.125, l2norm="per_shot")
    assert not loaded.normalise_before_fem
    torch.testing.assert_close(loaded.enhanced_norms[1].weight, torch.full((64,), 3.0))


def _torchvision_vgg16_state(width: float, seed: int) -> dict[str, torch.Tensor]:
    """A seeded state_dict laid out like torchvision's vgg16 (``features.N``, ``classifier.0``
    = fc6 ``[4*F, C*7*7]``, ``classifier.3`` = fc7 ``[4*F, 4*F]``, ``classifier.6``) for a
    backbone of ``width`` (``C`` conv5 channels, ``F`` fc channels)."""
    gen = torch.Generator().manual_seed(seed)
    backbone = build_model("vgg16", width=width).backbone
    state = {k: torch.randn(v.shape, generator=gen)
             for k, v in backbone.state_dict().items() if k.startswith("features.")}
    conv5, fc = backbone.fc6.in_channels, backbone.fc6.out_channels
    state["classifier.0.weight"] = torch.randn(4 * fc, conv5 * 49, generator=gen)
    state["classifier.0.bias"] = torch.randn(4 * fc, generator=gen)
    state["classifier.3.weight"] = torch.randn(4 * fc, 4 * fc, generator=gen)
    state["classifier.3.bias"] = torch.randn(4 * fc, generator=gen)
    state["classifier.6.weight"] = torch.randn(1000, 4 * fc, generator=gen)
    state["classifier.6.bias"] = torch.randn(1000, generator=gen)
    return state


def test_vgg16_reduced_fc_from_imagenet_classifier(tmp_path: Path) -> None:
    state = _torchvision_vgg16_state(0.125, seed=5)
    torch.save(state, tmp_path / "vgg16.pth")
    model = load_backbone_weights(build_model("vgg16", width=0.125), tmp_path / "vgg16.pth")
    fc6, fc7 = model.backbone.fc6, model.backbone.fc7
    assert fc6.weight.shape == (128, 64, 3, 3) and fc7.weight.shape == (128, 128, 1, 1)
    w6 = state["classifier.0.weight"].reshape(512, 64, 7, 7)  # torchvision flattens C, y, x
    # Decimation: output channel o <- 4o; tap (i, j) <- (3i, 3j); fc7 (o, i) <- (4o, 4i).
    for o, c, i, j in [(0, 0, 0, 0), (5, 17, 1, 2), (127, 63, 2, 2)]:
        assert fc6.weight[o, c, i, j] == w6[4 * o, c, 3 * i, 3 * j]
        flat = c * 49 + (3 * i) * 7 + 3 * j
        assert fc6.weight[o, c, i, j] == state["classifier.0.weight"][4 * o, flat]
    torch.testing.assert_close(fc6.weight, w6[::4, :, ::3, ::3])
    torch.testing.assert_close(fc6.bias, state["classifier.0.bias"][::4])
    assert fc7.weight[9, 31, 0, 0] == state["classifier.3.weight"][36, 124]
    torch.testing.assert_close(fc7.weight[:, :, 0, 0], state["classifier.3.weight"][::4, ::4])
    torch.testing.assert_close(fc7.bias, state["classifier.3.bias"][::4])
    torch.testing.assert_close(model.backbone.features[28].weight, state["features.28.weight"])


def test_reduced_fc_shapes_of_the_real_vgg16() -> None:
    with torch.device("meta"):  # shapes only: the real fc6 has 102.8 M weights
        classifier = {"classifier.0.weight": torch.empty(4096, 25088),
                      "classifier.0.bias": torch.empty(4096),
                      "classifier.3.weight": torch.empty(4096, 4096),
                      "classifier.3.bias": torch.empty(4096)}
        reduced = reduced_fc(classifier)
        own = build_model("vgg16").backbone
    assert {k: tuple(v.shape) for k, v in reduced.items()} == {
        "fc6.weight": (1024, 512, 3, 3), "fc6.bias": (1024,),
        "fc7.weight": (1024, 1024, 1, 1), "fc7.bias": (1024,)}
    assert {k: tuple(v.shape) for k, v in own.state_dict().items() if k.startswith("fc")} == {
        k: tuple(v.shape) for k, v in reduced.items()}
    with pytest.raises(ValueError, match="classifier.0.weight"):
        reduced_fc({**classifier, "classifier.0.weight": torch.empty(4096, 100, device="meta")})


def test_vgg16_without_a_usable_classifier_keeps_fc_init(tmp_path: Path) -> None:
    state = _torchvision_vgg16_state(0.125, seed=6)
    state["classifier.0.weight"][0, 0] = float("nan")  # as torchvision's IMAGENET1K_FEATURES
    torch.save(state, tmp_path / "features.pth")
    torch.manual_seed(0)
    model = build_model("vgg16", width=0.125)
    before = model.backbone.fc6.weight.detach().clone()
    with pytest.warns(UserWarning, match="non-finite"):
        load_backbone_weights(model, tmp_path / "features.pth")
    torch.testing.assert_close(model.backbone.fc6.weight, before)
    torch.testing.assert_close(model.backbone.features[0].weight, state["features.0.weight"])
