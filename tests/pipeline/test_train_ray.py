"""Two Ray Train workers (DDP over gloo): the loss goes down and the result resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsfd.checkpoint import load_model
from pipeline.train import TrainConfig, fit


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.datasets.synthetic import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("synth")
    generate_benchmark(root, SynthConfig(seed=4, num_train=8, num_val=2, num_fddb=0))
    return root


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_workers_loss_goes_down(synth_dir: Path, tmp_path: Path, ray_ctx) -> None:
    cfg = TrainConfig(
        dataset=f"synthetic:{synth_dir}",
        out=str((tmp_path / "ckpt").resolve()),
        model="vgg16",
        width=0.0625,
        workers=2,
        steps=16,
        batch_size=4,
        image_size=96,
        checkpoint_every=8,
        log_every=1,
        seed=0,
        max_failures=0,
    )
    final = fit(cfg, controller_failure_limit=0)
    assert final["step"] == 16
    losses = [
        json.loads(x)["loss"] for x in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()
    ]
    assert len(losses) == 16
    first, last = sum(losses[:3]) / 3, sum(losses[-4:]) / 4
    assert last < 0.8 * first, losses
    model, info = load_model(str(Path(cfg.out) / "last.pt"))
    assert info.extra["step"] == 16 and info.extra["train_config"]["workers"] == 2
    # Ray Train's own run state lives under the checkpoint folder.
    assert (Path(cfg.out) / "ray").is_dir()
