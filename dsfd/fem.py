"""The Feature Enhance Module of the paper (section 3.2, equation 1, figure 3).

``ec_l = concat(dilation_branches(nc_l))`` with ``nc_l = prod(oc_l, up(oc_{l+1}))``: a 1x1 conv
"normalises" the current original map ``of_l`` and the upper original map ``of_{l+1}``; the
upper one is upsampled to the current size and multiplied element-wise with the current one; the
product is split into three channel groups that go through 1, 2 and 3 dilated 3x3 convs; the
three results are concatenated into ``ef_l``, which has the size and channel count of ``of_l``.

Choices the paper leaves open, and what this module does (also listed in ``docs/model.md``):

1. *Which upper map*: the upper **original** map ``of_{l+1}``, as equation 1 writes
   (``oc(i,j,l+1)``), not the already enhanced one (no top-down cascade as in FPN/LFPN).
2. *Normalising 1x1 convs*: one on the current map (C_l -> C_l) and one on the upper map
   (C_{l+1} -> C_l), both with bias and no activation, so the product has C_l channels.
3. *Top level* (``of6`` has no upper map): ``nc_6`` is its 1x1-normalised map alone.
4. *Upsampling*: bilinear with ``align_corners=False`` to the exact current size (odd sizes
   included); no weights exist that depend on another choice.
5. *Split*: a channel split of ``nc_l`` into ``floor(C/3)``, ``floor(C/3)`` and the rest.
6. *Dilation*: 3 for every dilated conv (figure 3), padding 3 so sizes are kept; each branch
   keeps its group's channel count; every dilated conv is followed by ReLU.
7. No ReLU or normalisation after the product, and none after the concatenation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def split_channels(channels: int) -> tuple[int, int, int]:
    """Channel groups of the three branches: ``floor(C/3)``, ``floor(C/3)``, rest."""
    third = channels // 3
    if third == 0:
        raise ValueError(f"FEM needs at least 3 channels to split, got {channels}")
    return third, third, channels - 2 * third


class FEMLevel(nn.Module):
    """FEM for one level: ``of_l`` (+ ``of_{l+1}``) -> ``ef_l`` with ``of_l``'s shape."""

    def __init__(self, channels: int, upper_channels: int | None, dilation: int = 3) -> None:
        super().__init__()
        self.current = nn.Conv2d(channels, channels, 1)
        self.upper = None if upper_channels is None else nn.Conv2d(upper_channels, channels, 1)
        self.groups = split_channels(channels)
        self.branches = nn.ModuleList()
        for depth, group in zip((1, 2, 3), self.groups, strict=True):
            convs: list[nn.Module] = []
            for _ in range(depth):
                convs += [nn.Conv2d(group, group, 3, padding=dilation, dilation=dilation),
                          nn.ReLU(inplace=True)]
            self.branches.append(nn.Sequential(*convs))

    def forward(self, current: Tensor, upper: Tensor | None) -> Tensor:
        """``current`` ``[N, C, H, W]``, ``upper`` ``[N, C', H', W']`` or None -> like current."""
        mixed = self.current(current)
        if self.upper is not None:
            if upper is None:
                raise ValueError("FEMLevel: this level expects an upper map")
            up = F.interpolate(self.upper(upper), size=current.shape[-2:], mode="bilinear",
                               align_corners=False)
            mixed = mixed * up
        parts = torch.split(mixed, list(self.groups), dim=1)  # three [N, C_k, H, W]
        return torch.cat([b(p) for b, p in zip(self.branches, parts, strict=True)], dim=1)


class FeatureEnhanceModule(nn.Module):
    """FEM over all levels: ``[of1..ofL]`` -> ``[ef1..efL]`` (same shapes)."""

    def __init__(self, channels: Sequence[int], dilation: int = 3) -> None:
        super().__init__()
        uppers: list[int | None] = [*channels[1:], None]
        self.levels = nn.ModuleList(
            FEMLevel(c, u, dilation) for c, u in zip(channels, uppers, strict=True)
        )

    def forward(self, original: Sequence[Tensor]) -> list[Tensor]:
        """``original``: L maps ``[N, C_l, H_l, W_l]`` -> L enhanced maps, same shapes."""
        uppers = [*original[1:], None]
        return [level(cur, up) for level, cur, up in zip(self.levels, original, uppers,
                                                         strict=True)]
