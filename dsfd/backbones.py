"""Backbones: the extended VGG16 of S3FD/PyramidBox and torchvision-compatible ResNets.

Parameter names follow torchvision (``features.N`` for VGG16; ``conv1``, ``bn1``,
``layer1..layer4`` with ``Bottleneck`` blocks for ResNet), so ImageNet weights saved from
torchvision load from a local file without torchvision being installed. Every backbone returns
four maps at strides 4, 8, 16 and 32 (of1..of4 of the paper); :func:`extra_layers` adds the
two stride-64/128 maps (of5, of6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from dsfd.config import scaled

RESNET_BLOCKS: dict[str, tuple[int, int, int, int]] = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
}
# torchvision VGG16 "features" layout: conv widths, "M" = max pool.
VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)
VGG16_TAPS: tuple[int, ...] = (15, 22, 29)  # ReLU after conv3_3, conv4_3, conv5_3
# ImageNet VGG16 fc6 is a 7x7 "convolution" over pool5; the reduced fc keeps every 4th output
# channel (4096 -> 1024) and every 3rd tap (7x7 -> 3x3 at dilation 3); fc7 every 4th in and out.
FC_CHANNEL_STEP = 4
FC6_KERNEL = 7
FC6_TAP_STEP = 3


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learnable per-channel scale (ParseNet, S3FD).

    ``y = x / (||x||_2 over channels + 1e-10) * weight``, ``weight`` initialised to ``scale``.
    """

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.full((channels,), self.scale))

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[N, C, H, W]`` -> same shape."""
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10  # [N, 1, H, W]
        return x / norm * self.weight[None, :, None, None]


class VGG16(nn.Module):
    """Extended VGG16: torchvision ``features`` (pools in ceil mode) + pool5, fc6, fc7 convs.

    ``fc6`` is a 3x3 conv with dilation 3 (512 -> 1024) after a 2x2/2 pool5 and ``fc7`` a 1x1
    conv (1024 -> 1024), as in the VGG16 DSFD of DSFD.pytorch and S3FD; ImageNet weights fit
    them through :func:`reduced_fc`. Outputs conv3_3, conv4_3, conv5_3 and fc7 at strides 4, 8,
    16, 32.
    """

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
            else:
                out_ch = scaled(int(item), width)
                layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = out_ch
        self.features = nn.Sequential(*layers)
        fc_ch = scaled(1024, width)
        self.fc6 = nn.Conv2d(in_ch, fc_ch, 3, padding=3, dilation=3)
        self.fc7 = nn.Conv2d(fc_ch, fc_ch, 1)
        self.out_channels = [scaled(256, width), scaled(512, width), in_ch, fc_ch]

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x``: ``[N, 3, H, W]`` -> four maps at strides 4, 8, 16, 32."""
        outs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in VGG16_TAPS:
                outs.append(x)
        x = torch.relu(self.fc7(torch.relu(self.fc6(x))))
        outs.append(x)
        return outs


