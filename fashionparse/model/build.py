"""Assemble torchvision's ``MaskRCNN`` from a :class:`ModelConfig`, optionally starting from local weights."""

from __future__ import annotations

import logging
from functools import partial

from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from fashionparse.config import ModelConfig
from fashionparse.model.backbone import RETURN_LAYERS, build_backbone, image_normalization
from fashionparse.model.compact_heads import CompactMaskRoIHeads, CompactMaskTransform
from fashionparse.model.refine import RefiningRoIHeads
from fashionparse.model.roi_align import GatherMultiScaleRoIAlign
from fashionparse.model.weights import LoadReport, load_backbone_weights, load_detector_weights

log = logging.getLogger(__name__)

BOX_POOL_SIZE = 7  # torchvision / Mask R-CNN paper RoIAlign sizes
MASK_POOL_SIZE = 14


def _log_report(report: LoadReport) -> None:
    """Log a load report; at WARNING when tensors were skipped or left at their initialisation."""
    level = logging.WARNING if report.skipped or report.newly_initialized else logging.INFO
    log.log(level, "%s", report.format())


def build_model(cfg: ModelConfig) -> MaskRCNN:
    """Mask R-CNN with the configured backbone, anchors, sampling, heads and transform.

    ``cfg.num_classes`` includes the background. ``cfg.min_size`` with several values makes the transform
    pick one per image in training (eval uses the last). Weights: ``cfg.backbone_weights`` (ImageNet body)
    then ``cfg.weights`` (whole detector) are loaded from local files when set; the load reports are logged.
    ``cfg.mask_format`` minimask or polygon swaps in :mod:`~fashionparse.model.compact_heads`' RoI heads and
    transform, which train on compact masks, and so does ``cfg.mask_rois_per_image`` for the heads;
    parameters, state dict and inference are the same for all formats. ``cfg.box_refine_passes`` > 0 makes
    inference refine the proposals before post-processing (:mod:`~fashionparse.model.refine`).
    """
    backbone = build_backbone(cfg)
    mean, std = image_normalization(cfg)
    levels = len(RETURN_LAYERS) + 1  # "0".."3" + "pool"
    anchors = AnchorGenerator(
        sizes=tuple((s,) for s in cfg.anchor_sizes), aspect_ratios=(tuple(cfg.aspect_ratios),) * levels
    )
    feature_names = list(RETURN_LAYERS.values())
    pooler_cls = GatherMultiScaleRoIAlign if cfg.roi_align == "gather" else MultiScaleRoIAlign
    pooler = partial(pooler_cls, feature_names, sampling_ratio=cfg.roi_sampling_ratio,
                     canonical_scale=cfg.roi_canonical_scale)
    box_pool, mask_pool = pooler(output_size=BOX_POOL_SIZE), pooler(output_size=MASK_POOL_SIZE)
    mask_in = cfg.mask_head_channels if cfg.mask_head_layers > 0 else cfg.fpn_channels
    model = MaskRCNN(
        backbone,
        num_classes=None,
        min_size=tuple(cfg.min_size),
        max_size=cfg.max_size,
        image_mean=mean,
        image_std=std,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
        rpn_nms_thresh=cfg.rpn_nms_thresh,
        box_roi_pool=box_pool,
        box_head=TwoMLPHead(cfg.fpn_channels * BOX_POOL_SIZE**2, cfg.representation_size),
        box_predictor=FastRCNNPredictor(cfg.representation_size, cfg.num_classes),
        box_score_thresh=cfg.box_score_thresh,
        box_nms_thresh=cfg.box_nms_thresh,
        box_detections_per_img=cfg.box_detections_per_img,
        box_batch_size_per_image=cfg.box_batch_size_per_image,
        box_positive_fraction=cfg.box_positive_fraction,
        mask_roi_pool=mask_pool,
        mask_head=MaskRCNNHeads(cfg.fpn_channels, [cfg.mask_head_channels] * cfg.mask_head_layers, 1),
        mask_predictor=MaskRCNNPredictor(mask_in, cfg.mask_head_channels, cfg.num_classes),
    )
    if cfg.mask_format != "full" or cfg.mask_rois_per_image is not None:  # same modules, own mask branch
        model.roi_heads = CompactMaskRoIHeads.like(model.roi_heads, mask_rois_per_image=cfg.mask_rois_per_image,
                                                   box_refine_passes=cfg.box_refine_passes)
    elif cfg.box_refine_passes:  # same modules, refining inference
        model.roi_heads = RefiningRoIHeads.like(model.roi_heads, box_refine_passes=cfg.box_refine_passes)
    if cfg.mask_format != "full":  # compact training masks
        model.transform = CompactMaskTransform.like(model.transform)
    if cfg.backbone_weights:
        _log_report(load_backbone_weights(model, cfg.backbone_weights))
    if cfg.weights:
        _log_report(load_detector_weights(model, cfg.weights))
    return model
