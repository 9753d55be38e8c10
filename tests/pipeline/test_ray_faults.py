"""Whole-job and whole-node faults (slow): a killed `dsfd run` resumes to the uninterrupted
result; a two-node Ray cluster runs shards on both nodes and survives losing one."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.rundir import RunDir
from pipeline.runner import ClusterConfig, RunConfig, run_inference
from tests.pipeline.runner_support import (  # noqa: F401  (fixtures)
    assert_same_detections,
    local_cluster,
    reference_detections,
    run_detections,
    small_checkpoint,
    synthetic_root,
)

REPO = Path(__file__).resolve().parents[2]
MAX_SIZE = 256  # small inputs keep the random-weight post-processing cheap


def _paths(root: Path) -> dict[str, str]:
    from pipeline.datasets import open_dataset

    return {e.image_id: e.path for e in open_dataset(f"synthetic:{root}").iter_manifest()}


def _parts(run_dir: Path) -> int:
    folder = run_dir / "images"
    return len(list(folder.glob("part-*.parquet"))) if folder.is_dir() else 0


@pytest.mark.slow
def test_a_killed_job_resumes_to_the_uninterrupted_result(
        tmp_path: Path, small_checkpoint: Path, synthetic_root: Path) -> None:  # noqa: F811
    run_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "jobs.cli", "run", "--dataset", f"synthetic:{synthetic_root}",
            "--out", str(run_dir), "--model", str(small_checkpoint), "--workers", "1",
            "--cpus-per-worker", "1", "--shard-size", "1", "--max-size", str(MAX_SIZE)]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    job = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        while _parts(run_dir) == 0 and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert job.poll() is None, f"job ended early: {job.communicate()[0].decode()[-2000:]}"
        assert _parts(run_dir) >= 1
        os.killpg(job.pid, signal.SIGKILL)  # the driver and everything it started
        job.wait(timeout=30)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    landed = _parts(run_dir)
    assert landed < 12, "the job finished before it was killed: the test proves nothing"
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    # workers of the killed job may finish a shard or two while Ray notices the driver died
    found = re.search(r"this call ran (\d+) shards \((\d+) already done\)", done.stdout)
    assert found, done.stdout
    rerun, skipped = int(found[1]), int(found[2])
    assert rerun + skipped == 12 and landed <= skipped < 12 and rerun > 0
    assert not list(run_dir.rglob(".tmp-*"))
    images = RunDir.open(run_dir).images()
    assert sorted(images["image_id"].to_pylist()) == sorted(_paths(synthetic_root))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["plan"]["complete"] and record["plan"]["num_images"] == 12
    # the uninterrupted result: the detector called directly, in order, in-process
    want = reference_detections(small_checkpoint, _paths(synthetic_root), max_size=MAX_SIZE)
    assert_same_detections(run_detections(run_dir), want)


@pytest.fixture
def two_node_cluster() -> Iterator[tuple[Any, list[Any]]]:
    """A head without CPUs plus two 2-CPU nodes on this machine, fast node-death detection."""
    yield from local_cluster(cpus_per_node=2)


@pytest.mark.slow
def test_shards_run_on_both_nodes_and_losing_one_still_completes(
        two_node_cluster: tuple[Any, list[Any]], tmp_path: Path,
        small_checkpoint: Path, synthetic_root: Path) -> None:  # noqa: F811
    from pipeline.datasets import open_dataset

    cluster, nodes = two_node_cluster
    run_dir = tmp_path / "run"
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["summary"] = run_inference(
                open_dataset(f"synthetic:{synthetic_root}"), run_dir,
                RunConfig(model=str(small_checkpoint), shard_size=1, max_size=MAX_SIZE),
                ClusterConfig(num_workers=2, num_cpus_per_worker=1), progress=False)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + 150
    while _parts(run_dir) < 4 and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    landed = _parts(run_dir)
    cluster.remove_node(nodes[1], allow_graceful=False)
    thread.join(timeout=240)
    assert not thread.is_alive(), "run did not finish after a node was removed"
    if "error" in box:
        raise box["error"]
    assert landed < 12, "the run finished before the node was removed: the test proves nothing"
    record = json.loads((run_dir / "run.json").read_text())
    per_node = record["timing"]["shards_per_node"]
    assert len(per_node) == 2, per_node  # shards ran on both nodes
    assert sum(per_node.values()) == 12
    images = RunDir.open(run_dir).images()
    assert sorted(images["image_id"].to_pylist()) == sorted(_paths(synthetic_root))
    assert set(images["status"].to_pylist()) == {"ok"}


def _memory_used_fraction() -> float:
    info = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    total, available = (float(info[k].split()[0]) for k in ("MemTotal", "MemAvailable"))
    return (total - available) / total


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_an_actor_killed_for_memory_is_one_line_with_the_shard_and_its_size(
        tmp_path: Path, synthetic_root: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's memory monitor, with its threshold ~1.5 GB above what the machine uses now, kills
    a detector actor whose batch keeps taking memory; the run stops in one line naming the
    shard, the memory Ray measured and the remedy, with the pool's default settings (Ray does
    not restart the actor; with restarts left it would report the kill only as 'the actor was
    restarted')."""
    import ray

    from pipeline.datasets import open_dataset

    if ray.is_initialized():
        ray.shutdown()
    threshold = min(_memory_used_fraction() + 0.06, 0.9)
    monkeypatch.setenv("RAY_memory_usage_threshold", f"{threshold:.3f}")  # read by the raylet
    monkeypatch.setenv("DSFD_TEST_DETECTOR_ALLOCATES_MB", "8000")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(RuntimeError) as caught:
            run_inference(open_dataset(f"synthetic:{synthetic_root}"), tmp_path / "run",
                          RunConfig(model="py:tests.plugins.chatty_detector:make", shard_size=4),
                          ClusterConfig(num_workers=1, num_cpus_per_worker=1),
                          progress=False)
    finally:
        ray.shutdown()
    message = str(caught.value)
    assert "\n" not in message
    assert re.fullmatch(
        r"shard \d+ \(first image '[^']+'\) ran out of memory \(the actor used [\d.]+GB, the node "
        r"[\d.]+GB of its [\d.]+GB limit\); lower --batch-size or --max-size, or use fewer, "
        r"larger workers \(--workers, --cpus-per-worker\)", message), message
    used = float(re.search(r"actor used ([\d.]+)GB", message)[1])  # type: ignore[index]
    assert 0.3 < used < 9.0
