"""Scheduling on real Ray clusters: a lost node whose actor cannot come back, a job that must
wait for resources (and says so), and rerunning the shards that hold error rows."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline.rundir import RunDir
from pipeline.runner import ClusterConfig, RunConfig, run_inference
from tests.pipeline.odd_images import gradient_rgb
from tests.pipeline.runner_support import (  # noqa: F401
    local_cluster,
    small_checkpoint,
    synthetic_root,
)

MAX_SIZE = 128


def _source(root: Path) -> Any:
    from pipeline.datasets import open_dataset

    return open_dataset(f"synthetic:{root}")


def _parts(run_dir: Path) -> int:
    folder = run_dir / "images"
    return len(list(folder.glob("part-*.parquet"))) if folder.is_dir() else 0


@pytest.fixture
def two_one_cpu_nodes() -> Any:
    """A head without CPUs plus two 1-CPU nodes: a lost node's actor has nowhere to go."""
    yield from local_cluster(cpus_per_node=1)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_lost_nodes_shards_are_run_by_the_live_actor(
        two_one_cpu_nodes: Any, tmp_path: Path, small_checkpoint: Path,  # noqa: F811
        synthetic_root: Path) -> None:  # noqa: F811
    cluster, nodes = two_one_cpu_nodes
    run_dir = tmp_path / "run"
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["summary"] = run_inference(
                _source(synthetic_root), run_dir,
                RunConfig(model=str(small_checkpoint), shard_size=1),  # full size: slower
                ClusterConfig(num_workers=2, num_cpus_per_worker=1, wait_timeout=None),
                progress=False)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + 150
    while _parts(run_dir) < 2 and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    landed = _parts(run_dir)
    removed_at = time.monotonic()
    cluster.remove_node(nodes[1], allow_graceful=False)
    thread.join(timeout=300)
    assert not thread.is_alive(), "the run did not finish after a node was lost"
    if "error" in box:
        raise box["error"]
    finish_s = time.monotonic() - removed_at
    summary = box["summary"]
    # the removed node's actor cannot come back (no free CPU anywhere): had its queued shards
    # waited for it, the run would never end; the live actor ran them (shards_requeued counts
    # them when the node went down with shards in flight; how many depends on the timing)
    assert landed < 10, (landed, summary)
    assert summary.num_images == 12 and summary.num_errors == 0
    run = RunDir.open(run_dir)
    assert sorted(run.images()["image_id"].to_pylist()) == sorted(
        e.image_id for e in _source(synthetic_root).iter_manifest())
    print(f"lost node: finished {finish_s:.1f} s after the node was removed; "
          f"{summary.shards_requeued} shards requeued; {landed} of 12 done before")


