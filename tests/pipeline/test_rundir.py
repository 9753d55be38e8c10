"""The run directory's safety rules with real files and real processes (no Ray): what it may
delete, the lock, part verification, mixed runs, and rebuilding a damaged run.json."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline.datasets.manifest import ManifestEntry
from pipeline.rundir import (
    LOCK_FILE,
    RunDir,
    RunDirError,
    RunLockedError,
    RunMismatchError,
)
from pipeline.schema import DETECTIONS_SCHEMA, IMAGES_SCHEMA
from pipeline.shards import Shard, iter_shards

CONFIG = {"model": {"name": "m", "checksum": "c"}, "shard_size": 2}


def _shards(n: int = 5, k: int = 2) -> list[Shard]:
    entries = [ManifestEntry(f"ev/img{i}", f"/data/ev/img{i}.jpg") for i in range(n)]
    return list(iter_shards(entries, k))


def _tables(shard: Shard, boxes_per_image: int = 2) -> tuple[pa.Table, pa.Table]:
    ids = [e.image_id for e in shard.entries]
    det_ids = [i for i in ids for _ in range(boxes_per_image)]
    n = len(det_ids)
    dets = pa.table({"image_id": det_ids, **{c: pa.array([1.0 + k for k in range(n)],
                                                          pa.float32())
                                              for c in ("x1", "y1", "x2", "y2", "score")}},
                    schema=DETECTIONS_SCHEMA)
    images = pa.table({"image_id": ids, "path": [e.path for e in shard.entries],
                       "width": pa.array([10] * len(ids), pa.int32()),
                       "height": pa.array([10] * len(ids), pa.int32()),
                       "status": ["ok"] * len(ids), "error": pa.array([None] * len(ids),
                                                                      pa.string()),
                       "num_detections": pa.array([boxes_per_image] * len(ids), pa.int32()),
                       "seconds": [0.1] * len(ids)}, schema=IMAGES_SCHEMA)
    return dets, images


def write_run(root: Path, config: dict = CONFIG, shards: list[Shard] | None = None,
              only: set[int] | None = None, **open_kwargs) -> RunDir:
    """A run written through the real API (open, prepare, begin, write, finish)."""
    shards = _shards() if shards is None else shards
    with RunDir.open_for_writing(root, **open_kwargs) as run:
        run.prepare(config, shards)
        writer = run.begin({"config": config, "dataset_spec": "test", "model": {"name": "m"}})
        for shard in shards:
            if only is None or shard.index in only:
                writer.write(shard.index, shard.digest, *_tables(shard))
        run.finish(lambda rec: rec.update(plan={"complete": True}))
    return RunDir.open(root)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_written_run_reads_back_through_every_reader(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    assert run.images().num_rows == 5
    assert run.detections().num_rows == 10
    assert run.detections(min_score=3.0).num_rows == 4  # scores per shard are 1, 2, 3, 4
    by_image = list(run.detections_by_image())
    assert [i for i, _, _ in by_image] == [f"ev/img{i}" for i in range(5)]
    assert all(b.shape == (2, 4) and s.shape == (2,) for _, b, s in by_image)
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # released


def test_user_photos_in_images_folder_refuse_the_out_and_survive(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "images").mkdir(parents=True)
    (project / "images" / "part-3.png").write_bytes(b"a user photo")
    (project / "images" / "holiday.jpg").write_bytes(b"another")
    before = _hashes(project)
    with pytest.raises(RunDirError, match=r"holiday\.jpg: not written by this run"):
        RunDir.open_for_writing(project, restart=True)
    assert _hashes(project) == before
    assert (project / "images").is_dir()


@pytest.mark.parametrize("name", ["part-1.parquet", "part-00001.parquet.bak", "notes.txt",
                                  ".tmp-0123456789abcdef-x-part-00000.parquet"])
def test_any_file_not_provably_ours_is_foreign(tmp_path: Path, name: str) -> None:
    write_run(tmp_path / "run")
    (tmp_path / "run" / "detections" / name).write_bytes(b"x")
    with pytest.raises(RunDirError, match=name.replace(".", r"\.")):
        RunDir.open_for_writing(tmp_path / "run")


def test_an_exact_part_name_without_our_metadata_is_foreign(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "images").mkdir(parents=True)
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1]}), out / "images" / "part-00000.parquet")
    with pytest.raises(RunDirError, match="part-00000.parquet: not written by this run"):
        RunDir.open_for_writing(out)


def test_restart_removes_only_what_the_run_wrote(tmp_path: Path) -> None:
    root = tmp_path / "run"
    write_run(root)
    (root / "notes.txt").write_text("mine")
    (root / "sub").mkdir()
    (root / "sub" / "part-00000.parquet").write_text("mine too")
    with RunDir.open_for_writing(root, restart=True) as run:
        assert run.record is None
    assert sorted(p.name for p in root.iterdir()) == ["detections", "images", "notes.txt", "sub"]
    assert not any((root / "images").iterdir()) and not any((root / "detections").iterdir())
    assert (root / "sub" / "part-00000.parquet").read_text() == "mine too"


@pytest.mark.parametrize("inside", [True, False])
def test_out_overlapping_the_input_folder_is_refused(tmp_path: Path, inside: bool) -> None:
    photos = tmp_path / "project" / "photos"
    photos.mkdir(parents=True)
    out = photos / "run" if inside else tmp_path / "project"
    with pytest.raises(RunDirError, match="input folder"):
        RunDir.open_for_writing(out, inputs=[photos])
    assert not (photos / "run").exists()


def test_a_second_owner_is_refused_naming_the_holder(tmp_path: Path) -> None:
    root = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from pipeline.rundir import RunDir\n"
         f"run = RunDir.open_for_writing({str(root)!r})\n"
         "print('locked', flush=True)\n"
         "time.sleep(60)\n"], stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid} on host "
                                                 f"{socket.gethostname()}"):
            RunDir.open_for_writing(root)
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock is taken over
    with RunDir.open_for_writing(root) as run:
        assert run.root == root


def test_a_lock_of_a_dead_process_is_taken_over_and_one_of_another_host_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "run"
    root.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = {"kind": "dsfd-run-lock", "host": socket.gethostname(), "pid": dead.pid,
            "process_start": 1.0, "started": "then"}
    (root / LOCK_FILE).write_text(json.dumps(lock))
    with RunDir.open_for_writing(root):
        pass
    assert f"took over {root / LOCK_FILE} of pid {dead.pid}" in capsys.readouterr().err
    (root / LOCK_FILE).write_text(json.dumps({**lock, "host": "gpu-node-7", "pid": 4242}))
    with pytest.raises(RunLockedError, match=r"pid 4242 on host gpu-node-7.*remove .*run\.lock"):
        RunDir.open_for_writing(root)
    (root / LOCK_FILE).write_text("user notes")
    with pytest.raises(RunDirError, match="not a dsfd lock file"):
        RunDir.open_for_writing(root)
    assert (root / LOCK_FILE).read_text() == "user notes"


@pytest.mark.parametrize("damage", ["truncate", "empty", "rows"])
def test_a_damaged_part_is_named_by_readers_and_redone_on_resume(
        tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "run"
    write_run(root)
    part = root / "detections" / "part-00001.parquet"
    if damage == "truncate":
        part.write_bytes(part.read_bytes()[:100])
    elif damage == "empty":
        part.write_bytes(b"")
    else:  # a whole Parquet file of the wrong length: our metadata says otherwise
        import pyarrow.parquet as pq

        table = pq.read_table(part)
        pq.write_table(table.slice(0, 1).replace_schema_metadata(table.schema.metadata), part)
    with pytest.raises(RunDirError, match=str(part)):
        RunDir.open(root).detections()
    with RunDir.open_for_writing(root) as run:
        state = run.prepare(CONFIG, _shards())
        assert state.done.num_shards == 2 and not run.is_done(1)
    assert "the shard will be redone" in capsys.readouterr().err


def test_parts_of_another_config_make_readers_refuse_naming_them(tmp_path: Path) -> None:
    root = tmp_path / "run"
    write_run(root, only={0, 1})
    other = tmp_path / "other"
    write_run(other, config={**CONFIG, "max_size": 64}, only={2})
    for table in ("detections", "images"):
        os.replace(other / table / "part-00002.parquet", root / table / "part-00002.parquet")
    with pytest.raises(RunMismatchError, match=r"2 parts .*detections/part-00002\.parquet, "
                                               r"images/part-00002\.parquet"):
        RunDir.open(root).images()
    with RunDir.open_for_writing(root) as run, pytest.raises(RunMismatchError,
                                                             match="another config"):
        run.prepare(CONFIG, _shards())


def test_a_changed_config_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    root = tmp_path / "run"
    write_run(root)
    before = _hashes(root)
    with RunDir.open_for_writing(root) as run, pytest.raises(RunMismatchError,
                                                             match="shard_size: 2 -> 3"):
        run.prepare({**CONFIG, "shard_size": 3}, _shards())
    assert _hashes(root) == before


@pytest.mark.parametrize("damage", [b"\xff\xfe{", b'{"kind": "dsfd-run", "form', b""])
def test_a_damaged_run_json_is_rebuilt_from_the_parts(
        tmp_path: Path, damage: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "run"
    first = write_run(root, only={0, 1})
    (root / "run.json").write_bytes(damage)
    with pytest.raises(RunDirError, match=r"run\.json: .*run the same dsfd run"):
        RunDir.open(root)
    with RunDir.open_for_writing(root) as run:
        assert run.record is not None
        assert run.record["config_digest"] == first.config_digest
        assert run.prepare(CONFIG, _shards()).done.num_shards == 2
    err = capsys.readouterr().err
    assert "rebuilt it from 2 parts" in err
    assert [p.name for p in root.glob("run.json.damaged-*")]  # the damaged file is kept


def test_a_damaged_run_json_without_parts_is_refused_and_kept(tmp_path: Path) -> None:
    root = tmp_path / "run"
    root.mkdir()
    (root / "run.json").write_bytes(b"\xff garbage")
    with pytest.raises(RunDirError, match="cannot be rebuilt"):
        RunDir.open_for_writing(root, restart=True)
    assert (root / "run.json").read_bytes() == b"\xff garbage"


def test_a_foreign_run_json_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "run"
    root.mkdir()
    (root / "run.json").write_text('{"name": "my web app"}')
    with pytest.raises(RunDirError, match="not a dsfd run record"):
        RunDir.open_for_writing(root, restart=True)
    assert (root / "run.json").read_text() == '{"name": "my web app"}'


def test_dataset_changes_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "run"
    write_run(root)
    with RunDir.open_for_writing(root) as run, pytest.raises(RunMismatchError, match="shrank"):
        run.prepare(CONFIG, _shards(n=2))
    other = [ManifestEntry(f"ev/new{i}", f"/data/ev/new{i}.jpg") for i in range(5)]
    with RunDir.open_for_writing(root) as run, pytest.raises(RunMismatchError,
                                                             match="dataset changed"):
        run.prepare(CONFIG, list(iter_shards(other, 2)))


def test_half_written_shard_and_own_temporaries_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "run"
    run = write_run(root)
    run_id = run.record["run_id"]
    (root / "images" / "part-00002.parquet").unlink()  # killed between the two renames
    tmp = root / "images" / f".tmp-{run_id}-abc-part-00002.parquet"
    tmp.write_bytes(b"partial")
    with RunDir.open_for_writing(root) as again:
        assert not tmp.exists()
        state = again.prepare(CONFIG, _shards())
        assert state.done.num_shards == 2
        assert not (root / "detections" / "part-00002.parquet").exists()


def test_detections_by_image_groups_interleaved_rows_in_stored_order(tmp_path: Path) -> None:
    from pipeline.schema import DETECTIONS_SCHEMA, IMAGES_SCHEMA
    from tests.rundir_support import write_run_dir

    rng = np.random.default_rng(0)
    ids = [f"ev/img{i}" for i in range(6)]
    status = ["ok", "ok", "error", "ok", "ok", "ok"]
    det_ids = [ids[i] for i in rng.choice([0, 1, 3, 5], size=40)]  # img4 has none
    coords = rng.random((40, 5), dtype=np.float32)
    dets = pa.table({"image_id": det_ids,
                     **{c: coords[:, k] for k, c in enumerate(("x1", "y1", "x2", "y2", "score"))}},
                    schema=DETECTIONS_SCHEMA)
    images = pa.table({"image_id": ids, "path": [f"/x/{i}.jpg" for i in ids],
                       "width": [10] * 6, "height": [10] * 6, "status": status,
                       "error": [None if s == "ok" else "broken" for s in status],
                       "num_detections": [det_ids.count(i) for i in ids],
                       "seconds": [0.0] * 6}, schema=IMAGES_SCHEMA)
    run = write_run_dir(tmp_path / "run", [(dets, images)])
    got = {i: (b, s) for i, b, s in run.detections_by_image(min_score=0.3)}
    assert list(got) == [i for i, s in zip(ids, status, strict=True) if s == "ok"]
    for image_id, (boxes, scores) in got.items():
        mask = (np.asarray(det_ids) == image_id) & (coords[:, 4] >= 0.3)
        np.testing.assert_array_equal(boxes, coords[mask, :4])  # stored order kept
        np.testing.assert_array_equal(scores, coords[mask, 4])
