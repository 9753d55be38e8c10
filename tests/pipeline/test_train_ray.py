"""Two Ray Train workers (DDP over gloo): the loss goes down, and a killed worker is replaced
and training resumes from the last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from dsfd.checkpoint import load_model
from dsfd.config import ModelConfig
from pipeline.training import TrainConfig, fit


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.synthetic import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("synth")
    generate_benchmark(root, SynthConfig(seed=4, num_train=8, num_val=2, num_fddb=0))
    return root


def _steps(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _kill_one_worker_after(metrics: Path, step: int, killed: list[int], stop: threading.Event):
    """SIGKILL one Ray Train worker of this test's own Ray (a descendant of this process)."""
    while not stop.is_set():
        if any(e["step"] >= step for e in _steps(metrics)):
            for proc in psutil.Process(os.getpid()).children(recursive=True):
                try:
                    title = " ".join(proc.cmdline()) + proc.name()
                except psutil.Error:
                    continue
                if "RayTrainWorker" in title:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append(proc.pid)
                    return
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_workers_learn_and_survive_a_killed_worker(
    synth_dir: Path, tmp_path: Path, ray_ctx
) -> None:
    cfg = TrainConfig(
        dataset=f"synthetic:{synth_dir}",
        out=str((tmp_path / "ckpt").resolve()),
        model=ModelConfig(name="vgg16", width=0.0625, input_size=96),
        workers=2,
        steps=24,
        batch_size=4,
        checkpoint_every=8,
        log_every=1,
        seed=0,
        max_failures=2,
    )
    metrics = Path(cfg.out) / "metrics.jsonl"
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_one_worker_after, args=(metrics, 10, killed, stop))
    killer.start()
    try:
        final = fit(cfg, controller_failure_limit=0)
    finally:
        stop.set()
        killer.join()
    assert killed, "no Ray Train worker was found to kill"
    assert final["step"] == 24
    entries = _steps(metrics)
    assert [e["step"] for e in entries] == list(range(1, 25))
    # Steps after the kill were trained by a new worker group that restored step 8 or 16.
    assert entries[-1]["resumed_from"] in (8, 16)
    assert all(e["resumed_from"] == 0 for e in entries[:8])
    losses = [e["loss"] for e in entries]
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:3]) / 3, losses
    model, info = load_model(str(Path(cfg.out) / "last.pt"))
    assert info.extra["step"] == 24 and info.extra["train_config"]["workers"] == 2
    assert (Path(cfg.out) / "ray").is_dir()  # Ray Train's run state lives under --out
