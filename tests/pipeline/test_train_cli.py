"""`dsfd train` in local mode (--workers 0): runs, resumes on rerun, fails in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.cli import main


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.synthetic import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("synth")
    generate_benchmark(root, SynthConfig(seed=5, num_train=4, num_val=1, num_fddb=0))
    return root


def _args(synth_dir: Path, out: Path, steps: int) -> list[str]:
    return [
        "train",
        "--dataset",
        f"synthetic:{synth_dir}",
        "--out",
        str(out),
        "--model",
        "vgg16",
        "--width",
        "0.0625",
        "--workers",
        "0",
        "--steps",
        str(steps),
        "--batch-size",
        "2",
        "--image-size",
        "64",
        "--checkpoint-every",
        "2",
        "--log-every",
        "1",
    ]


def test_cli_trains_and_rerun_resumes(synth_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ckpt"
    assert main(_args(synth_dir, out, 2)) == 0
    assert "done: step 2" in capsys.readouterr().out
    assert main(_args(synth_dir, out, 4)) == 0  # a longer schedule continues from step 2
    printed = capsys.readouterr().out
    assert "training from step 2 to 4" in printed and "done: step 4" in printed
    config = json.loads((out / "train_config.json").read_text())
    assert config["steps"] == 4 and config["out"] == str(out.resolve())


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    rc = main(
        [
            "train",
            "--dataset",
            f"wider:{tmp_path / 'missing'}",
            "--out",
            str(tmp_path),
            "--workers",
            "0",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("dsfd train: error:") and len(err.strip().splitlines()) == 1
    rc = main(["train", "--dataset", "synthetic:/x", "--out", str(tmp_path), "--workers", "3"])
    assert rc == 1 and "split evenly" in capsys.readouterr().err
