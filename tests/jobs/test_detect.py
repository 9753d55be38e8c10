"""`dsfd detect` end to end through jobs.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dsfd import build_model, save_checkpoint
from jobs.cli import main


@pytest.fixture
def png(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "face.png"
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def test_detect_json(png: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    ckpt = tmp_path / "small.pt"
    save_checkpoint(ckpt, build_model("vgg16", width=0.125))
    assert main(["detect", str(png), str(png), "--model", str(ckpt), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [item["image"] for item in out] == [str(png), str(png)]
    dets = np.asarray(out[0]["detections"])
    assert dets.ndim == 2 and dets.shape[1] == 5 and len(dets) > 0
    assert (np.diff(dets[:, 4]) <= 0).all()
    assert out[0]["detections"] == out[1]["detections"]


def test_detect_table_by_name(png: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    assert main(["detect", str(png), "--model", "resnet50", "--width", "0.0625",
                 "--min-score", "0.5"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{png}: ") and "faces" in text
    assert main(["detect", str(png), "--model", "vgg16", "--width", "0.125", "--multiscale",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out[0]["detections"]) <= 750


@pytest.mark.parametrize("kind", ["missing", "not_image", "bad_weights"])
def test_detect_bad_input(kind: str, png: Path, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    args = ["detect", str(png), "--model", "vgg16", "--width", "0.125"]
    if kind == "missing":
        args[1] = str(tmp_path / "nope.jpg")
    elif kind == "not_image":
        text = tmp_path / "notes.png"
        text.write_text("not an image")
        args[1] = str(text)
    else:
        weights = tmp_path / "w.pt"
        torch.save({"weight": torch.zeros(2)}, weights)
        args = ["detect", str(png), "--model", str(weights)]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dsfd detect: error:") and "\n" not in err
