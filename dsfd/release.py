"""The network of the official checkpoint ``WIDERFace_DSFD_RES152.pth`` (``release-r152``).

It differs from the paper (see ``docs/model.md``): a ResNet152 regrouped into ``layer1..layer4``
Sequentials plus BN extras ``layer5``/``layer6``; an LFPN on the three lowest levels only
(``latlayer*`` on the upper map, ``smooth*`` on the current one, bilinear upsampling with
``align_corners=True`` and an element-wise product, cascaded top-down from fc7); a context
module ``cpm*`` with dilations 1 and 2 (256 + 128 + 128 channels); four-conv heads ``loc.k`` /
``conf.k`` with face, head and body outputs ("progressive anchors"); max-in-out on the
classification logits; no first shot. Module names equal the checkpoint's keys, so the file
loads with ``load_state_dict(strict=True)``.

Besides the face branch (returned as the second shot), ``forward`` returns the head and body
branches of the progressive anchors as ``DSFDOutput.auxiliary`` for training, sliced as
``face_ssd.py`` does in its train phase: head = loc channels 4..7 and raw conf channels 4..5 on
levels 1..5, body = loc 8..11 and raw conf 6..7 on levels 2..5 (max-in-out touches only the face
logits). Their anchors are ``RELEASE_HEAD_ANCHORS`` / ``RELEASE_BODY_ANCHORS``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dsfd.anchors import RELEASE_ANCHORS, RELEASE_BODY_ANCHORS, RELEASE_HEAD_ANCHORS
from dsfd.backbones import RESNET_BLOCKS, Bottleneck, extra_layers, resnet_stage
from dsfd.config import ModelConfig, scaled
from dsfd.model import DSFDOutput, Shot, flatten_levels, sizes_of

SOURCE_NAMES: tuple[str, ...] = ("cpm3_3", "cpm4_3", "cpm5_3", "cpm7", "cpm6_2", "cpm7_2")
# Outputs per level of the face/head/body heads: loc 4/8/12 and raw conf 4/6/8 channels.
LOC_CHANNELS: tuple[int, ...] = (4, 8, 12, 12, 12, 12)
CONF_CHANNELS: tuple[int, ...] = (4, 6, 8, 8, 8, 8)
# Training-only branches: (name, first level, loc channel slice, raw conf channel slice).
AUXILIARY_BRANCHES: tuple[tuple[str, int, slice, slice], ...] = (
    ("head", 1, slice(4, 8), slice(4, 6)),
    ("body", 2, slice(8, 12), slice(6, 8)),
)


class ContextModule(nn.Module):
    """The release's "FEM": SSH/PyramidBox context module, ``C_in -> 512`` (at width 1).

    Branch A = relu(cpm1(x)); t = relu(cpm2(x)) (dilation 2); branch B = relu(cpm3(t));
    branch C = relu(cpm5(relu(cpm4(t)))) (cpm4 dilation 2). Output concat[A, B, C].
    """

    def __init__(self, in_channels: int, width: float) -> None:
        super().__init__()
        wide, narrow = scaled(256, width), scaled(128, width)
        self.cpm1 = nn.Conv2d(in_channels, wide, 3, padding=1)
        self.cpm2 = nn.Conv2d(in_channels, wide, 3, padding=2, dilation=2)
        self.cpm3 = nn.Conv2d(wide, narrow, 3, padding=1)
        self.cpm4 = nn.Conv2d(wide, narrow, 3, padding=2, dilation=2)
        self.cpm5 = nn.Conv2d(narrow, narrow, 3, padding=1)
        self.out_channels = wide + 2 * narrow

    def forward(self, x: Tensor) -> Tensor:
        """``[N, C_in, H, W]`` -> ``[N, out_channels, H, W]``."""
        a = F.relu(self.cpm1(x))
        t = F.relu(self.cpm2(x))
        b = F.relu(self.cpm3(t))
        c = F.relu(self.cpm5(F.relu(self.cpm4(t))))
        return torch.cat((a, b, c), dim=1)


class DeepHead(nn.Module):
    """Three 3x3 convs with ReLU then a 1x1 conv (the release's ``DeepHeadModule``)."""

    def __init__(self, in_channels: int, out_channels: int, width: float) -> None:
        super().__init__()
        mid = min(in_channels, scaled(256, width))
        self.conv1 = nn.Conv2d(in_channels, mid, 3, padding=1)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1)
        self.conv3 = nn.Conv2d(mid, mid, 3, padding=1)
        self.conv4 = nn.Conv2d(mid, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, C, H, W]`` -> ``[N, out_channels, H, W]``."""
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.conv4(F.relu(self.conv3(x)))


def max_in_out(conf: Tensor, level: int) -> Tensor:
    """Max-in-out of one level's raw face logits: ``[N, >=4, H, W]`` -> ``[N, 2, H, W]``.

    Level 0: background = max of channels 0..2, face = channel 3. Levels >= 1: background =
    channel 3, face = max of channels 0..2 (``mio_module`` of the official code).
    """
    three = torch.maximum(torch.maximum(conf[:, 0:1], conf[:, 1:2]), conf[:, 2:3])
    if level == 0:
        return torch.cat((three, conf[:, 3:4]), dim=1)
    return torch.cat((conf[:, 3:4], three), dim=1)


def _upsample_product(upper: Tensor, current: Tensor) -> Tensor:
    # align_corners=True reproduces torch <= 0.3.1 F.upsample, which the weights were trained with.
    size = current.shape[-2:]
    return F.interpolate(upper, size=size, mode="bilinear", align_corners=True) * current


class ReleaseDSFD(nn.Module):
    """The official ResNet152 DSFD; ``forward`` returns the face branch as the second shot."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        width = config.width
        self.config = config
        self.anchor_specs = (None, RELEASE_ANCHORS)
        self.auxiliary_anchor_specs = (("head", RELEASE_HEAD_ANCHORS),
                                       ("body", RELEASE_BODY_ANCHORS))
        self.input_format = "bgr_mean"
        stem = scaled(64, width)
        planes = [scaled(p, width) for p in (64, 128, 256, 512)]
        chans = [p * Bottleneck.expansion for p in planes]
        blocks = RESNET_BLOCKS["resnet152"]
        self.layer1 = nn.Sequential(
            nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            resnet_stage(stem, planes[0], blocks[0], stride=1),
        )
        self.layer2 = nn.Sequential(resnet_stage(chans[0], planes[1], blocks[1], stride=2))
        self.layer3 = nn.Sequential(resnet_stage(chans[1], planes[2], blocks[2], stride=2))
        self.layer4 = nn.Sequential(resnet_stage(chans[2], planes[3], blocks[3], stride=2))
        self.layer5, self.layer6 = extra_layers(chans[3], width, batch_norm=True)
        self.latlayer3 = nn.Conv2d(chans[3], chans[2], 1)
        self.latlayer2 = nn.Conv2d(chans[2], chans[1], 1)
        self.latlayer1 = nn.Conv2d(chans[1], chans[0], 1)
        self.smooth3 = nn.Conv2d(chans[2], chans[2], 1)
        self.smooth2 = nn.Conv2d(chans[1], chans[1], 1)
        self.smooth1 = nn.Conv2d(chans[0], chans[0], 1)
        source_channels = [*chans, scaled(512, width), scaled(256, width)]
        for name, c_in in zip(SOURCE_NAMES, source_channels, strict=True):
            self.add_module(name, ContextModule(c_in, width))
        fem_out = scaled(256, width) + 2 * scaled(128, width)
        self.loc = nn.ModuleList(DeepHead(fem_out, c, width) for c in LOC_CHANNELS)
        self.conf = nn.ModuleList(DeepHead(fem_out, c, width) for c in CONF_CHANNELS)

    def sources(self, x: Tensor) -> list[Tensor]:
        """The six context-module outputs the heads run on (strides 4..128)."""
        conv3_3 = self.layer1(x)
        conv4_3 = self.layer2(conv3_3)
        conv5_3 = self.layer3(conv4_3)
        fc7 = self.layer4(conv5_3)
        conv6_2 = self.layer5(fc7)
        conv7_2 = self.layer6(conv6_2)
        lfpn3 = _upsample_product(self.latlayer3(fc7), self.smooth3(conv5_3))
        lfpn2 = _upsample_product(self.latlayer2(lfpn3), self.smooth2(conv4_3))
        lfpn1 = _upsample_product(self.latlayer1(lfpn2), self.smooth1(conv3_3))
        inputs = (lfpn1, lfpn2, lfpn3, fc7, conv6_2, conv7_2)
        return [getattr(self, name)(m) for name, m in zip(SOURCE_NAMES, inputs, strict=True)]

    def forward(self, x: Tensor) -> DSFDOutput:
        """``x``: ``[N, 3, H, W]`` BGR minus (104, 117, 123) -> face branch as ``second``.

        ``second.loc`` is ``[N, A, 4]`` (the face slice of each loc head) and ``second.conf``
        ``[N, A, 2]`` the (background, face) logits after max-in-out; ``first`` is None;
        ``auxiliary`` is ``(head, body)``, each ``loc [N, A_k, 4]`` and ``conf [N, A_k, 2]``
        (background, foreground) logits on levels 1..5 and 2..5.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ReleaseDSFD expects [N, 3, H, W] input, got {tuple(x.shape)}")
        srcs = self.sources(x)
        raw_loc = [head(s) for head, s in zip(self.loc, srcs, strict=True)]
        raw_conf = [head(s) for head, s in zip(self.conf, srcs, strict=True)]
        loc = [m[:, 0:4] for m in raw_loc]
        conf = [max_in_out(m, k) for k, m in enumerate(raw_conf)]
        second = Shot(flatten_levels(loc, 4), flatten_levels(conf, 2), sizes_of(srcs))
        auxiliary = tuple(
            Shot(flatten_levels([m[:, loc_slice] for m in raw_loc[start:]], 4),
                 flatten_levels([m[:, conf_slice] for m in raw_conf[start:]], 2),
                 sizes_of(srcs[start:]))
            for _, start, loc_slice, conf_slice in AUXILIARY_BRANCHES
        )
        return DSFDOutput(None, second, auxiliary)
