"""Weights files that must be refused with a one-line reason naming the file: weights of
another architecture (the key diff listed), truncated and empty files, zip archives that are
not torch files, and a torn write next to a good file (never loaded)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from dsfd.build import build_model
from dsfd.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    load_model,
    save_checkpoint,
)
from dsfd.config import ModelConfig


def _one_line_error(spec: str) -> str:
    with pytest.raises(ValueError) as err:
        load_model(spec)
    text = str(err.value)
    assert "\n" not in text, text
    return text


def test_weights_of_another_architecture_list_the_key_diff(tmp_path: Path) -> None:
    vgg = build_model("vgg16", width=0.125)
    resnet = build_model("resnet50", width=0.125)
    path = tmp_path / "swapped.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                "model_config": ModelConfig(name="vgg16", width=0.125).to_dict(),
                "state_dict": resnet.state_dict(),
                "extra": {}}, path)
    text = _one_line_error(str(path))
    assert text.startswith(f"{path}: weights do not fit ")
    own, theirs = set(vgg.state_dict()), set(resnet.state_dict())
    assert f"{len(own - theirs)} missing [" in text
    assert f"{len(theirs - own)} unexpected [" in text
    # the first keys of each list are named, e.g. a VGG conv the file lacks
    assert sorted(own - theirs, key=list(vgg.state_dict()).index)[0] in text


def test_same_architecture_other_width_lists_mis_shaped_keys(tmp_path: Path) -> None:
    narrow = build_model("vgg16", width=0.125)
    wide = build_model("vgg16", width=0.25)
    path = tmp_path / "wide-weights.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                "model_config": ModelConfig(name="vgg16", width=0.125).to_dict(),
                "state_dict": wide.state_dict()},
               path)
    text = _one_line_error(str(path))
    first = next(k for k, v in narrow.state_dict().items() if v.ndim == 4)
    shape_n = tuple(narrow.state_dict()[first].shape)
    shape_w = tuple(wide.state_dict()[first].shape)
    assert f"{first}: file {shape_w} vs model {shape_n}" in text
    assert "mis-shaped" in text and "missing" not in text


@pytest.mark.parametrize("keep", [0.5, 0.99, 16 / 2_000_000])
def test_truncated_checkpoints_are_refused(tmp_path: Path, keep: float) -> None:
    good = tmp_path / "good.pt"
    save_checkpoint(good, build_model("vgg16", width=0.125))
    data = good.read_bytes()
    torn = tmp_path / "torn.pt"
    torn.write_bytes(data[: max(2, int(len(data) * keep))])
    text = _one_line_error(str(torn))
    assert text.startswith(f"{torn}: not a loadable weights-only torch file (")
    # the good file beside it still loads, and is unchanged
    assert load_model(str(good))[1].source == "checkpoint"
    assert good.read_bytes() == data


def test_empty_file_and_a_zip_that_is_no_torch_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert _one_line_error(str(empty)) == f"{empty}: not a torch weights file (starts with b'')"
    archive = tmp_path / "photos.pt"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "not weights")
    assert _one_line_error(str(archive)).startswith(
        f"{archive}: not a loadable weights-only torch file (")
    (tmp_path / "dir.pt").mkdir()
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_model(str(tmp_path / "dir.pt"))
