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
    assert main(["detect", str(png), str(png), "--model", str(ckpt), "--json",
                 "--min-score", "0"]) == 0
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
    if kind == "missing":
        assert err == f"dsfd detect: error: {args[1]}: file not found"
    elif kind == "not_image":
        assert err == f"dsfd detect: error: {args[1]}: not an image (format not recognised)"


def test_help_states_the_exit_status_and_the_default_score(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["detect", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 when every image was read; 1 when an image" in text
    assert "(default 0.5;" in text and "image files or folders" in text


def test_shipped_model_notes_its_training_data_and_keeps_confident_boxes(
        png: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.set_num_threads(1)
    assert main(["detect", str(png), "--json"]) == 0  # --model shipped, --min-score 0.5
    captured = capsys.readouterr()
    assert captured.err == ("dsfd detect: note: the shipped model was trained on synthetic "
                            "faces only; for real photographs use the official checkpoint "
                            "(--model release-r152:PATH)\n")
    dets = json.loads(captured.out)[0]["detections"]
    assert all(row[4] >= 0.5 for row in dets)
    assert main(["detect", str(png), "--json", "--min-score", "0"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["detections"]) > len(dets)


def test_min_score_outside_zero_one_is_refused(png: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["detect", str(png), "--min-score", "2"])
    assert info.value.code == 2
    assert "expected a score in [0, 1], got '2'" in capsys.readouterr().err
