"""The run's forward precision: recorded in run.json, passed to the workers, refused when a
resume asks for another, refused up front when unknown; ``--dtype`` on the command lines."""

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

MAX_SIZE = 128  # random weights: a small input keeps post-processing cheap


def _source(root: Path) -> Any:
    from pipeline.datasets import limit_dataset, open_dataset

    return limit_dataset(open_dataset(f"synthetic:{root}"), 4)


def test_run_records_dtype_and_resume_refuses_another(
        ray_ctx: None, tmp_path: Path, small_checkpoint: Path,  # noqa: F811
        synthetic_root: Path) -> None:  # noqa: F811
    run_dir = tmp_path / "run"
    config = RunConfig(model=str(small_checkpoint), shard_size=2, max_size=MAX_SIZE,
                       dtype="bfloat16")
    cluster = ClusterConfig(num_workers=1, num_cpus_per_worker=1)
    summary = run_inference(_source(synthetic_root), run_dir, config, cluster, progress=False)
    assert (summary.num_images, summary.errors_run) == (4, 0)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["config"]["dtype"] == "bfloat16"
    assert record["model"]["dtype"] == "bfloat16"

    again = run_inference(_source(synthetic_root), run_dir, config, cluster, progress=False)
    assert (again.shards_run, again.shards_skipped) == (0, 2)
    changed = RunConfig(model=str(small_checkpoint), shard_size=2, max_size=MAX_SIZE)
    with pytest.raises(RunMismatchError,
                       match=r"another config \(dtype: 'bfloat16' -> 'float32'\)"):
        run_inference(_source(synthetic_root), run_dir, changed, cluster, progress=False)


def test_worker_runs_the_dtype_it_is_given(tmp_path: Path,
                                           small_checkpoint: Path) -> None:  # noqa: F811
    from pipeline.actors import ShardWorker, WorkerSettings, describe_model
    from pipeline.rundir import RunDir

    with RunDir.open_for_writing(tmp_path / "run") as run:
        writer = run.begin({"config": {}})
        worker = ShardWorker(WorkerSettings(model=str(small_checkpoint), dtype="bfloat16"),
                             writer)
        try:
            assert worker.detector.detector.dtype == "bfloat16"  # type: ignore[attr-defined]
            assert worker.model_info()["dtype"] == "bfloat16"
        finally:
            worker.close()
    assert describe_model(str(small_checkpoint))["dtype"] == "float32"
    with pytest.raises(ValueError, match="opencv-haar detector family runs float32 only"):
        describe_model("opencv-haar", "float16")


def test_run_config_refuses_an_unknown_dtype() -> None:
    assert RunConfig(model="shipped").dtype == "float32"
    with pytest.raises(ValueError, match=r"dtype must be one of float32, tf32, bfloat16, "
                                         r"float16; got 'fp16'"):
        RunConfig(model="shipped", dtype="fp16")


@pytest.mark.parametrize("command", ["run", "label", "detect"])
def test_dtype_flag(command: str) -> None:
    from jobs.cli import build_parser

    required = {"run": ["--dataset", "synthetic:x", "--out", "o"],
                "label": ["--out", "o", "--images", "x"], "detect": ["x.jpg"]}[command]
    parser = build_parser([command])
    assert parser.parse_args([command, *required]).dtype == "float32"
    assert parser.parse_args([command, *required, "--dtype", "bfloat16"]).dtype == "bfloat16"
    with pytest.raises(SystemExit):
        parser.parse_args([command, *required, "--dtype", "half"])
