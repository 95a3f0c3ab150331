"""ResNet(+attention) backbones from timm under torchvision's FPN, and matterport-style stage freezing.

The body is a timm ``ResNet`` (``layout="resnet"``, attention ``se|eca|cbam|none`` in every residual unit)
or timm's ``legacy_seresnet`` (``layout="legacy_senet"``, the Caffe SENet for which ImageNet weights
exist). torchvision's ``BackboneWithFPN`` keeps the body's children up to ``layer4`` and returns the FPN
maps ``"0".."3"`` (strides 4..32) plus ``"pool"`` (stride 64), the keys torchvision's default poolers and
anchor generator expect.
"""

from __future__ import annotations

import math

import timm
import torch
from timm.layers import freeze_batch_norm_2d
from timm.models import get_pretrained_cfg
from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN

from fashionparse.config import ModelConfig
from fashionparse.errors import ConfigError

RETURN_LAYERS = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
BOTTLENECK_DEPTHS = (50, 101)
GN_MAX_GROUPS = 32


def timm_name(cfg: ModelConfig) -> str:
    """timm architecture name of the body, e.g. ``resnet101`` or ``legacy_seresnet101``."""
    return f"legacy_seresnet{cfg.depth}" if cfg.layout == "legacy_senet" else f"resnet{cfg.depth}"


def stage_channels(cfg: ModelConfig) -> list[int]:
    """Output channels of ``layer1..layer4``: ``[w, 2w, 4w, 8w]``, times 4 for Bottleneck depths."""
    expansion = 4 if cfg.depth in BOTTLENECK_DEPTHS else 1
    return [cfg.width * expansion * 2**i for i in range(4)]


def image_normalization(cfg: ModelConfig) -> tuple[list[float], list[float]]:
    """Per-channel (mean, std) on 0-1 RGB the body's ImageNet weights were trained with (timm pretrained cfg)."""
    pcfg = get_pretrained_cfg(timm_name(cfg))
    return list(pcfg.mean), list(pcfg.std)


def gn_groups(channels: int) -> int:
    """GroupNorm group count: ``gcd(32, channels)`` -- 32 groups (GN paper default) when the channel count
    allows, otherwise the largest power-of-two divisor below 32, so any width yields a valid layer."""
    return math.gcd(GN_MAX_GROUPS, channels)


def _batchnorm_to_groupnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` by ``GroupNorm(gn_groups(C), C)``, keeping the affine
    init (so timm's zero-init of the last norm in each residual branch survives)."""
    if isinstance(module, nn.BatchNorm2d):
        gn = nn.GroupNorm(gn_groups(module.num_features), module.num_features, eps=module.eps)
        with torch.no_grad():
            gn.weight.copy_(module.weight)
            gn.bias.copy_(module.bias)
        return gn
    for name, child in module.named_children():
        new = _batchnorm_to_groupnorm(child)
        if new is not child:
            module.add_module(name, new)
    return module


def _apply_norm(body: nn.Module, norm: str) -> nn.Module:
    """Convert the BatchNorm2d layers of a freshly built body to the configured norm."""
    if norm == "frozen_bn":
        return freeze_batch_norm_2d(body)  # -> torchvision FrozenBatchNorm2d (buffers only)
    if norm == "gn":
        return _batchnorm_to_groupnorm(body)
    return body


def build_body(cfg: ModelConfig) -> nn.Module:
    """The timm classification network without classifier (``num_classes=0``), randomly initialised.

    Both layouts are built with BatchNorm2d and then converted (``_apply_norm``): one code path for the
    two layouts, and timm's ``FrozenBatchNorm2d`` constructor does not take the ``device``/``dtype``
    arguments timm passes to ``norm_layer``. timm's 7x7 stem is always 64 channels wide (``stem_width``
    only applies to its deep stems), so ``width`` sets the four stages only.
    """
    if cfg.layout == "legacy_senet":
        if cfg.width != 64:
            raise ConfigError("legacy_senet has fixed widths; needs width 64", field="model.width")
        body = timm.create_model(timm_name(cfg), pretrained=False, num_classes=0, global_pool="")
    else:
        w = cfg.width
        attn = None if cfg.attention == "none" else cfg.attention
        body = timm.create_model(
            timm_name(cfg),
            pretrained=False,
            num_classes=0,
            global_pool="",
            channels=(w, 2 * w, 4 * w, 8 * w),
            block_args=dict(attn_layer=attn),
            # a zero-initialised last norm that is then frozen would switch every residual branch off
            zero_init_last=cfg.norm != "frozen_bn",
        )
    return _apply_norm(body, cfg.norm)


def build_backbone(cfg: ModelConfig) -> BackboneWithFPN:
    """Body + torchvision FPN; ``out_channels = cfg.fpn_channels``; outputs ``"0".."3"`` and ``"pool"``."""
    return BackboneWithFPN(
        build_body(cfg),
        return_layers=dict(RETURN_LAYERS),
        in_channels_list=stage_channels(cfg),
        out_channels=cfg.fpn_channels,
    )


# ----------------------------------------------------------------------------------------------------
# matterport-style layer groups


def body_stage(param_name: str) -> int:
    """Stage of a body parameter name (relative to the body): ``layerN.*`` -> N+1, anything else (the
    stem: ``conv1/bn1`` or legacy ``layer0``) -> 1. Attention modules live inside the residual units
    (``layer3.4.se.fc1.weight``) and therefore follow their stage."""
    head = param_name.split(".", 1)[0]
    if head.startswith("layer") and head[5:].isdigit() and int(head[5:]) >= 1:
        return int(head[5:]) + 1
    return 1


def first_trainable_stage(spec: str) -> int:
    """``heads`` -> 6 (no body stage), ``N+`` -> N, ``all`` -> 1 (stem included)."""
    if spec == "heads":
        return 6
    if spec == "all":
        return 1
    if spec in ("3+", "4+", "5+"):
        return int(spec[0])
    raise ConfigError(f"{spec!r} is not one of heads, 3+, 4+, 5+, all", field="trainable")


def set_trainable(model: nn.Module, spec: str) -> list[str]:
    """Set ``requires_grad`` like matterport's ``train(layers=spec)``; return the trainable parameter names.

    ``model`` has ``model.backbone.body`` (a Mask R-CNN built by :func:`build_model`). Everything outside
    the body (FPN, RPN, RoI heads) always trains; body stages >= the spec's first stage train (stage 1 =
    stem, 2..5 = layer1..layer4). Frozen BN holds buffers, not parameters, so it never trains.
    """
    first = first_trainable_stage(spec)
    body = model.backbone.body
    body_params = {id(p): name for name, p in body.named_parameters()}
    trainable = []
    for name, p in model.named_parameters():
        body_name = body_params.get(id(p))
        p.requires_grad_(body_name is None or body_stage(body_name) >= first)
        if p.requires_grad:
            trainable.append(name)
    return trainable
