"""Every reader command (`eval wider`, `eval fddb`, `export wider`, `report`, `label`'s export)
refuses a damaged or mixed run directory in one line that names the part, and writes
nothing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from jobs.cli import main
from pipeline.datasets.wider import WiderDataset
from pipeline.schema import DETECTIONS_SCHEMA, IMAGES_SCHEMA
from pipeline.synthetic import SynthConfig, generate_benchmark
from tests.rundir_support import write_run_dir


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    generate_benchmark(root, SynthConfig(seed=5, num_val=4, num_train=0, num_fddb=0))
    return root


def _shards(bench: Path) -> list[tuple[pa.Table, pa.Table]]:
    """Two shards of two images each, one ground-truth box per image as its detection."""
    dataset = WiderDataset(bench / "wider", "val")
    gt = {img.image_id: img for img in dataset.ground_truth()}
    out = []
    entries = list(dataset.iter_manifest())
    for k in (0, 2):
        part = entries[k:k + 2]
        boxes = [np.asarray(gt[e.image_id].boxes_xywh[0], np.float32) for e in part]
        dets = pa.table({"image_id": [e.image_id for e in part],
                         "x1": [b[0] for b in boxes], "y1": [b[1] for b in boxes],
                         "x2": [b[0] + b[2] for b in boxes], "y2": [b[1] + b[3] for b in boxes],
                         "score": pa.array([0.9, 0.8], pa.float32())}, schema=DETECTIONS_SCHEMA)
        images = pa.table({"image_id": [e.image_id for e in part], "path": [e.path for e in part],
                           "width": pa.array([640, 640], pa.int32()),
                           "height": pa.array([480, 480], pa.int32()), "status": ["ok", "ok"],
                           "error": pa.array([None, None], pa.string()),
                           "num_detections": pa.array([1, 1], pa.int32()),
                           "seconds": [0.1, 0.1]}, schema=IMAGES_SCHEMA)
        out.append((dets, images))
    return out


def _commands(run: Path, bench: Path, tmp: Path) -> list[list[str]]:
    return [["eval", "wider", "--pred", str(run), "--gt", str(bench / "wider")],
            ["export", "wider", str(run), "--out", str(tmp / "txt")],
            ["report", str(run), "--out", str(tmp / "report")]]


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 1, (argv, err)
    assert "\n" not in err, err
    for needle in needles:
        assert needle in err, (argv, err)


def test_readers_read_a_whole_run(bench: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    write_run_dir(run, _shards(bench), config={"dataset": {}})
    for argv in _commands(run, bench, tmp_path):
        assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()


def test_a_truncated_part_is_named_by_every_reader(bench: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    write_run_dir(run, _shards(bench), config={"dataset": {}})
    part = run / "images" / "part-00001.parquet"
    part.write_bytes(part.read_bytes()[:-40])
    for argv in _commands(run, bench, tmp_path):
        _refused(argv, capsys, str(part), "unreadable Parquet")
    assert not (tmp_path / "txt").exists() and not (tmp_path / "report").exists()


def test_a_mixed_run_directory_is_refused_naming_the_odd_parts(
        bench: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shards = _shards(bench)
    run, other = tmp_path / "run", tmp_path / "other"
    write_run_dir(run, shards[:1], config={"dataset": {}, "max_size": None})
    write_run_dir(other, shards, config={"dataset": {}, "max_size": 640})
    for table in ("detections", "images"):  # what two concurrent runs used to leave
        os.replace(other / table / "part-00001.parquet", run / table / "part-00001.parquet")
    for argv in _commands(run, bench, tmp_path):
        _refused(argv, capsys, "mixes runs", "detections/part-00001.parquet",
                 "images/part-00001.parquet")
    assert not (tmp_path / "txt").exists()


def test_a_folder_without_run_json_is_not_read(bench: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    write_run_dir(run, _shards(bench), config={"dataset": {}})
    (run / "run.json").unlink()
    for argv in _commands(run, bench, tmp_path):
        _refused(argv, capsys, "not a run directory (no run.json)")
