"""`dsfd synth` over an earlier benchmark deletes only what it wrote (its journal), refuses
anything else before changing a byte, and still regenerates its own output (same seed, fewer
images, a killed run)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from pipeline.datasets.synthetic import INFO_FILE, read_synth_info
from pipeline.synthetic import (
    JOURNAL_FILE,
    SynthConfig,
    first_unproven_entry,
    generate_benchmark,
    read_journal,
)

CONFIG = SynthConfig(seed=3, num_val=3, num_train=1, num_fddb=10)
SMALLER = SynthConfig(seed=3, num_val=1, num_train=1, num_fddb=0)


def _tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: files by sha256, folders and links by kind."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = f"link:{path.readlink()}"
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth-safety") / "bench"
    generate_benchmark(out, CONFIG)
    return out


@pytest.fixture
def bench(original: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bench"
    shutil.copytree(original, copy, symlinks=True)
    return copy


def _refused(bench: Path, match: str) -> None:
    """A rerun raises one line matching ``match`` and leaves the tree as it was."""
    before = _tree(bench)
    with pytest.raises(ValueError, match=match) as info:
        generate_benchmark(bench, CONFIG)
    assert "\n" not in str(info.value) and "nothing was changed" in str(info.value)
    assert _tree(bench) == before


def test_user_file_in_wider_is_refused_and_kept(bench: Path) -> None:
    (bench / "wider/my_results.txt").write_text("mine")
    _refused(bench, r"wider/my_results\.txt was not written by dsfd synth")
    assert (bench / "wider/my_results.txt").read_text() == "mine"


def test_user_file_at_the_top_or_deep_is_refused(bench: Path) -> None:
    (bench / "notes.txt").write_text("mine")
    _refused(bench, r"notes\.txt was not written")
    (bench / "notes.txt").unlink()
    deep = next((bench / "fddb/originalPics").rglob("*.jpg")).with_name("extra.jpg")
    deep.write_bytes(b"x")
    _refused(bench, r"fddb/originalPics/.*/extra\.jpg was not written")


def test_changed_file_is_refused(bench: Path) -> None:
    image = next((bench / "wider/WIDER_val/images").rglob("*.jpg"))
    image.write_bytes(image.read_bytes() + b"edited")
    _refused(bench, r"\.jpg was changed since dsfd synth wrote it")


def test_user_folder_and_link_are_refused(bench: Path, tmp_path: Path) -> None:
    (bench / "wider/mine").mkdir()
    _refused(bench, r"wider/mine/ was not created by dsfd synth")
    (bench / "wider/mine").rmdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (bench / "wider/link.txt").symlink_to(victim)
    _refused(bench, r"wider/link\.txt was not written")
    (bench / "wider/link.txt").unlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.jpg").write_bytes(b"keep")
    (bench / "wider/dirlink").symlink_to(outside, target_is_directory=True)
    _refused(bench, r"wider/dirlink was not written")
    assert victim.read_text() == "keep" and (outside / "keep.jpg").read_bytes() == b"keep"


def test_generated_file_replaced_by_a_link_is_refused(bench: Path, tmp_path: Path) -> None:
    image = next((bench / "wider/WIDER_val/images").rglob("*.jpg"))
    target = tmp_path / "same.jpg"
    target.write_bytes(image.read_bytes())  # same bytes, but not the file synth wrote
    image.unlink()
    image.symlink_to(target)
    _refused(bench, r"is no longer the file dsfd synth wrote")
    assert target.is_file()


def test_same_seed_rerun_gives_the_same_tree(bench: Path, original: Path) -> None:
    generate_benchmark(bench, CONFIG)
    assert _tree(bench) == _tree(original)
    assert read_synth_info(bench)["status"] == "complete"


def test_smaller_rerun_removes_only_its_files(bench: Path, tmp_path: Path) -> None:
    generate_benchmark(bench, SMALLER)
    fresh = tmp_path / "fresh"
    generate_benchmark(fresh, SMALLER)
    assert _tree(bench) == _tree(fresh)  # no left-over image, folder or fddb/ tree


def test_existing_empty_folder_is_used_and_kept(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    generate_benchmark(out, SMALLER)
    generate_benchmark(out, SMALLER)
    assert out.is_dir() and read_synth_info(out)["status"] == "complete"


def test_every_created_entry_is_recorded(original: Path) -> None:
    files, dirs = read_journal(original)
    assert first_unproven_entry(original, files, dirs) is None
    tree = _tree(original)
    assert {p for p, kind in tree.items() if kind == "dir"} == dirs
    done = {p for p, r in files.items() if "sha256" in r}
    assert {p for p, kind in tree.items() if kind != "dir"} - {JOURNAL_FILE} == done
    assert all(files[p]["sha256"] == tree[p] for p in done)
    assert files[f".tmp-{INFO_FILE}"] == {"file": f".tmp-{INFO_FILE}", "gone": True}


class _Stop(Exception):
    pass


def _stop_after(count: int):  # noqa: ANN202 - a progress callback
    def progress(part: str, done: int, total: int) -> None:
        if done >= count:
            raise _Stop(part)

    return progress


def test_killed_generation_is_regenerated(tmp_path: Path, original: Path) -> None:
    out = tmp_path / "killed"
    with pytest.raises(_Stop):
        generate_benchmark(out, CONFIG, _stop_after(2))
    assert json.loads((out / INFO_FILE).read_text())["status"] == "incomplete"
    with open(out / JOURNAL_FILE, "a", encoding="utf-8") as fh:
        # a file announced but not finished when the run was killed, then a cut-short line
        fh.write(json.dumps({"file": "wider/partial.bin"}) + "\n" + '{"file": "wider/ha')
    (out / "wider/partial.bin").write_bytes(b"half")
    generate_benchmark(out, CONFIG)
    assert _tree(out) == _tree(original)


def test_killed_generation_with_a_user_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    with pytest.raises(_Stop):
        generate_benchmark(out, CONFIG, _stop_after(1))
    (out / "wider/notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"wider/notes\.txt was not written"):
        generate_benchmark(out, CONFIG)
    assert (out / "wider/notes.txt").read_text() == "mine"


def test_journal_naming_a_path_outside_is_refused(bench: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    with open(bench / JOURNAL_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"file": "../victim.txt"}) + "\n")
    before = _tree(bench)
    with pytest.raises(ValueError, match=r"unreadable file list .*bad path '\.\./victim\.txt'"):
        generate_benchmark(bench, CONFIG)
    assert victim.read_text() == "keep" and _tree(bench) == before


def test_benchmark_without_journal_is_refused(bench: Path) -> None:
    (bench / JOURNAL_FILE).unlink()
    before = _tree(bench)
    with pytest.raises(ValueError, match="without the list of its files"):
        generate_benchmark(bench, CONFIG)
    assert _tree(bench) == before


def test_dsfd_synth_refuses_in_one_line(
    bench: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.cli import main

    (bench / "wider/my_results.txt").write_text("mine")
    argv = ["synth", "--out", str(bench), "--images", "3", "--train-images", "1",
            "--fddb-images", "10", "--seed", "3", "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dsfd synth: error:") and "\n" not in err
    assert "wider/my_results.txt" in err
    (bench / "wider/my_results.txt").unlink()
    assert main(argv) == 0
