"""Parameters and multiply-adds of every named model at 640x640 (width 1.0).

Counts convolution multiply-adds with forward hooks on every ``nn.Conv2d`` (``out elements *
in_channels / groups * kh * kw``); upsampling, products, norms and activations are not counted.
The forward runs on the ``meta`` device (shapes only), so this takes seconds.

    .venv/bin/python benchmarks/model_cost.py [--size 640] [--width 1.0]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from dsfd.build import build_from_config
from dsfd.config import ModelConfig
from dsfd.registry import model_names


def conv_macs(model: nn.Module, size: int) -> int:
    """Multiply-adds of all convolutions for one ``size x size`` image."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d)
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.empty(1, 3, size, size, device="meta"))
    for h in handles:
        h.remove()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--width", type=float, default=1.0)
    args = parser.parse_args()
    print(f"| model | width | parameters | conv GMACs at {args.size}x{args.size} |")
    print("|---|---|---:|---:|")
    for name in model_names():
        with torch.device("meta"):
            model = build_from_config(ModelConfig(name=name, width=args.width)).eval()
        params = sum(p.numel() for p in model.parameters())
        macs = conv_macs(model, args.size)
        print(f"| {name} | {args.width:g} | {params:,} | {macs / 1e9:.2f} |")


if __name__ == "__main__":
    main()
