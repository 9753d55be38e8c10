"""`dsfd run` and `dsfd label` print our lines only: Ray's own output (its banner, the actors'
prints prefixed ``(ShardWorker pid=...)``, the raylet's messages about dead workers) goes to
``RUN_DIR/logs/ray.log``; ``--verbose`` or ``DSFD_VERBOSE=1`` brings it back to the console;
an error is one line naming the log, which holds the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.common import log_file_for
from tests.plugins.chatty_detector import LOADING_OTHER, STDERR_LINE, STDOUT_LINE

REPO = Path(__file__).resolve().parents[2]
CHATTY = "py:tests.plugins.chatty_detector:make"


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.synthetic import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("synth")
    generate_benchmark(root, SynthConfig(seed=3, num_train=0, num_val=3, num_fddb=0))
    return root


def _dsfd(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
               "PYTHONPATH": str(REPO), **env}
    for key in ("RAY_ADDRESS", "DSFD_VERBOSE"):
        if key not in env:
            environ.pop(key, None)
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=150)


def test_run_console_has_our_lines_only_and_the_log_has_ray_s(synth_dir: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = _dsfd("run", "--dataset", f"synthetic:{synth_dir}", "--model", CHATTY,
                 "--out", str(out), "--workers", "1", "--shard-size", "2")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("dsfd run: 3 images in 2 shards") and done.stdout.count(
        "\n") == 1
    log = (out / "logs" / "ray.log").read_text()
    assert "Started a local Ray instance" in log
    assert "(ShardWorker pid=" in log and STDOUT_LINE in log and STDERR_LINE in log
    # a resume keeps the log and appends to it; the run directory still opens
    done = _dsfd("run", "--dataset", f"synthetic:{synth_dir}", "--model", CHATTY,
                 "--out", str(out), "--workers", "1", "--shard-size", "2", "--restart")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    again = (out / "logs" / "ray.log").read_text()
    assert again.startswith(log) and again.count("Started a local Ray instance") == 2


def test_label_verbose_brings_ray_s_output_back(synth_dir: Path, tmp_path: Path) -> None:
    images = synth_dir / "wider" / "WIDER_val" / "images"
    out = tmp_path / "labels"
    done = _dsfd("label", "--images", str(images), "--model", CHATTY, "--out", str(out),
                 "--workers", "1", DSFD_VERBOSE="1")
    assert done.returncode == 0, done.stderr
    assert "(ShardWorker pid=" in done.stderr and STDERR_LINE in done.stderr
    assert [x for x in done.stdout.splitlines() if not x.startswith("dsfd label: ")] == []
    assert STDERR_LINE in (out / "logs" / "ray.log").read_text()


def test_a_failed_run_is_one_line_naming_the_log(synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = _dsfd("run", "--dataset", f"synthetic:{synth_dir}", "--model", CHATTY,
                 "--out", str(out), "--workers", "1", DSFD_TEST_DETECTOR_DIFFERS="1")
    log_path = out / "logs" / "ray.log"
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("dsfd run: error: a worker loaded other weights (checksum ")
    assert lines[0].endswith(f"(full log: {log_path})")
    log = log_path.read_text()
    assert "(ShardWorker pid=" in log and LOADING_OTHER in log and "\x1b[" not in log
    assert "dsfd run failed:\nTraceback" in log and "RuntimeError: a worker loaded" in log


def test_log_file_for_a_folder_and_an_object_store_uri(tmp_path: Path) -> None:
    assert log_file_for(tmp_path / "run") == tmp_path / "run" / "logs" / "ray.log"
    assert log_file_for(f"file://{tmp_path}/run") == tmp_path / "run" / "logs" / "ray.log"
    remote = log_file_for("s3://bucket/runs/a b")
    assert remote.is_absolute() and remote.name == "ray.log"
    assert remote.parent.name == "s3_bucket_runs_a_b"
    assert log_file_for("gs://bucket/runs/a_b") != remote
