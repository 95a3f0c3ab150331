"""Mask R-CNN's training mask branch on compact ground-truth masks (``model.mask_format`` minimask or
polygon) and on a capped number of RoIs per image (``model.mask_rois_per_image``).

torchvision's Mask R-CNN takes full-image masks: its transform resizes them as images and its RoI heads copy
them to float32 to RoIAlign the targets (``methods.md`` §2). Two subclasses change only that:

- :class:`CompactMaskTransform` resizes :class:`~fashionparse.data.compact_masks.CompactMasks` with their own
  ``resize`` (the boxes exactly as torchvision does).
- :class:`CompactMaskRoIHeads` builds the mask targets of the positive proposals with the masks'
  ``crop_and_resize`` and applies torchvision's mask loss (per-pixel BCE on the labelled class's logits).
  With ``mask_rois_per_image`` it trains the mask branch on at most that many of each image's positive
  proposals, drawn at random (:func:`subsample`); the box branch still sees them all.

Both also take full ``[N, H, W]`` masks and then behave exactly as torchvision. Inference is torchvision's
(with :mod:`~fashionparse.model.refine`'s optional box refinement).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import project_masks_on_boxes
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from fashionparse.data.compact_masks import CompactMasks
from fashionparse.model.refine import RefiningRoIHeads

Target = dict[str, Any]


def mask_targets(masks: torch.Tensor | CompactMasks, boxes: torch.Tensor, matched_idx: torch.Tensor,
                 size: int) -> torch.Tensor:
    """float [K, size, size] targets of proposals ``boxes`` [K, 4] matched to instances ``matched_idx`` [K]:
    the compact masks' ``crop_and_resize``, or torchvision's ``project_masks_on_boxes`` for full masks."""
    if isinstance(masks, CompactMasks):
        return masks.crop_and_resize(boxes, matched_idx, size)
    return project_masks_on_boxes(masks, boxes, matched_idx, size)


def subsample(indices: torch.Tensor, limit: int | None) -> torch.Tensor:
    """At most ``limit`` of ``indices`` [K], drawn without replacement from torch's global RNG (as torchvision's
    RoI sampler draws, so seeded and resumed runs repeat); all of them, in order, when ``limit`` is None or
    K <= limit."""
    if limit is None or len(indices) <= limit:
        return indices
    return indices[torch.randperm(len(indices), device=indices.device)[:limit]]


def mask_loss(mask_logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """torchvision's Mask R-CNN loss given its targets: mean BCE between the logits [K, C, M, M] of each
    proposal's class ``labels`` [K] and ``targets`` [K, M, M]; 0 (keeping the graph) without proposals."""
    if targets.numel() == 0:
        return mask_logits.sum() * 0
    logits = mask_logits[torch.arange(len(labels), device=labels.device), labels]
    return F.binary_cross_entropy_with_logits(logits, targets)


class CompactMaskRoIHeads(RefiningRoIHeads):
    """torchvision's RoI heads with the training mask branch fed by :func:`mask_targets`.

    The box branch and inference are inherited unchanged (inference from :class:`RefiningRoIHeads`, so
    ``box_refine_passes`` applies here too); in training the inherited mask branch is switched
    off (:meth:`has_mask`) and :meth:`forward` runs it on the positive proposals that the inherited
    :meth:`select_training_samples` drew.
    """

    _sampled: tuple[list[torch.Tensor], ...] | None = None  # the last draw, between the two methods
    mask_rois_per_image: int | None = None  # the mask branch's positive proposals per image; None: all

    def has_mask(self) -> bool:
        return not self.training and super().has_mask()

    def select_training_samples(self, proposals: list[torch.Tensor], targets: list[Target] | None):
        sampled = super().select_training_samples(proposals, targets)
        self._sampled = sampled[:3]  # proposals, matched_idxs, labels: read once by forward's mask branch
        return sampled

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                image_shapes: list[tuple[int, int]], targets: list[Target] | None = None):
        result, losses = super().forward(features, proposals, image_shapes, targets)
        if self.training:
            if targets is None or any("masks" not in t for t in targets):
                raise ValueError("training needs targets with masks")
            sampled, self._sampled = self._sampled, None
            losses["loss_mask"] = self._mask_loss(features, image_shapes, targets, *sampled)
        return result, losses

    def _mask_loss(self, features: dict[str, torch.Tensor], image_shapes: list[tuple[int, int]],
                   targets: list[Target], proposals: list[torch.Tensor], matched_idxs: list[torch.Tensor],
                   labels: list[torch.Tensor]) -> torch.Tensor:
        positive = [subsample(torch.where(lab > 0)[0], self.mask_rois_per_image) for lab in labels]
        boxes = [p[i] for p, i in zip(proposals, positive)]
        matched = [m[i] for m, i in zip(matched_idxs, positive)]
        logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, boxes, image_shapes)))
        size = logits.shape[-1]
        targets_m = [mask_targets(t["masks"], b, m, size) for t, b, m in zip(targets, boxes, matched)]
        gt_labels = [t["labels"][m] for t, m in zip(targets, matched)]
        return mask_loss(logits, torch.cat(gt_labels), torch.cat(targets_m).to(logits.device))


class CompactMaskTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform, resizing compact masks with their own ``resize`` instead of
    interpolating full-image masks."""

    @classmethod
    def like(cls, transform: GeneralizedRCNNTransform) -> CompactMaskTransform:
        """A transform with the settings of ``transform``."""
        return cls(transform.min_size, transform.max_size, transform.image_mean, transform.image_std,
                   transform.size_divisible, transform.fixed_size)

    def resize(self, image: torch.Tensor, target: Target | None = None) -> tuple[torch.Tensor, Target | None]:
        masks = None if target is None else target.get("masks")
        if not isinstance(masks, CompactMasks):
            return super().resize(image, target)
        image, resized = super().resize(image, {k: v for k, v in target.items() if k != "masks"})
        resized["masks"] = masks.resize(tuple(image.shape[-2:]))
        return image, resized
