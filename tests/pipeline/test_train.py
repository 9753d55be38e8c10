"""Training loop: schedule, data addressing, checkpoints and exact resume (Ray Train local mode)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dsfd.augment import AugmentConfig
from dsfd.checkpoint import load_model, read_weights_file
from dsfd.config import ModelConfig
from pipeline.datasets import face_records
from pipeline.training import TrainConfig, fit, learning_rate, read_train_config
from pipeline.training.data import TrainingImages, step_indices


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.synthetic import SynthConfig, generate_benchmark

    root = tmp_path_factory.mktemp("synth")
    generate_benchmark(root, SynthConfig(seed=3, num_train=8, num_val=2, num_fddb=0))
    return root


def _config(synth_dir: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(
        dataset=f"synthetic:{synth_dir}",
        out=str(out.resolve()),
        model=ModelConfig(name="vgg16", width=0.0625, input_size=96),
        workers=0,
        steps=6,
        batch_size=2,
        checkpoint_every=2,
        log_every=1,
        seed=5,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_learning_rate_schedule_scales_the_paper_steps() -> None:
    cfg = TrainConfig(dataset="synthetic:/x", out="/abs", steps=60000, lr=1e-3)
    assert learning_rate(0, cfg) == 1e-3 and learning_rate(39999, cfg) == 1e-3
    assert learning_rate(40000, cfg) == pytest.approx(1e-4)
    assert learning_rate(49999, cfg) == pytest.approx(1e-4)
    assert learning_rate(50000, cfg) == pytest.approx(1e-5)
    small = replace(cfg, steps=12)
    assert [learning_rate(s, small) for s in (7, 8, 9, 10, 11)] == pytest.approx(
        [1e-3, 1e-4, 1e-4, 1e-5, 1e-5]
    )


def test_config_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match="absolute"):
        TrainConfig(dataset="synthetic:/x", out="relative/dir")
    with pytest.raises(ValueError, match="does not split evenly over 3 workers"):
        TrainConfig(dataset="synthetic:/x", out="/abs", workers=3, batch_size=16)
    with pytest.raises(ValueError, match="stop_at"):
        TrainConfig(dataset="synthetic:/x", out="/abs", steps=5, stop_at=6)


def test_workers_share_each_global_batch_exactly() -> None:
    for world in (1, 2, 4):
        got = sorted(i for r in range(world) for i in step_indices(3, 16, r, world))
        assert got == list(range(48, 64))


def test_training_samples_are_a_function_of_seed_and_index(synth_dir: Path) -> None:
    records = face_records(f"synthetic:{synth_dir}")
    assert len(records) == 8 and all(r.path for r in records)
    aug = AugmentConfig(image_size=64)
    a = TrainingImages(records, aug, seed=1, input_format="rgb_imagenet")
    b = TrainingImages(records, aug, seed=1, input_format="rgb_imagenet")
    x1, boxes1 = a[11]
    x2, boxes2 = b[11]
    assert x1.shape == (3, 64, 64) and x1.dtype == torch.float32
    assert torch.equal(x1, x2) and torch.equal(boxes1, boxes2)
    # One epoch visits every image once.
    assert sorted(a.image_of(i) for i in range(8)) == list(range(8))
    assert sorted(a.image_of(i) for i in range(8, 16)) == list(range(8))


def test_checkpoints_metrics_and_loadable_model(synth_dir: Path, tmp_path: Path) -> None:
    cfg = _config(synth_dir, tmp_path / "ckpt")
    final = fit(cfg)
    out = Path(cfg.out)
    assert final["step"] == 6
    assert sorted(p.name for p in out.glob("checkpoint-*.pt")) == [
        "checkpoint-0000002.pt",
        "checkpoint-0000004.pt",
        "checkpoint-0000006.pt",
    ]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "lr", "images_per_s", "first_conf", "second_box"} <= set(lines[0])
    assert [x["lr"] for x in lines] == pytest.approx([1e-3] * 4 + [1e-4, 1e-5])
    assert json.loads((out / "train_config.json").read_text())["steps"] == 6
    model, info = load_model(str(out / "last.pt"))
    assert info.source == "checkpoint" and info.extra["step"] == 6
    assert info.config.width == 0.0625
    assert "optimizer" in info.extra and "torch_rng" in info.extra
    assert not any(p.name.startswith(".") for p in out.iterdir() if p.is_file())


def test_resumed_run_equals_uninterrupted_run(synth_dir: Path, tmp_path: Path) -> None:
    whole = _config(synth_dir, tmp_path / "whole")
    fit(whole)
    parts = _config(synth_dir, tmp_path / "parts", stop_at=3)
    fit(parts)
    first = read_weights_file(Path(parts.out) / "last.pt")
    assert first["extra"]["step"] == 3
    fit(replace(parts, stop_at=None))  # the same command again continues from step 3
    a = read_weights_file(Path(whole.out) / "last.pt")
    b = read_weights_file(Path(parts.out) / "last.pt")
    assert b["extra"]["step"] == 6
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=1e-5, atol=1e-6)
    # The progress log has each step once, the resumed part appended after step 3.
    steps = [
        json.loads(x)["step"] for x in (Path(parts.out) / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 4, 5, 6]
    # And the weights did change from the start.
    diff = sum(
        float((b["state_dict"][k] - first["state_dict"][k]).abs().sum())
        for k in a["state_dict"]
        if a["state_dict"][k].is_floating_point()
    )
    assert diff > 0


def test_resume_refuses_another_model(synth_dir: Path, tmp_path: Path) -> None:
    cfg = _config(synth_dir, tmp_path / "m", steps=2)
    fit(cfg)
    with pytest.raises(Exception, match=r"another config \(model.name: 'vgg16' -> 'resnet50'"):
        fit(replace(cfg, model=ModelConfig(name="resnet50", width=0.0625, input_size=96),
                    steps=4))


def _flat_layout(config: TrainConfig) -> dict[str, object]:
    """``train_config.json`` as versions before the nested model config wrote it."""
    data = config.to_dict()
    model = data.pop("model")
    return {**data, "model": model["name"], "width": model["width"],
            "image_size": model["input_size"]}


def test_train_config_reads_both_layouts(tmp_path: Path) -> None:
    cfg = TrainConfig(dataset="synthetic:/x", out="/abs", steps=8, batch_size=4,
                      model=ModelConfig(name="resnet50", width=0.5, input_size=320))
    nested = cfg.to_dict()
    assert nested["model"] == {**ModelConfig("resnet50", 0.5, 320).to_dict()}
    assert TrainConfig.from_dict(nested) == cfg
    assert TrainConfig.from_dict(_flat_layout(cfg)) == cfg
    assert cfg.image_size == 320 and cfg.augment_config().image_size == 320
    path = tmp_path / "train_config.json"
    path.write_text(json.dumps(_flat_layout(cfg)))
    assert read_train_config(path) == cfg
    with pytest.raises(ValueError, match="unknown train config keys \\['colour'\\]"):
        TrainConfig.from_dict({**nested, "colour": "red"})
    path.write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        read_train_config(path)


def test_resume_reads_an_old_layout_train_config(synth_dir: Path, tmp_path: Path) -> None:
    cfg = _config(synth_dir, tmp_path / "old", stop_at=3)
    fit(cfg)
    saved = Path(cfg.out) / "train_config.json"
    old_text = json.dumps(_flat_layout(cfg), indent=2) + "\n"
    saved.write_text(old_text)  # the folder as an earlier version left it
    other = replace(cfg, model=ModelConfig(name="resnet50", width=0.0625, input_size=96),
                    stop_at=None)
    with pytest.raises(ValueError, match=r"another config \(model.name: 'vgg16' -> 'resnet50'\)"):
        fit(other)
    assert saved.read_text() == old_text  # refused before anything was written
    final = fit(replace(cfg, stop_at=None))
    assert final["step"] == 6
    assert read_train_config(saved).model == cfg.model
    assert json.loads(saved.read_text())["model"]["name"] == "vgg16"  # the nested layout now
