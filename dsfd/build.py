"""Model factory: ``build_model(name, width=...)`` fills in the parts of each architecture.

Architectures are kept apart from weight loading (see :mod:`dsfd.checkpoint`): builders return
randomly initialised models (Xavier for the new layers, as the paper says; He for backbones).
Each architecture is one builder registered with ``@register_model(name)``.
"""

from __future__ import annotations

from torch import nn

from dsfd.backbones import RESNET_BLOCKS, VGG16, Bottleneck, L2Norm, ResNet, extra_layers
from dsfd.config import ModelConfig, scaled
from dsfd.fem import FeatureEnhanceModule
from dsfd.model import DSFD
from dsfd.registry import get_builder, register_model
from dsfd.release import ReleaseDSFD

L2NORM_SCALES: tuple[float, float, float] = (10.0, 8.0, 5.0)  # conv3_3, conv4_3, conv5_3


def _init_new_layers(*modules: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every conv (paper section 4.1)."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)


def _init_backbone(module: nn.Module) -> None:
    """He initialisation for backbone convs (torchvision's ResNet/VGG default), BN to 1/0.

    The last BN of every bottleneck starts at zero (torchvision's ``zero_init_residual``), so
    each block starts as the identity: otherwise an untrained ResNet152 in eval mode doubles
    its activation variance per block and overflows float32 on real pixel values.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if isinstance(m, Bottleneck):
            nn.init.zeros_(m.bn3.weight)


def _l2norms(channels: list[int]) -> nn.ModuleList:
    """L2Norm (scales 10, 8, 5) on levels 1..3, identity on levels 4..6."""
    norms = nn.ModuleList(nn.Identity() for _ in range(6))
    for level, scale in enumerate(L2NORM_SCALES):
        norms[level] = L2Norm(channels[level], scale)
    return norms


def _assemble(config: ModelConfig, backbone: VGG16 | ResNet, extras: nn.ModuleList,
              l2norm: bool) -> DSFD:
    """The dual-shot model around ``backbone``: FEM, both shots' heads, initialised.

    With ``l2norm``, ``config.l2norm`` places the L2Norms: ``"before_fem"`` on of1..of3 for the
    first shot and the FEM; ``"per_shot"`` on of1..of3 for the first shot and on ef1..ef3 for
    the second, the FEM taking the raw maps.
    """
    # conv6_2 and conv7_2 have 512 and 256 channels (scaled) for every backbone
    channels = [*backbone.out_channels, scaled(512, config.width), scaled(256, config.width)]
    identity = nn.ModuleList(nn.Identity() for _ in range(6))
    norms = _l2norms(channels) if l2norm else identity
    per_shot = l2norm and config.l2norm == "per_shot"
    fem = FeatureEnhanceModule(channels)
    model = DSFD(config, backbone=backbone, extras=extras, norms=norms, fem=fem,
                 channels=channels, input_format="rgb_imagenet",
                 enhanced_norms=_l2norms(channels) if per_shot else None,
                 normalise_before_fem=not per_shot)
    _init_backbone(backbone)
    _init_new_layers(extras, fem, model.first_loc, model.first_conf, model.second_loc,
                     model.second_conf)
    return model


@register_model("vgg16")
def build_vgg16(config: ModelConfig) -> DSFD:
    """The extended VGG16 of S3FD/PyramidBox, L2Norm on conv3_3/4_3/5_3 (``config.l2norm``)."""
    backbone = VGG16(config.width)
    extras = extra_layers(backbone.out_channels[-1], config.width, batch_norm=False)
    return _assemble(config, backbone, extras, l2norm=True)


def _build_resnet(config: ModelConfig) -> DSFD:
    backbone = ResNet(RESNET_BLOCKS[config.name], config.width)
    extras = extra_layers(backbone.out_channels[-1], config.width, batch_norm=True)
    return _assemble(config, backbone, extras, l2norm=False)


@register_model("resnet50")
def build_resnet50(config: ModelConfig) -> DSFD:
    """ResNet50 backbone (batch norm in the extra layers)."""
    return _build_resnet(config)


@register_model("resnet101")
def build_resnet101(config: ModelConfig) -> DSFD:
    """ResNet101 backbone."""
    return _build_resnet(config)


@register_model("resnet152")
def build_resnet152(config: ModelConfig) -> DSFD:
    """ResNet152 backbone."""
    return _build_resnet(config)


@register_model("release-r152")
def build_release(config: ModelConfig) -> ReleaseDSFD:
    """The network of the one official checkpoint (see ``dsfd/release.py``)."""
    model = ReleaseDSFD(config)
    _init_backbone(nn.ModuleList([model.layer1, model.layer2, model.layer3, model.layer4]))
    _init_new_layers(*(m for name, m in model.named_children() if not name.startswith("layer")
                       or name in ("layer5", "layer6")))
    return model


def build_model(name: str = "vgg16", width: float = 1.0, input_size: int = 640,
                l2norm: str = "before_fem") -> nn.Module:
    """Build a randomly initialised DSFD model.

    Args:
        name: a registered architecture (:func:`dsfd.registry.model_names`: ``"vgg16"``,
            ``"resnet50"``, ``"resnet101"``, ``"resnet152"``, ``"release-r152"``).
        width: channel multiplier (1.0 = the real network).
        input_size: nominal input side in pixels, stored in the config.
        l2norm: VGG16's L2Norm placement, ``"before_fem"`` or ``"per_shot"``
            (:class:`ModelConfig`).

    Returns:
        The model (train mode), with ``model.config``, ``model.anchor_specs`` and
        ``model.input_format``.
    """
    return build_from_config(ModelConfig(name=name, width=width, input_size=input_size,
                                         l2norm=l2norm))


def build_from_config(config: ModelConfig) -> nn.Module:
    """Build the model a :class:`ModelConfig` describes (random init), by its registered
    builder (:mod:`dsfd.registry`)."""
    return get_builder(config.name)(config)
