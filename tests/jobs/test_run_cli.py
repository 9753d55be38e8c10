"""`dsfd run` / `dsfd label` argument handling and one-line failures (no Ray started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.cli import CommandError, build_parser, main
from jobs.label import images_spec


def test_run_arguments_and_defaults() -> None:
    argv = ["run", "--dataset", "folder:/x", "--out", "/r"]
    args = build_parser(argv).parse_args(argv)
    assert (args.shard_size, args.workers, args.gpus_per_worker, args.address) == (
        64, None, None, None)
    assert not args.multiscale and not args.restart and args.max_size is None


@pytest.mark.parametrize("bad", [["--shard-size", "0"], ["--workers", "-1"],
                                 ["--gpus-per-worker", "x"], ["--max-size", "1.5"]])
def test_bad_numbers_are_refused_by_the_parser(bad: list[str], capsys: pytest.CaptureFixture
                                               ) -> None:
    argv = ["run", "--dataset", "folder:/x", "--out", "/r", *bad]
    with pytest.raises(SystemExit) as exc:
        build_parser(argv).parse_args(argv)
    assert exc.value.code == 2
    assert "expected" in capsys.readouterr().err


def test_label_min_score_must_be_a_probability(capsys: pytest.CaptureFixture) -> None:
    argv = ["label", "--images", "/x", "--out", "/r", "--min-score", "1.5"]
    with pytest.raises(SystemExit):
        build_parser(argv).parse_args(argv)
    assert "expected a score in [0, 1], got '1.5'" in capsys.readouterr().err


def test_images_spec_picks_folder_or_list(tmp_path: Path) -> None:
    listing = tmp_path / "a.txt"
    listing.write_text("x.jpg\n")
    assert images_spec(str(tmp_path)) == f"folder:{tmp_path}"
    assert images_spec(str(listing)) == f"list:{listing}"
    assert images_spec("list:whatever") == "list:whatever"
    with pytest.raises(CommandError, match="no such folder or list file"):
        images_spec(str(tmp_path / "missing"))


def test_a_missing_dataset_fails_in_one_line_before_ray_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import ray

    started = ray.is_initialized()
    code = main(["run", "--dataset", f"folder:{tmp_path / 'nope'}", "--out",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("dsfd run: error:") and "\n" not in err
    assert ray.is_initialized() == started
    assert main(["label", "--images", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 1
