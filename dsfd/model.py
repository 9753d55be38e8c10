"""The paper-faithful dual-shot DSFD and the output types every DSFD model returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from dsfd.anchors import FIRST_SHOT_ANCHORS, SECOND_SHOT_ANCHORS, AnchorSpec
from dsfd.config import ModelConfig
from dsfd.fem import FeatureEnhanceModule


class Shot(NamedTuple):
    """Raw outputs of one shot.

    Attributes:
        loc: ``[N, A, 4]`` box regression (SSD deltas, see :func:`dsfd.boxes.decode`).
        conf: ``[N, A, 2]`` class logits, background then face.
        feature_hw: ``[(H_k, W_k), ...]`` the real sizes of the maps the heads ran on; with the
            input size they give the anchors (level 0 first, row-major).
    """

    loc: Tensor
    conf: Tensor
    feature_hw: list[tuple[int, int]]


class DSFDOutput(NamedTuple):
    """Both shots. ``first`` is None for models without a first shot (``release-r152``).

    ``auxiliary`` holds training-only outputs matched against the same face boxes with their own
    anchors (``model.auxiliary_anchor_specs``, same order): the release's "head" and "body"
    progressive-anchor branches; empty for the paper models.
    """

    first: Shot | None
    second: Shot
    auxiliary: tuple[Shot, ...] = ()


def flatten_levels(maps: Sequence[Tensor], channels: int) -> Tensor:
    """Per-level head outputs ``[N, k*channels, H, W]`` -> ``[N, sum(H*W*k), channels]``.

    Cells are row-major (y then x), level 0 first, the anchors' layout.
    """
    flat = []
    for m in maps:
        n = m.shape[0]
        flat.append(m.permute(0, 2, 3, 1).reshape(n, -1, channels))  # [N, H*W*k, channels]
    return torch.cat(flat, dim=1)


def sizes_of(maps: Sequence[Tensor]) -> list[tuple[int, int]]:
    """``[(H, W), ...]`` of ``[N, C, H, W]`` maps."""
    return [(int(m.shape[-2]), int(m.shape[-1])) for m in maps]


def ssd_heads(channels: Sequence[int], out_per_cell: int) -> nn.ModuleList:
    """One 3x3 conv per level (SSD head): ``C_l -> out_per_cell`` (one anchor per cell)."""
    return nn.ModuleList(nn.Conv2d(c, out_per_cell, 3, padding=1) for c in channels)


class DSFD(nn.Module):
    """Dual Shot Face Detector as in the paper, assembled from injected parts.

    ``backbone`` gives of1..of4 (strides 4..32), ``extras`` of5 and of6 (strides 64, 128),
    ``norms`` is applied to each original map (L2Norm on of1..of3 for VGG16, identity
    otherwise) for the first shot, ``fem`` turns of* into ef*, and ``enhanced_norms`` (identity
    unless given) is applied to ef* for the second shot. ``normalise_before_fem`` chooses
    whether the FEM sees the normalised original maps (the official code's placement) or the
    raw ones (DSFD.pytorch's, which then normalises ef1..ef3 instead). The first shot's heads
    run on of* with ``anchor_specs[0]`` (8..256), the second shot's on ef* with
    ``anchor_specs[1]`` (16..512).

    Attributes:
        config: the :class:`ModelConfig` it was built from.
        anchor_specs: ``(first, second)`` anchor settings.
        auxiliary_anchor_specs: ``()``: the paper models have no auxiliary branches.
        input_format: the colour order and normalisation of the input tensor.
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        backbone: nn.Module,
        extras: nn.ModuleList,
        norms: nn.ModuleList,
        fem: FeatureEnhanceModule,
        channels: Sequence[int],
        input_format: str = "rgb_imagenet",
        anchor_specs: tuple[AnchorSpec, AnchorSpec] = (FIRST_SHOT_ANCHORS, SECOND_SHOT_ANCHORS),
        enhanced_norms: nn.ModuleList | None = None,
        normalise_before_fem: bool = True,
    ) -> None:
        super().__init__()
        if enhanced_norms is None:
            enhanced_norms = nn.ModuleList(nn.Identity() for _ in range(len(norms)))
        if len(channels) != 6 or len(norms) != 6 or len(enhanced_norms) != 6:
            raise ValueError(f"DSFD needs six levels, got {len(channels)} channels, "
                             f"{len(norms)} norms and {len(enhanced_norms)} enhanced norms")
        self.config = config
        self.anchor_specs: tuple[AnchorSpec | None, AnchorSpec] = anchor_specs
        self.auxiliary_anchor_specs: tuple[tuple[str, AnchorSpec], ...] = ()
        self.input_format = input_format
        self.normalise_before_fem = normalise_before_fem
        self.backbone = backbone
        self.extras = extras
        self.norms = norms
        self.fem = fem
        self.enhanced_norms = enhanced_norms
        self.first_loc = ssd_heads(channels, 4)
        self.first_conf = ssd_heads(channels, 2)
        self.second_loc = ssd_heads(channels, 4)
        self.second_conf = ssd_heads(channels, 2)

    def raw_maps(self, x: Tensor) -> list[Tensor]:
        """of1..of6 before any L2Norm: six ``[N, C_l, ceil(H/s_l), ceil(W/s_l)]``."""
        maps = list(self.backbone(x))
        for stage in self.extras:
            maps.append(stage(maps[-1]))
        return maps

    def original_maps(self, x: Tensor) -> list[Tensor]:
        """of1..of6 as the first shot sees them (after the L2Norms)."""
        return [norm(m) for norm, m in zip(self.norms, self.raw_maps(x), strict=True)]

    def forward(self, x: Tensor) -> DSFDOutput:
        """``x``: ``[N, 3, H, W]`` float (see ``input_format``) -> both shots' raw outputs."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"DSFD expects [N, 3, H, W] input, got {tuple(x.shape)}")
        raw = self.raw_maps(x)
        original = [norm(m) for norm, m in zip(self.norms, raw, strict=True)]
        enhanced = self.fem(original if self.normalise_before_fem else raw)
        enhanced = [norm(m) for norm, m in zip(self.enhanced_norms, enhanced, strict=True)]
        first = Shot(
            flatten_levels([h(m) for h, m in zip(self.first_loc, original, strict=True)], 4),
            flatten_levels([h(m) for h, m in zip(self.first_conf, original, strict=True)], 2),
            sizes_of(original),
        )
        second = Shot(
            flatten_levels([h(m) for h, m in zip(self.second_loc, enhanced, strict=True)], 4),
            flatten_levels([h(m) for h, m in zip(self.second_conf, enhanced, strict=True)], 2),
            sizes_of(enhanced),
        )
        return DSFDOutput(first, second)
