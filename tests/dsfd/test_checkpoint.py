"""Checkpoints: round trip, the official layout, and refusal of bad files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from dsfd import ModelConfig, build_model, load_backbone_weights, load_model, save_checkpoint
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
