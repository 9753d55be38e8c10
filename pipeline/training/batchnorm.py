"""BatchNorm handling in training (``TrainConfig.bn``): per worker, synchronised across the
data-parallel workers, or frozen.

torch's ``SyncBatchNorm`` refuses CPU tensors, so the synchronised form here all-reduces the
per-channel sums through ``torch.distributed.nn`` (differentiable; gloo on CPU, NCCL on GPU):
every worker normalises with the statistics of the whole global batch, as one process with
the whole batch would. Both replacement modules keep ``BatchNorm2d``'s state_dict keys, so a
checkpoint loads into the plain model for inference.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

BN_MODES = ("train", "sync", "frozen")


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are those of the global batch.

    Outside an initialised process group of more than one process, or in eval mode, it is
    exactly ``BatchNorm2d``.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        channels = x.shape[1]
        count = torch.full((1,), x.numel() / channels, dtype=x.dtype, device=x.device)
        local = torch.cat([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3)), count])
        total = all_reduce(local)  # [2C + 1], gradients flow back to every worker
        n = total[-1]
        mean = total[:channels] / n
        var = (total[channels:2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                momentum = 0.1 if self.momentum is None else self.momentum
                unbiased = var * n / (n - 1).clamp_min(1)
                self.running_mean.mul_(1 - momentum).add_(momentum * mean)
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased)  # type: ignore[union-attr]
                self.num_batches_tracked.add_(1)  # type: ignore[union-attr]
        scale = torch.rsqrt(var + self.eps)
        y = (x - mean[None, :, None, None]) * scale[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` that always normalises with its running statistics and learns
    nothing (affine frozen), the usual setting when fine-tuning from ImageNet weights."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__(num_features, eps=eps)
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenBatchNorm2d:
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight,
                                        self.bias, False, 0.0, self.eps)


def convert_batchnorm(model: nn.Module, mode: str) -> nn.Module:
    """Replace every ``BatchNorm2d`` of ``model`` for ``mode`` (``train`` leaves it alone),
    keeping weights and running statistics; returns ``model``.

    Raises:
        ValueError: an unknown mode.
    """
    if mode not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}, got {mode!r}")
    if mode == "train":
        return model
    for name, child in list(model.named_children()):
        if type(child) is nn.BatchNorm2d:
            new: nn.BatchNorm2d
            if mode == "sync":
                new = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum,
                                        child.affine, child.track_running_stats)
            else:
                new = FrozenBatchNorm2d(child.num_features, child.eps)
            new.load_state_dict(child.state_dict())
            new.to(child.weight.device if child.weight is not None else "cpu")
            setattr(model, name, new)
        else:
            convert_batchnorm(child, mode)
    return model