def test_a_job_that_cannot_place_its_actor_says_so_and_gives_up(
        ray_ctx: None, tmp_path: Path, small_checkpoint: Path,  # noqa: F811
        synthetic_root: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    import ray

    @ray.remote(num_cpus=1)
    class Busy:
        def ping(self) -> int:
            return 1

    busy = Busy.remote()  # type: ignore[attr-defined]
    ray.get(busy.ping.remote())  # one of the 2 CPUs is taken
    try:
        start = time.monotonic()
        with pytest.raises(RuntimeError, match=r"gave up after \d+ s: waiting \d+ s for a "
                                               r"detector actor of 2 CPUs: 1 CPUs free on 1 "
                                               r"nodes"):
            run_inference(_source(synthetic_root), tmp_path / "run",
                          RunConfig(model=str(small_checkpoint), shard_size=4,
                                    max_size=MAX_SIZE),
                          ClusterConfig(num_workers=1, num_cpus_per_worker=2,
                                        wait_timeout=12.0), progress=False)
        assert time.monotonic() - start < 60
        assert "dsfd: note: waiting" in capsys.readouterr().err
    finally:
        ray.kill(busy)


def test_retry_errors_reruns_only_the_shards_with_error_rows(
        ray_ctx: None, tmp_path: Path, small_checkpoint: Path) -> None:  # noqa: F811
    from pipeline.datasets.folder import FolderDataset

    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(4):
        Image.fromarray(gradient_rgb(40, 30, seed=k)).save(photos / f"img{k}.png")
    good = (photos / "img2.png").read_bytes()
    (photos / "img2.png").write_bytes(b"not yet copied")  # a transient read error
    config = RunConfig(model=str(small_checkpoint), shard_size=2, max_size=MAX_SIZE)
    cluster = ClusterConfig(num_workers=1, num_cpus_per_worker=1)
    first = run_inference(FolderDataset(photos), tmp_path / "run", config, cluster,
                          progress=False)
    assert (first.num_errors, first.shards_run) == (1, 2)
    kept = (tmp_path / "run" / "images" / "part-00000.parquet").stat().st_mtime_ns
    (photos / "img2.png").write_bytes(good)
    again = run_inference(FolderDataset(photos), tmp_path / "run", config, cluster,
                          progress=False)
    assert (again.num_errors, again.shards_run) == (1, 0)  # a plain resume keeps the rows
    fixed = run_inference(FolderDataset(photos), tmp_path / "run", config, cluster,
                          retry_errors=True, progress=False)
    assert (fixed.num_errors, fixed.shards_run, fixed.shards_skipped) == (0, 1, 1)
    assert (tmp_path / "run" / "images" / "part-00000.parquet").stat().st_mtime_ns == kept
    assert set(RunDir.open(tmp_path / "run").images()["status"].to_pylist()) == {"ok"}


def test_a_limit_trial_run_extends_to_the_full_dataset_without_redoing_its_images(
        ray_ctx: None, tmp_path: Path, small_checkpoint: Path,  # noqa: F811
        synthetic_root: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    from pipeline.datasets import limit_dataset

    run_dir = tmp_path / "run"
    config = RunConfig(model=str(small_checkpoint), shard_size=4, max_size=MAX_SIZE)
    cluster = ClusterConfig(num_workers=1, num_cpus_per_worker=1)
    trial = run_inference(limit_dataset(_source(synthetic_root), 6), run_dir, config, cluster,
                          progress=False)
    assert (trial.num_images, trial.shards_run) == (6, 2)  # shards 0 (4) and 1 (2, short)
    kept = (run_dir / "images" / "part-00000.parquet").stat().st_mtime_ns
    full = run_inference(_source(synthetic_root), run_dir, config, cluster, progress=False)
    assert (full.num_images, full.shards_skipped, full.shards_run) == (12, 1, 2)
    assert (run_dir / "images" / "part-00000.parquet").stat().st_mtime_ns == kept
    assert "short last shard of a shorter run" in capsys.readouterr().err
    run = RunDir.open(run_dir)
    assert run.images().num_rows == 12 and run.record["plan"]["limit"] is None


def test_keep_score_stores_only_boxes_above_it_and_is_recorded(
        ray_ctx: None, tmp_path: Path, small_checkpoint: Path,  # noqa: F811
        synthetic_root: Path) -> None:  # noqa: F811
    from pipeline.datasets import limit_dataset

    source = limit_dataset(_source(synthetic_root), 2)
    cluster = ClusterConfig(num_workers=1, num_cpus_per_worker=1)
    every = run_inference(source, tmp_path / "all", RunConfig(
        model=str(small_checkpoint), shard_size=2, max_size=MAX_SIZE), cluster, progress=False)
    some = run_inference(source, tmp_path / "kept", RunConfig(
        model=str(small_checkpoint), shard_size=2, max_size=MAX_SIZE, keep_score=0.5),
        cluster, progress=False)
    all_dets = RunDir.open(tmp_path / "all").detections()
    kept = RunDir.open(tmp_path / "kept")
    assert kept.record["config"]["keep_score"] == 0.5
    assert some.num_detections == sum(s >= 0.5 for s in all_dets["score"].to_pylist())
    assert some.num_detections < every.num_detections
    assert kept.detections().equals(RunDir.open(tmp_path / "all").detections(min_score=0.5))
