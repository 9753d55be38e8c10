"""Interrupted and concurrent `dsfd run` as real processes: SIGTERM and SIGKILL of a driver that
started its own local Ray, and a second run into a folder another job owns."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from jobs.cli import main
from pipeline.rundir import LOCK_FILE, RunDir
from tests.pipeline.runner_support import small_checkpoint, synthetic_root  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


def _argv(root: Path, checkpoint: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", "run", "--dataset", f"synthetic:{root}",
            "--out", str(out), "--model", str(checkpoint), "--shard-size", "1",
            "--max-size", "128", "--workers", "1", "--cpus-per-worker", "1"]


def _env() -> dict[str, str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    return env


def _start_and_wait_for_a_part(argv: list[str], out: Path) -> subprocess.Popen[str]:
    job = subprocess.Popen(argv, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((out / "images").glob("part-*.parquet")) if (out / "images").is_dir() \
            else True:
        if job.poll() is not None or time.monotonic() > deadline:
            job.kill()
            raise AssertionError(f"no part appeared: {job.communicate()[1][-2000:]}")
        time.sleep(0.05)
    return job


def _gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p)
                 and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.2)
    return alive


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_ends_the_run_cleanly_and_says_how_to_resume(
        tmp_path: Path, small_checkpoint: Path, synthetic_root: Path) -> None:  # noqa: F811
    out = tmp_path / "run"
    argv = _argv(synthetic_root, small_checkpoint, out)
    job = _start_and_wait_for_a_part(argv, out)
    ray_processes = [c.pid for c in psutil.Process(job.pid).children(recursive=True)]
    assert ray_processes  # the local Ray this driver started
    job.send_signal(signal.SIGTERM)
    stdout, stderr = job.communicate(timeout=120)
    assert job.returncode == 130, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last == (f"dsfd run: interrupted; complete shards are kept in {out}: run the same "
                    "command again to resume")
    assert stdout == ""  # Ray's banner and logs stay off stdout
    assert not (out / LOCK_FILE).exists()
    assert _gone(ray_processes, 30) == []
    done = subprocess.run(argv, cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "12 images in 12 shards: 0 errors" in done.stdout
    assert RunDir.open(out).images().num_rows == 12


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_killed_driver_leaves_no_ray_processes_and_its_lock_is_taken_over(
        tmp_path: Path, small_checkpoint: Path, synthetic_root: Path) -> None:  # noqa: F811
    out = tmp_path / "run"
    argv = _argv(synthetic_root, small_checkpoint, out)
    job = _start_and_wait_for_a_part(argv, out)
    ray_processes = [c.pid for c in psutil.Process(job.pid).children(recursive=True)]
    job.kill()
    job.communicate(timeout=60)
    assert _gone(ray_processes, 60) == []
    assert (out / LOCK_FILE).exists()  # left behind by the killed driver
    done = subprocess.run(argv, cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"took over {out / LOCK_FILE} of pid {job.pid}" in done.stderr
    assert RunDir.open(out).images().num_rows == 12


def test_a_run_into_a_folder_another_job_owns_is_refused_before_ray(
        tmp_path: Path, synthetic_root: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    with RunDir.open_for_writing(out):  # another job holds the folder
        code = main(["run", "--dataset", f"synthetic:{synthetic_root}", "--out", str(out),
                     "--model", "vgg16", "--address", "127.0.0.1:1"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert err.startswith(f"dsfd run: error: {out} is in use by pid {os.getpid()} on host ")


def test_label_into_the_project_holding_its_photos_is_refused_and_nothing_is_touched(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from tests.pipeline.odd_images import gradient_rgb

    project = tmp_path / "project"
    (project / "images").mkdir(parents=True)
    Image.fromarray(gradient_rgb(32, 24)).save(project / "images" / "part-3.png")
    before = sorted(p.name for p in (project / "images").iterdir())
    for extra in ([], ["--restart"]):
        code = main(["label", "--images", str(project / "images"), "--out", str(project),
                     "--model", "vgg16", "--address", "127.0.0.1:1", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1
        assert err[-1] == (f"dsfd label: error: the input folder {project / 'images'} lies "
                           f"inside --out {project}: the run would write among its inputs; "
                           "choose an --out outside it")
    assert sorted(p.name for p in (project / "images").iterdir()) == before
    assert sorted(p.name for p in project.iterdir()) == ["images"]
