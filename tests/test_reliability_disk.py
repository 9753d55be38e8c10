"""A full disk mid-run: the run stops with one clear line, keeps only complete shards, and the
same command resumes to the uninterrupted result once space is back.

"Full" is real here: the detector workers of the first run get a file-size limit
(``RLIMIT_FSIZE``, so every write past it fails with ``EFBIG`` as a full disk fails with
``ENOSPC``) from the moment the first shard has landed; Ray's own processes keep theirs.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.pipeline.runner_support import (  # noqa: F401  (fixtures)
    assert_same_detections,
    reference_detections,
    run_detections,
    small_checkpoint,
    synthetic_root,
)

REPO = Path(__file__).resolve().parents[1]
MAX_SIZE = 128
RUN_DIR_VAR = "DSFD_TEST_FILL_DISK_AFTER_FIRST_SHARD"


def fill_disk_after_first_shard() -> None:
    """Ray worker setup hook: once a shard of the run has landed, cap file sizes at 1 KiB."""
    run_dir = Path(os.environ[RUN_DIR_VAR])

    def watch() -> None:
        while not any((run_dir / "images").glob("part-*.parquet")):
            time.sleep(0.005)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    threading.Thread(target=watch, daemon=True).start()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_full_disk_stops_the_run_in_one_line_and_it_resumes(
        tmp_path: Path, small_checkpoint: Path, synthetic_root: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    from jobs.cli import main
    from pipeline.datasets import open_dataset

    run_dir = tmp_path / "run"
    argv = ["run", "--dataset", f"synthetic:{synthetic_root}", "--out", str(run_dir),
            "--model", str(small_checkpoint), "--workers", "2", "--cpus-per-worker", "1",
            "--shard-size", "1", "--max-size", str(MAX_SIZE)]
    if ray.is_initialized():
        ray.shutdown()
    # the workers import this module's hook by its name under pytest's import mode
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(Path(__file__).parent)]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {RUN_DIR_VAR: str(run_dir)},
                          "worker_process_setup_hook": fill_disk_after_first_shard})
    try:
        capsys.readouterr()
        assert main(argv) == 1  # joins the Ray started above
    finally:
        ray.shutdown()
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("dsfd run: error: cannot write shard "), err
    assert f"to {run_dir}: File too large; free space" in err and "run the same command" in err
    landed = sorted(p.name for p in (run_dir / "images").glob("part-*.parquet"))
    assert 1 <= len(landed) < 12
    for name in landed:  # what is there is whole: readable, and its detections part exists
        pq.read_table(run_dir / "images" / name)
        pq.read_table(run_dir / "detections" / name)
    # space is back: the same command (its own local Ray, no limit) resumes
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"this call ran {12 - len(landed)} shards ({len(landed)} already done)" in out, out
    assert not list(run_dir.rglob(".tmp-*"))
    paths = {e.image_id: e.path for e in open_dataset(f"synthetic:{synthetic_root}")
             .iter_manifest()}
    want = reference_detections(small_checkpoint, paths, max_size=MAX_SIZE)
    assert_same_detections(run_detections(run_dir), want)
