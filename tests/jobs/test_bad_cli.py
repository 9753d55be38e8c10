"""Bad command lines: one-line errors, exit status 1, and nothing in the way overwritten
(the files' sha256 before and after are compared)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from jobs.cli import main
from tests.pipeline.odd_images import gradient_rgb
from tests.pipeline.runner_support import small_checkpoint  # noqa: F401  (fixture)


def _hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (or of ``root`` itself when it is a file)."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _fails_in_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(("spec", "words"), [
    ("nosuch:/data", "nosuch"),
    ("/data/no-kind", "no KIND: prefix"),
    ("folder:{tmp}/missing", "missing"),
    ("list:{tmp}/missing.txt", "missing.txt"),
    ("wider:{tmp}/missing", "missing"),
    ("synthetic:{tmp}", "not a synthetic benchmark"),
])
def test_bad_dataset_specs_fail_before_ray_starts(
        spec: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    was_running = ray.is_initialized()
    err = _fails_in_one_line(["run", "--dataset", spec.format(tmp=tmp_path), "--out",
                              str(tmp_path / "run")], capsys)
    assert err.startswith("dsfd run: error: ") and words in err, err
    assert ray.is_initialized() == was_running  # refused before any Ray was started
    assert not (tmp_path / "run").exists()


def test_an_out_dir_that_is_a_file_is_refused_and_left_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "photos").mkdir()
    Image.fromarray(gradient_rgb(16, 12)).save(tmp_path / "photos" / "a.png")
    report = tmp_path / "report.txt"
    report.write_text("keep me\n")
    before = _hashes(tmp_path)
    for out, words in ((report, "is a file, not a directory"),
                       (report / "run", f"lies under a file ({report})")):
        for command in (["run", "--dataset", f"folder:{tmp_path / 'photos'}"],
                        ["label", "--images", str(tmp_path / "photos")]):
            err = _fails_in_one_line([*command, "--out", str(out)], capsys)
            assert words in err, err
    assert _hashes(tmp_path) == before


@pytest.mark.slow
def test_a_run_dir_of_another_config_or_model_is_not_touched(
        ray_ctx: None, tmp_path: Path, small_checkpoint: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    import dsfd

    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(2):
        Image.fromarray(gradient_rgb(40, 30, seed=seed)).save(photos / f"{seed}.png")
    run_dir = tmp_path / "run"
    argv = ["run", "--dataset", f"folder:{photos}", "--out", str(run_dir), "--model",
            str(small_checkpoint), "--workers", "1", "--cpus-per-worker", "1", "--shard-size",
            "1", "--max-size", "64"]
    assert main(argv) == 0
    (run_dir / "notes.md").write_text("my notes\n")
    before = _hashes(run_dir)
    err = _fails_in_one_line([*argv[:-1], "96"], capsys)
    assert "max_size: 64 -> 96" in err and "--restart" in err
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    dsfd.save_checkpoint(other, dsfd.build_model("vgg16", width=0.125))
    model_at = argv.index("--model") + 1
    err = _fails_in_one_line([*argv[:model_at], str(other), *argv[model_at + 1:]], capsys)
    assert "model.checksum: " in err and "--restart" in err
    assert _hashes(run_dir) == before  # refused without writing, renaming or deleting