def reduced_fc(classifier: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """SSD's "reduced fc": ImageNet VGG16 ``fc6``/``fc7`` as the dilated 1024-channel convs.

    The recipe of SSD (Liu et al., used by S3FD and DSFD.pytorch through
    ``vgg16_reducedfc.pth``): fc6 ``[4096, 512*7*7]`` is viewed as a 7x7 conv
    ``[4096, 512, 7, 7]`` (torchvision flattens pool5 channel-major) and decimated to
    ``[1024, 512, 3, 3]`` by keeping output channels ``0, 4, 8, ...`` and kernel taps
    ``0, 3, 6`` in each direction; a 3x3 kernel at dilation 3 after the stride-32 pool5 then
    spans the same 7x7 cells the original fc6 did. fc7 ``[4096, 4096]`` keeps every 4th
    output and input channel: ``[1024, 1024, 1, 1]``. Biases keep every 4th entry.

    Args:
        classifier: torchvision key names ``classifier.0.weight`` ``[O6, C*49]``,
            ``classifier.0.bias`` ``[O6]``, ``classifier.3.weight`` ``[O7, O6]``,
            ``classifier.3.bias`` ``[O7]`` (``O6 = O7 = 4096``, ``C = 512`` for the real
            network; any multiple of 4 works, e.g. for small test networks).

    Returns:
        ``{"fc6.weight": [O6/4, C, 3, 3], "fc6.bias": [O6/4], "fc7.weight":
        [O7/4, O6/4, 1, 1], "fc7.bias": [O7/4]}``, new contiguous tensors.

    Raises:
        KeyError: a classifier key is missing.
        ValueError: the shapes are not those of a VGG classifier.
    """
    fc6_w, fc6_b = classifier["classifier.0.weight"], classifier["classifier.0.bias"]
    fc7_w, fc7_b = classifier["classifier.3.weight"], classifier["classifier.3.bias"]
    taps = FC6_KERNEL * FC6_KERNEL
    if (fc6_w.ndim != 2 or fc6_w.shape[1] % taps or fc7_w.ndim != 2
            or fc7_w.shape[1] != fc6_w.shape[0] or fc6_b.shape != fc6_w.shape[:1]
            or fc7_b.shape != fc7_w.shape[:1]):
        raise ValueError(
            "reduced_fc: expected classifier.0.weight [O6, C*49], classifier.3.weight [O7, O6] "
            f"and matching biases, got {tuple(fc6_w.shape)}, {tuple(fc7_w.shape)}, "
            f"{tuple(fc6_b.shape)}, {tuple(fc7_b.shape)}"
        )
    step, tap = FC_CHANNEL_STEP, FC6_TAP_STEP
    fc6 = fc6_w.reshape(fc6_w.shape[0], -1, FC6_KERNEL, FC6_KERNEL)  # [O6, C, 7, 7]
    return {
        "fc6.weight": fc6[::step, :, ::tap, ::tap].contiguous(),  # [O6/4, C, 3, 3]
        "fc6.bias": fc6_b[::step].contiguous(),
        "fc7.weight": fc7_w[::step, ::step, None, None].contiguous(),  # [O7/4, O6/4, 1, 1]
        "fc7.bias": fc7_b[::step].contiguous(),
    }


class Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck (stride on the 3x3 conv, expansion 4)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """``[N, inplanes, H, W]`` -> ``[N, 4*planes, H/stride, W/stride]``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def resnet_stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """One ResNet stage (torchvision ``_make_layer``): a projection block then identities."""
    out = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
        )
    layers = [Bottleneck(inplanes, planes, stride, downsample)]
    layers += [Bottleneck(out, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """torchvision-named ResNet (no ``fc``); outputs layer1..layer4 at strides 4..32."""

    def __init__(self, blocks: Sequence[int], width: float = 1.0) -> None:
        super().__init__()
        stem = scaled(64, width)
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        planes = [scaled(p, width) for p in (64, 128, 256, 512)]
        inplanes = stem
        stages = []
        for index, (p, n) in enumerate(zip(planes, blocks, strict=True)):
            stages.append(resnet_stage(inplanes, p, n, stride=1 if index == 0 else 2))
            inplanes = p * Bottleneck.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = [p * Bottleneck.expansion for p in planes]

    def forward(self, x: Tensor) -> list[Tensor]:
        """``x``: ``[N, 3, H, W]`` -> four maps at strides 4, 8, 16, 32."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return [c2, c3, c4, self.layer4(c4)]


def extra_layers(in_channels: int, width: float, batch_norm: bool) -> nn.ModuleList:
    """conv6_x and conv7_x: ``1x1 -> 3x3/2`` twice, giving the stride-64 and stride-128 maps.

    VGG16 (S3FD): 1x1 1024->256, 3x3/2 256->512, 1x1 512->128, 3x3/2 128->256, each with ReLU.
    ResNet (the release's ``layer5``/``layer6``): 1x1 ->512, 3x3/2 512->512, 1x1 ->128,
    3x3/2 128->256, each conv with bias followed by BatchNorm and ReLU.
    """
    first = scaled(512 if batch_norm else 256, width)
    plan = [(in_channels, first, scaled(512, width)),
            (scaled(512, width), scaled(128, width), scaled(256, width))]
    stages = nn.ModuleList()
    for c_in, c_mid, c_out in plan:
        mods: list[nn.Module] = [nn.Conv2d(c_in, c_mid, 1)]
        mods += [nn.BatchNorm2d(c_mid)] if batch_norm else []
        mods += [nn.ReLU(inplace=True), nn.Conv2d(c_mid, c_out, 3, stride=2, padding=1)]
        mods += [nn.BatchNorm2d(c_out)] if batch_norm else []
        mods.append(nn.ReLU(inplace=True))
        stages.append(nn.Sequential(*mods))
    return stages
