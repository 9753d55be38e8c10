"""BatchNorm in training: synchronised across two Ray Train CPU workers (gloo) it equals one
BatchNorm over the whole batch; frozen it learns nothing and loads into the plain model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from pipeline.training.batchnorm import FrozenBatchNorm2d, GlobalBatchNorm2d, convert_batchnorm

CHANNELS = 4


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, CHANNELS, 5, 5, generator=gen) * 3 + 1
    w = torch.randn(8, CHANNELS, 5, 5, generator=gen)  # a fixed loss weighting
    return x, w


def _bn(cls: type[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    bn = cls(CHANNELS)
    with torch.no_grad():
        bn.weight.copy_(torch.arange(1.0, CHANNELS + 1))
        bn.bias.copy_(torch.linspace(-1, 1, CHANNELS))
    return bn


def _worker(config: dict[str, Any]) -> None:
    import ray.train

    rank = ray.train.get_context().get_world_rank()
    x, w = _batch()
    half = slice(rank * 4, rank * 4 + 4)
    xs = x[half].clone().requires_grad_(True)
    bn = _bn(GlobalBatchNorm2d).train()
    y = bn(xs)
    (y * w[half]).sum().backward()
    torch.save({"y": y.detach(), "x_grad": xs.grad, "w_grad": bn.weight.grad,
                "b_grad": bn.bias.grad, "running_mean": bn.running_mean,
                "running_var": bn.running_var}, Path(config["out"]) / f"rank{rank}.pt")
    ray.train.report({"done": 1})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sync_batchnorm_on_two_ray_train_workers_equals_one_batchnorm(
        tmp_path: Path, ray_ctx: None) -> None:
    import os
    import sys

    import ray.cloudpickle

    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import it
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    trainer = TorchTrainer(_worker, train_loop_config={"out": str(tmp_path)},
                           scaling_config=ScalingConfig(num_workers=2, use_gpu=False),
                           torch_config=TorchConfig(backend="gloo"),
                           run_config=RunConfig(storage_path=str(tmp_path / "ray")))
    trainer.fit()
    parts = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    x, w = _batch()
    xs = x.clone().requires_grad_(True)
    bn = _bn(nn.BatchNorm2d).train()
    y = bn(xs)
    (y * w).sum().backward()
    torch.testing.assert_close(torch.cat([p["y"] for p in parts]), y.detach(),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.cat([p["x_grad"] for p in parts]), xs.grad,
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(parts[0]["w_grad"] + parts[1]["w_grad"], bn.weight.grad,
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(parts[0]["b_grad"] + parts[1]["b_grad"], bn.bias.grad)
    for p in parts:
        torch.testing.assert_close(p["running_mean"], bn.running_mean)
        torch.testing.assert_close(p["running_var"], bn.running_var, rtol=1e-4, atol=1e-5)


def test_outside_a_process_group_sync_batchnorm_is_batchnorm() -> None:
    x, _ = _batch()
    torch.testing.assert_close(_bn(GlobalBatchNorm2d).train()(x), _bn(nn.BatchNorm2d).train()(x))


def test_frozen_batchnorm_uses_running_stats_learns_nothing_and_loads_back() -> None:
    model = nn.Sequential(nn.Conv2d(3, CHANNELS, 3), _bn(nn.BatchNorm2d))
    with torch.no_grad():
        model[1].running_mean.fill_(0.5)
        model[1].running_var.fill_(2.0)
    reference = model.eval()(torch.ones(2, 3, 6, 6))
    convert_batchnorm(model, "frozen")
    assert isinstance(model[1], FrozenBatchNorm2d)
    model.train()
    assert not model[1].training
    x = torch.ones(2, 3, 6, 6)
    torch.testing.assert_close(model(x), reference)
    model(x).sum().backward()
    assert model[1].weight.grad is None and model[1].bias.grad is None
    assert torch.all(model[1].running_mean == 0.5)
    plain = nn.Sequential(nn.Conv2d(3, CHANNELS, 3), nn.BatchNorm2d(CHANNELS))
    plain.load_state_dict(model.state_dict())  # same keys: checkpoints stay loadable
    torch.testing.assert_close(plain.eval()(x), reference)


def test_auto_bn_mode_follows_the_setup() -> None:
    from dsfd.config import ModelConfig
    from pipeline.training import TrainConfig

    def cfg(**kw: Any) -> TrainConfig:
        return TrainConfig(dataset="synthetic:/x", out="/abs/out",
                           model=ModelConfig(name="resnet50", width=0.125), batch_size=4, **kw)

    assert cfg(workers=2).bn_mode == "sync"
    assert cfg(workers=0).bn_mode == "train"
    assert cfg(workers=2, backbone_weights="/w.pt").bn_mode == "frozen"
    assert cfg(workers=2, bn="train").bn_mode == "train"
    with pytest.raises(ValueError, match="bn must be auto, train, sync or frozen"):
        cfg(bn="group")
