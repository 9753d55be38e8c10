"""The inference settings of each invocation (folded BatchNorm, batch) are recorded in
run.json's history, and a resume with other settings is not refused (float rounding only);
padded buckets move boxes more, so they are part of the compared config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.rundir import RunMismatchError
from pipeline.runner import ClusterConfig, RunConfig, run_inference
from tests.pipeline.runner_support import (  # noqa: F401  (fixtures)
    small_checkpoint,
    synthetic_root,
)


def _source(root: Path) -> Any:
    from pipeline.datasets import limit_dataset, open_dataset

    return limit_dataset(open_dataset(f"synthetic:{root}"), 4)


def test_history_records_inference_settings_and_resume_accepts_others(
        ray_ctx: None, tmp_path: Path, small_checkpoint: Path,  # noqa: F811
        synthetic_root: Path) -> None:  # noqa: F811
    run_dir = tmp_path / "run"
    config = RunConfig(model=str(small_checkpoint), shard_size=2, max_size=128)
    first = ClusterConfig(num_workers=1, num_cpus_per_worker=1, optimize=False)  # batch: CPU 1
    summary = run_inference(_source(synthetic_root), run_dir, config, first, progress=False)
    assert (summary.num_images, summary.errors_run) == (4, 0)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["history"][-1]["inference"] == {"optimize": False, "batch_size": 1}
    assert record["cluster"]["batch_size"] == 1  # the default resolved for CPU actors
    assert "optimize" not in record["config"]  # not a result-deciding setting
    assert "bucket" not in record["config"]  # off: recorded only when on

    other = ClusterConfig(num_workers=1, num_cpus_per_worker=1, optimize=True, batch_size=4)
    again = run_inference(_source(synthetic_root), run_dir, config, other, progress=False)
    assert (again.shards_run, again.shards_skipped) == (0, 2)
    history = json.loads((run_dir / "run.json").read_text())["history"]
    assert [h["inference"] for h in history] == [
        {"optimize": False, "batch_size": 1}, {"optimize": True, "batch_size": 4}]

    bucketed = RunConfig(model=str(small_checkpoint), shard_size=2, max_size=128, bucket=True)
    with pytest.raises(RunMismatchError, match=r"another config \(bucket: None -> True\)"):
        run_inference(_source(synthetic_root), run_dir, bucketed, other, progress=False)


def test_the_default_batch_size_follows_the_actors_device() -> None:
    from pipeline.runner import GPU_BATCH_SIZE, resolved_batch_size

    assert resolved_batch_size(None, on_gpu=False) == 1
    assert resolved_batch_size(None, on_gpu=True) == GPU_BATCH_SIZE == 16
    assert resolved_batch_size(3, on_gpu=True) == resolved_batch_size(3, on_gpu=False) == 3
