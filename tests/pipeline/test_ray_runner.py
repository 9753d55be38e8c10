"""The Ray runner on a real local Ray (CPU): equivalence, resume, refusal, faults, odd images."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipeline.rundir import RunDir, RunMismatchError
from pipeline.runner import ClusterConfig, RunConfig, RunSummary, run_inference
from tests.pipeline.odd_images import gradient_rgb, write_odd_images
from tests.pipeline.runner_support import (  # noqa: F401  (fixtures)
    assert_same_detections,
    reference_detections,
    run_detections,
    small_checkpoint,
    synthetic_root,
)


def _source(root: Path) -> Any:
    from pipeline.datasets import open_dataset

    return open_dataset(f"synthetic:{root}")


def _paths(root: Path) -> dict[str, str]:
    return {e.image_id: e.path for e in _source(root).iter_manifest()}


# Random weights give hundreds of boxes per image; a small input keeps post-processing cheap.
MAX_SIZE = 192


@pytest.fixture(scope="module")
def reference(small_checkpoint: Path, synthetic_root: Path) -> dict[str, Any]:  # noqa: F811
    return reference_detections(small_checkpoint, _paths(synthetic_root), max_size=MAX_SIZE)


def test_two_workers_match_the_detector_in_process_then_resume_and_refuse(
        ray_ctx: None, tmp_path: Path, small_checkpoint: Path,  # noqa: F811
        synthetic_root: Path, reference: dict[str, Any]) -> None:  # noqa: F811
    run_dir = tmp_path / "run"
    config = RunConfig(model=str(small_checkpoint), shard_size=5, max_size=MAX_SIZE)
    cluster = ClusterConfig(num_workers=2, num_cpus_per_worker=1)
    summary = run_inference(_source(synthetic_root), run_dir, config, cluster,
                            dataset_spec=f"synthetic:{synthetic_root}", progress=False)
    assert (summary.num_images, summary.num_shards, summary.shards_run) == (12, 3, 3)
    assert summary.errors_run == 0
    assert_same_detections(run_detections(run_dir), reference)
    images = RunDir.open(run_dir).images()
    assert images["image_id"].to_pylist() == list(_paths(synthetic_root))  # manifest order
    record = json.loads((run_dir / "run.json").read_text())
    plan = dict(record["plan"])
    assert len(plan.pop("manifest_digest")) == 32
    assert plan == {"shard_size": 5, "num_shards": 3, "num_images": 12, "complete": True,
                    "limit": None}
    assert set(record["versions"]) >= {"torch", "ray", "pyarrow", "numpy", "python"}
    assert record["config"]["model"]["checksum"] == record["model"]["checksum"]
    assert len(record["model"]["checksum"]) == 64

    before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "images").iterdir()}
    again = run_inference(_source(synthetic_root), run_dir, config, cluster, progress=False)
    assert (again.shards_run, again.shards_skipped) == (0, 3)
    assert {p.name: p.stat().st_mtime_ns for p in (run_dir / "images").iterdir()} == before

    changed = RunConfig(model=str(small_checkpoint), shard_size=5, max_size=128)
    with pytest.raises(RunMismatchError, match=r"another config \(max_size: 192 -> 128\)"):
        run_inference(_source(synthetic_root), run_dir, changed, cluster, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in (run_dir / "images").iterdir()} == before
    restarted = run_inference(_source(synthetic_root), run_dir, changed, cluster,
                              restart=True, progress=False)
    assert restarted.shards_run == 3
    want = reference_detections(small_checkpoint, _paths(synthetic_root), max_size=128)
    assert_same_detections(run_detections(run_dir), want)


def _run_in_thread(**kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["summary"] = run_inference(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_a_worker_killed_mid_run_is_replaced_and_each_image_lands_once(
        ray_ctx: None, tmp_path: Path, small_checkpoint: Path,  # noqa: F811
        synthetic_root: Path, reference: dict[str, Any]) -> None:  # noqa: F811
    import ray

    run_dir = tmp_path / "run"
    prefix = f"dsfd-test-{uuid.uuid4().hex[:8]}"
    thread, box = _run_in_thread(
        source=_source(synthetic_root), run=run_dir,
        config=RunConfig(model=str(small_checkpoint), shard_size=1, max_size=MAX_SIZE),
        cluster=ClusterConfig(num_workers=2, num_cpus_per_worker=1, actor_name_prefix=prefix),
        progress=False)
    _wait_for(lambda: not thread.is_alive() or (run_dir / "images").is_dir()
              and any((run_dir / "images").glob("part-*.parquet")), 120, "the first shard")
    if "error" in box:
        raise box["error"]
    victim = ray.get_actor(f"{prefix}-0")
    pid = ray.get(victim.where.remote())["pid"]
    done_before = len(list((run_dir / "images").glob("part-*.parquet")))
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=180)
    assert not thread.is_alive(), "run did not finish after a worker was killed"
    if "error" in box:
        raise box["error"]
    summary: RunSummary = box["summary"]
    assert done_before < 12, "the run finished before the kill: the test proves nothing"
    assert summary.num_images == 12
    images = RunDir.open(run_dir).images()
    assert sorted(images["image_id"].to_pylist()) == sorted(reference)  # each image once
    assert set(images["status"].to_pylist()) == {"ok"}
    assert_same_detections(run_detections(run_dir), reference)


def test_odd_and_broken_images_become_rows_and_the_job_succeeds(
        ray_ctx: None, tmp_path: Path, small_checkpoint: Path,  # noqa: F811
        capsys: pytest.CaptureFixture) -> None:
    from jobs.cli import main

    folder = tmp_path / "photos"
    expect = write_odd_images(folder)
    (folder / "sub").mkdir()
    (folder / "sub" / "huge.png").write_bytes((folder / "rgb.jpg").read_bytes())
    expect["sub/huge.png"] = "ok"
    run_dir = tmp_path / "run"
    argv = ["run", "--dataset", f"folder:{folder}", "--out", str(run_dir), "--model",
            str(small_checkpoint), "--workers", "1", "--cpus-per-worker", "1", "--shard-size", "4"]
    assert main(argv) == 0
    images = RunDir.open(run_dir).images().to_pandas().set_index("image_id")
    assert sorted(images.index) == sorted(expect)
    for name, status in expect.items():
        row = images.loc[name]
        assert row["status"] == status, (name, row["error"])
        if status == "error":
            assert isinstance(row["error"], str) and row["error"], name
            assert row["num_detections"] == 0
        else:
            assert not isinstance(row["error"], str) and row["width"] > 0 and row["height"] > 0
    assert images.loc["rotated.jpg", "width"] == 48  # EXIF orientation applied
    ok = {k: str(folder / k) for k, v in expect.items() if v == "ok"}
    want = reference_detections(small_checkpoint, ok)
    assert_same_detections(run_detections(run_dir), want)
    assert images.loc["empty.jpg", "error"] == "empty file (0 bytes)"
    dets = RunDir.open(run_dir).detections().to_pandas()
    assert set(dets["image_id"]) <= {k for k, v in expect.items() if v == "ok"}
    # the CLI refuses to mix another config into the run: exit 1, one line naming the key
    capsys.readouterr()
    assert main([*argv, "--max-pixels", "1000"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "max_pixels: 178956970 -> 1000" in err and "--restart" in err


def test_label_multiscale_exports_coco_with_the_score_threshold(
        ray_ctx: None, tmp_path: Path, small_checkpoint: Path) -> None:  # noqa: F811
    from jobs.cli import main

    (tmp_path / "photos").mkdir()
    paths = {}
    for seed, name in enumerate(("a.jpg", "b.png")):
        Image.fromarray(gradient_rgb(40, 30, seed=seed)).save(tmp_path / "photos" / name)
        paths[name] = str(tmp_path / "photos" / name)
    list_file = tmp_path / "images.txt"
    list_file.write_text("\n".join(paths.values()) + "\n")
    run_dir = tmp_path / "labels"
    argv = ["label", "--images", str(list_file), "--out", str(run_dir), "--model",
            str(small_checkpoint), "--workers", "1", "--cpus-per-worker", "1", "--min-score",
            "0.5", "--multiscale"]
    assert main(argv) == 0
    want = reference_detections(small_checkpoint, paths, multiscale=True)
    got = run_detections(run_dir)
    assert_same_detections({Path(k).name: v for k, v in got.items()}, want)
    coco = json.loads((run_dir / "labels.coco.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == list(got)
    assert [(i["width"], i["height"]) for i in coco["images"]] == [(40, 30), (40, 30)]
    assert coco["categories"] == [{"id": 1, "name": "face", "supercategory": "face"}]
    # pseudo-labels are clipped to the 40x30 image; boxes left without area are dropped
    clipped = {k: np.concatenate([np.clip(b[:, [0, 2]], 0, 40), np.clip(b[:, [1, 3]], 0, 30),
                                  b[:, 4:]], axis=1)[:, [0, 2, 1, 3, 4]] for k, b in got.items()}
    kept = [(k, box) for k, boxes in clipped.items() for box in boxes
            if box[4] >= 0.5 and box[2] > box[0] and box[3] > box[1]]
    assert len(coco["annotations"]) == len(kept) > 0
    for ann, (image_id, box) in zip(coco["annotations"], kept, strict=True):
        assert coco["images"][ann["image_id"] - 1]["file_name"] == image_id
        np.testing.assert_allclose(ann["bbox"], [box[0], box[1], box[2] - box[0],
                                                 box[3] - box[1]], rtol=1e-5, atol=1e-4)
        assert 0 <= ann["bbox"][0] and ann["bbox"][0] + ann["bbox"][2] <= 40 + 1e-4
        assert ann["score"] == pytest.approx(float(box[4]), abs=1e-6)
        assert ann["category_id"] == 1


def test_a_model_no_worker_can_load_fails_in_one_line(
        ray_ctx: None, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from jobs.cli import main

    folder = tmp_path / "photos"
    write_odd_images(folder)
    missing = tmp_path / "no-such-model.pt"
    code = main(["run", "--dataset", f"folder:{folder}", "--out", str(tmp_path / "run"),
                 "--model", str(missing), "--workers", "1", "--cpus-per-worker", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert "\n" not in err, err
    # refused by the driver before any worker starts
    assert err.startswith(f"dsfd run: error: --model {missing}:"), err
    assert str(missing) in err
    assert not (tmp_path / "run").exists()
