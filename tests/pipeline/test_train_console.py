"""`dsfd train`'s console (one line per step, no Ray output, a summary at the end), the
validation during training (``val_*`` in metrics.jsonl, ``best.pt`` kept across a resume) and
the TensorBoard event files."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.synthetic import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("synth")
    generate_benchmark(root, SynthConfig(seed=5, num_train=4, num_val=2, num_fddb=0))
    return root


def _args(synth_dir: Path, out: Path, *, workers: int, steps: int = 4) -> list[str]:
    return ["train", "--dataset", f"synthetic:{synth_dir}", "--out", str(out),
            "--model", "vgg16", "--width", "0.0625", "--workers", str(workers),
            "--steps", str(steps), "--batch-size", "2", "--image-size", "64",
            "--checkpoint-every", "2", "--log-every", "1",
            "--val-dataset", f"synthetic:{synth_dir}:val", "--val-every", "1"]


def _entries(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x]


def _event_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of every event file under ``folder``, read record by record (TFRecord framing:
    length u64, crc u32, data, crc u32) with tensorboardX's protobuf."""
    from tensorboardX.proto import event_pb2

    found: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found


def test_best_pt_is_the_best_validation_step_and_survives_a_resume(
        synth_dir: Path, tmp_path: Path, capsys) -> None:
    import torch

    out = tmp_path / "ckpt"
    assert main([*_args(synth_dir, out, workers=0), "--stop-at", "2"]) == 0
    first = json.loads((out / "best.json").read_text())
    assert main(_args(synth_dir, out, workers=0)) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    vals = [e for e in _entries(out) if "val_hard" in e]
    assert [e["step"] for e in vals] == [1, 2, 3, 4]
    assert first in [{"step": e["step"], "metric": "val_hard", "value": e["val_hard"]}
                     for e in vals if e["best"]]
    top = max(e["val_hard"] for e in vals)
    best_step = min(e["step"] for e in vals if e["val_hard"] == top)  # ties: the earlier
    best = json.loads((out / "best.json").read_text())
    assert best["step"] == best_step and best["metric"] == "val_hard"
    assert best["value"] >= first["value"]  # the resume kept the best so far
    state = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    assert state["extra"]["step"] == best_step
    assert summary.startswith("done: step 4") and f"at step {best_step}" in summary
    scalars = _event_scalars(out / "tb")
    assert {"loss/loss", "lr", "images_per_s", "val/hard"} <= set(scalars)
    # both invocations' event files (a resume within the same second kept only the second's)
    assert len(list((out / "tb").glob("events.out.tfevents.*"))) == 2
    assert sorted(s for s, _ in scalars["val/hard"]) == [1, 2, 3, 4]
    assert sorted(s for s, _ in scalars["loss/loss"]) == [1, 2, 3, 4]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_worker_console_has_our_lines_only(synth_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "60"}
    env.pop("RAY_ADDRESS", None)
    env.pop("DSFD_VERBOSE", None)
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", *_args(synth_dir, out, workers=2)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=280)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console
    for noise in ("pid=", "RayTrainWorker", "TrainController", "worker.py", "INFO", "WARNING"):
        assert noise not in console, console
    steps = [line for line in proc.stderr.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == ["1/4", "2/4", "3/4", "4/4"], console
    assert proc.stdout.strip().splitlines()[-1].startswith("done: step 4"), console
    log = (out / "logs" / "ray.log").read_text()
    assert "Started a local Ray instance" in log and "RayTrainWorker" in log


def test_a_validation_line_names_its_metric() -> None:
    from pipeline.training.loop import format_entry

    wider = {"step": 2, "val_easy": 0.5, "val_medium": 0.25, "val_hard": 0.125,
             "val_images": 8, "best": True}
    fddb = {"step": 4, "val_fddb_discrete": 0.75, "val_fddb_continuous": 0.5, "val_images": 6}
    assert format_entry(wider, 4) == ("validation step 2/4: AP easy 0.5000 medium 0.2500 "
                                      "hard 0.1250 (8 images) best")
    assert format_entry(fddb, 4) == ("validation step 4/4: TPR@1000FP fddb_discrete 0.7500 "
                                     "fddb_continuous 0.5000 (6 images)")
