"""Mask R-CNN with a timm ResNet(+attention) backbone and torchvision's FPN; local weight loading."""

from fashionparse.model.backbone import (
    body_stage,
    build_backbone,
    build_body,
    gn_groups,
    image_normalization,
    set_trainable,
    stage_channels,
    timm_name,
)
from fashionparse.model.build import build_model
from fashionparse.model.weights import LoadReport, load_backbone_weights, load_detector_weights, read_state_dict

__all__ = [
    "LoadReport",
    "body_stage",
    "build_backbone",
    "build_body",
    "build_model",
    "gn_groups",
    "image_normalization",
    "load_backbone_weights",
    "load_detector_weights",
    "read_state_dict",
    "set_trainable",
    "stage_channels",
    "timm_name",
]
