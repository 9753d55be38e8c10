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
    assert main([*_args(synth_dir, out, 4), "--stop-at", "2"]) == 0
    assert "done: step 2" in capsys.readouterr().out
    assert main(_args(synth_dir, out, 4)) == 0  # the same run continues from step 2
    printed = capsys.readouterr().out
    assert "training from step 2 to 4" in printed and "done: step 4" in printed
    config = json.loads((out / "train_config.json").read_text())
    assert config["steps"] == 4 and config["out"] == str(out.resolve())


@pytest.mark.parametrize(("extra", "named"), [
    (["--steps", "6"], "steps: 4 -> 6"), (["--lr", "0.01"], "lr: 0.001 -> 0.01"),
    (["--batch-size", "4"], "batch_size: 2 -> 4"), (["--policy", "ssd"], "policy: 'iam' -> 'ssd'"),
    (["--optimizer", "adamw"], "optimizer: 'sgd' -> 'adamw'"),
    (["--image-size", "96"], "model.input_size: 64 -> 96"),
])
def test_a_changed_config_is_refused_naming_it_and_restart_starts_over(
        synth_dir: Path, tmp_path: Path, capsys, extra: list[str], named: str) -> None:
    out = tmp_path / "ckpt"
    assert main([*_args(synth_dir, out, 4), "--stop-at", "2"]) == 0
    (out / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    args = _args(synth_dir, out, 4)
    for k in range(0, len(extra), 2):  # replace the option's value, or add it
        if extra[k] in args:
            args[args.index(extra[k]) + 1] = extra[k + 1]
        else:
            args += extra[k:k + 2]
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and named in err and "--restart" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    earlier_events = set((out / "tb").iterdir())
    (out / "tb" / "mine.txt").write_text("mine")
    assert earlier_events  # the first run's TensorBoard files
    assert main([*args, "--restart"]) == 0
    assert "training from step 0" in capsys.readouterr().out
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "tb" / "mine.txt").read_text() == "mine"
    assert not earlier_events & set((out / "tb").iterdir())  # the earlier curves are gone


def test_a_dataset_without_faces_is_refused(tmp_path: Path, capsys) -> None:
    from tests.rundir_support import write_wider_without_faces

    root = write_wider_without_faces(tmp_path / "wider")
    rc = main(["train", "--dataset", f"wider:{root}:train", "--out", str(tmp_path / "o"),
               "--workers", "0", "--steps", "2"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err and "no face boxes to learn from" in err, err
    assert not (tmp_path / "o").exists()


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
