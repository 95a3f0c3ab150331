"""Online training augmentation (``torchvision.transforms.v2``) that moves image, boxes, masks and landmarks together.

A sample is ``(image, target)`` as :class:`~fashionparse.data.dataset.CocoInstanceDataset` yields it: image a
``tv_tensors.Image`` [3, H, W]; target with per-instance ``boxes`` (XYXY [N, 4]), ``labels`` [N], ``masks``
(``tv_tensors.Mask`` uint8 [N, H, W], or compact :class:`~fashionparse.data.compact_masks.CompactMasks`, which
the geometric steps move with their own exact methods), ``area``/``iscrowd`` [N] and, for DF2-layout data,
``keypoints`` (``tv_tensors.KeyPoints`` [N, 294, 2]) with ``keypoints_visibility`` (int64 [N, 294], 0 = not
labelled).

Coordinates live on the continuous image plane where pixel (i, j) covers [i, i+1) x [j, j+1): the convention
of pycocotools' polygon rasterizer and of COCO boxes, and DF2 landmarks sit on polygon vertices. v2's affine
kernels for images, masks and keypoints all turn about (W/2, H/2) in this convention; its keypoint flip,
however, maps x to W - 1 - x (pixel indices), so :class:`HorizontalFlip` mirrors landmarks to W - x itself.

Every random draw comes from torch's global RNG, so a sample is a pure function of the (index, seed) under
which the dataset runs the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from fashionparse.categories import BY_ID, CATEGORIES, TOTAL_LANDMARKS
from fashionparse.config import DataConfig
from fashionparse.data.compact_masks import CompactMasks
from fashionparse.errors import ConfigError

Target = dict[str, Any]
Sample = tuple[tv_tensors.Image, Target]


def _mirrored_run(first: int, last: int) -> tuple[tuple[int, int], ...]:
    """Pairs (first, last), (first + 1, last - 1), ... of a landmark chain walked down one side and up the other."""
    return tuple((first + i, last - i) for i in range((last - first + 1) // 2))


# DeepFashion2 left/right landmark pairs, 1-based within each category. Facts from
# svip-lab/HRNet-for-Fashion-Landmark-Estimation.PyTorch, lib/dataset/deepfashion2.py (``flip_pairs``), and
# identical in open-mmlab/mmpose, configs/_base_/datasets/deepfashion2.py (``swap``; mmpose's vest landmark 13 has
# an empty swap although its landmark 9 swaps with 13, a typo there). Not checked against DF2's own landmark
# figure, which is published only as an image. Note the short sleeve outwear pairs (2, 26), (4, 6), (16, 29)
# differ in structure from the long sleeve outwear ones (2, 6), (4, 34), (20, 37); both sources agree on them.
_NECK = ((2, 6), (3, 5))
DF2_FLIP_PAIRS: dict[int, tuple[tuple[int, int], ...]] = {
    1: _NECK + _mirrored_run(7, 25),
    2: _NECK + _mirrored_run(7, 33),
    3: ((2, 26), (3, 5), (4, 6)) + _mirrored_run(7, 25) + ((16, 29), (27, 30), (28, 31)),
    4: ((2, 6), (3, 5), (4, 34)) + _mirrored_run(7, 33) + ((20, 37), (35, 38), (36, 39)),
    5: _NECK + _mirrored_run(7, 15),
    6: _NECK + _mirrored_run(7, 15),
    7: ((1, 3),) + _mirrored_run(4, 10),
    8: ((1, 3),) + _mirrored_run(4, 14),
    9: ((1, 3),) + _mirrored_run(4, 8),
    10: _NECK + _mirrored_run(7, 29),
    11: _NECK + _mirrored_run(7, 37),
    12: _NECK + _mirrored_run(7, 19),
    13: _NECK + _mirrored_run(7, 19),
}


def _perm_from_pairs(category_id: int, pairs: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
    """0-based within-category flip permutation from 1-based pairs; checks range and disjointness."""
    n = BY_ID[category_id].num_landmarks
    perm = list(range(n))
    seen: set[int] = set()
    for a, b in pairs:
        if not (1 <= a <= n and 1 <= b <= n) or {a, b} & seen or a == b:
            raise AssertionError(f"category {category_id}: bad flip pair ({a}, {b})")
        seen |= {a, b}
        perm[a - 1], perm[b - 1] = b - 1, a - 1
    return tuple(perm)


def landmark_flip_permutation(order: str) -> torch.Tensor:
    """Slot permutation (int64 [294]) that a horizontal flip applies to the 294-slot landmark vector.

    ``flipped[:, k] = mirrored[:, perm[k]]``; the permutation is an involution that stays inside each
    category's slot range. ``order``: ``"df2"`` (:data:`DF2_FLIP_PAIRS`) or ``"synthetic"`` (the order of
    :mod:`fashionparse.data.synth.landmarks`).
    """
    if order == "df2":
        per_category = {cid: _perm_from_pairs(cid, pairs) for cid, pairs in DF2_FLIP_PAIRS.items()}
    elif order == "synthetic":
        from fashionparse.data.synth.landmarks import FLIP_PERM  # the generator loads only when asked

        per_category = FLIP_PERM
    else:
        raise ConfigError(f"unknown landmark order {order!r} (known: df2, synthetic)", field="data.landmark_order")
    perm = torch.arange(TOTAL_LANDMARKS)
    for c in CATEGORIES:
        perm[c.slot_start:c.slot_start + c.num_landmarks] = torch.tensor(per_category[c.id]) + c.slot_start
    return perm


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes (float [N, 4]) of non-empty masks [N, H, W] in plane coordinates: a mask whose pixels
    span columns x0..x1 gets x0 and x1 + 1, exactly as pycocotools' ``toBbox``."""
    boxes = masks_to_boxes(masks).to(torch.float32)
    boxes[:, 2:] += 1
    return boxes


def affine_matrix(canvas_size: tuple[int, int], **params: Any) -> torch.Tensor:
    """float64 [2, 3]: the plane map of v2 ``affine(**params)`` (about the canvas centre), read off v2's own
    keypoint kernel, which images, masks and keypoints share, so that polygons move exactly as the pixels."""
    basis = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    (origin, ex, ey), _ = F.affine_keypoints(basis, canvas_size=canvas_size, **params)
    return torch.stack([ex - origin, ey - origin, origin], 1)


def _select(value: Any, keep: torch.Tensor) -> Any:
    """Rows ``keep`` of a per-instance tensor or compact masks, keeping its type; other values unchanged."""
    if isinstance(value, tv_tensors.TVTensor):
        return tv_tensors.wrap(value[keep], like=value)
    return value[keep] if torch.is_tensor(value) or isinstance(value, CompactMasks) else value


def _warp_masks(masks: tv_tensors.Mask | CompactMasks, params: dict[str, Any]
                ) -> tuple[tv_tensors.Mask | CompactMasks, torch.Tensor]:
    """Masks under v2 ``affine(**params)`` (nearest resampling for bitmaps, the compact masks' own ``affine``)
    and which of them are not empty (bool [N])."""
    if isinstance(masks, CompactMasks):
        warped = masks.affine(affine_matrix(masks.canvas_size, **params))
        return warped, warped.nonempty()
    warped = F.affine(masks, **params)
    return warped, warped.flatten(1).amax(1) > 0


def _holds_any(target: Target, labels: frozenset[int]) -> bool:
    return any(int(c) in labels for c in target["labels"])


def _clear_unlabelled(keypoints: torch.Tensor, visibility: torch.Tensor) -> tv_tensors.KeyPoints:
    """DF2 writes x = y = 0 for landmarks with v = 0; keep that after a geometric transform moved them."""
    return tv_tensors.wrap(keypoints * (visibility > 0).unsqueeze(-1), like=keypoints)


@dataclass
class HorizontalFlip:
    """With probability ``p`` mirror the sample left-right; landmarks swap left/right slots by ``landmark_perm``
    ([294], :func:`landmark_flip_permutation`) so that a flipped left sleeve becomes a right sleeve."""

    p: float
    landmark_perm: torch.Tensor = field(repr=False)

    def __call__(self, image: tv_tensors.Image, target: Target) -> Sample:
        if torch.rand(()) >= self.p:
            return image, target
        out = dict(target)
        out["boxes"] = F.horizontal_flip(target["boxes"])
        if isinstance(target.get("masks"), CompactMasks):
            out["masks"] = target["masks"].flip()
        elif "masks" in target:
            out["masks"] = F.horizontal_flip(target["masks"])
        if "keypoints" in target:
            keypoints, visibility = target["keypoints"], target["keypoints_visibility"]
            mirrored = keypoints.as_subclass(torch.Tensor).clone()
            mirrored[..., 0] = keypoints.canvas_size[1] - mirrored[..., 0]
            out["keypoints"] = _clear_unlabelled(
                tv_tensors.wrap(mirrored[:, self.landmark_perm], like=keypoints), visibility[:, self.landmark_perm])
            out["keypoints_visibility"] = visibility[:, self.landmark_perm]
        return F.horizontal_flip(image), out


def warp(image: tv_tensors.Image, target: Target, angle: float, scale: float) -> Sample:
    """Rotate by ``angle`` degrees (clockwise on screen, v2 ``affine``'s sense) and zoom by ``scale`` about the
    image centre, same canvas; one resampling (bilinear image, nearest masks, exact landmarks; compact masks by
    their own :meth:`~fashionparse.data.compact_masks.CompactMasks.affine`: polygons exact, mini masks resampled).

    Boxes are never warped as corners: they are re-derived from the warped masks (:func:`boxes_from_masks`, or
    the compact masks' ``bounding_boxes``), and ``area`` becomes the new box area (DF2's COCO convention).
    Instances whose mask left the canvas are dropped (every per-instance field, compact masks included, stays
    aligned) and landmarks that left it become unlabelled; ``dropped_instances`` / ``dropped_landmarks`` in the
    returned target count them (added to any count already there).
    """
    out = {**target, "dropped_instances": target.get("dropped_instances", 0),
           "dropped_landmarks": target.get("dropped_landmarks", 0)}
    if angle == 0.0 and scale == 1.0:
        return image, out
    if "masks" not in target:
        raise ValueError("rotation and scale jitter need instance masks to re-derive the boxes")
    params = dict(angle=angle, translate=[0.0, 0.0], scale=scale, shear=[0.0, 0.0])
    image = F.affine(image, **params, interpolation=v2.InterpolationMode.BILINEAR)
    masks, keep = _warp_masks(target["masks"], params)
    out = {k: _select(v, keep) for k, v in out.items()}  # every tensor of a target is per instance
    out["masks"] = _select(masks, keep)
    boxes = out["masks"].bounding_boxes() if isinstance(masks, CompactMasks) else boxes_from_masks(out["masks"])
    out["boxes"] = tv_tensors.wrap(boxes, like=target["boxes"])
    out["area"] = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    out["dropped_instances"] += int((~keep).sum())
    if "keypoints" in out:
        keypoints = F.affine(out["keypoints"], **params)
        h, w = keypoints.canvas_size
        x, y = keypoints[..., 0], keypoints[..., 1]
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        visibility = out["keypoints_visibility"]
        out["dropped_landmarks"] += int(((visibility > 0) & ~inside).sum())
        out["keypoints_visibility"] = visibility * inside
        out["keypoints"] = _clear_unlabelled(keypoints, out["keypoints_visibility"])
    return image, out


@dataclass
class RandomRotateScale:
    """:func:`warp` by an angle from U(-max_degrees, max_degrees), drawn with probability ``rotation_prob``
    (only for images holding one of ``rotate_labels``, when given), and a zoom from U(1 - scale_jitter,
    1 + scale_jitter). Rotation and zoom share one resampling; at zoom 1 this is v2 ``rotate(expand=False)``."""

    max_degrees: float
    rotation_prob: float
    scale_jitter: float
    rotate_labels: frozenset[int] | None = None

    def draw(self, target: Target) -> tuple[float, float]:
        """(angle, scale) for one sample; always three draws, so the RNG stream does not depend on the data."""
        rotate = bool(torch.rand(()) < self.rotation_prob)
        angle = float(torch.empty(()).uniform_(-self.max_degrees, self.max_degrees))
        scale = float(torch.empty(()).uniform_(1 - self.scale_jitter, 1 + self.scale_jitter))
        if not rotate or (self.rotate_labels is not None and not _holds_any(target, self.rotate_labels)):
            angle = 0.0
        return angle, scale

    def __call__(self, image: tv_tensors.Image, target: Target) -> Sample:
        return warp(image, target, *self.draw(target))


@dataclass
class ForLabels:
    """Apply ``transform`` only to samples holding one of ``labels`` (e.g. noise for rare-class images)."""

    transform: Callable[..., Any]
    labels: frozenset[int]

    def __call__(self, image: tv_tensors.Image, target: Target) -> Sample:
        return self.transform(image, target) if _holds_any(target, self.labels) else (image, target)


def build_train_transforms(data: DataConfig, rare_categories: Collection[int] | None = None) -> v2.Compose:
    """The training pipeline configured by ``data`` (the ``data:`` section of the YAML).

    Order: image to float 0..1, horizontal flip, rotation + zoom (one warp), colour jitter (brightness,
    contrast, saturation; hue untouched), Gaussian noise (image only, clipped to 0..1). A step whose strength
    is 0 is left out. With ``data.rare_class_aug_only`` rotation and noise only touch images holding one of
    ``rare_categories`` (see :func:`fashionparse.data.balance.balance_plan`), as the original system did.
    """
    rare: frozenset[int] | None = None
    if data.rare_class_aug_only:
        if rare_categories is None:
            raise ConfigError("rare_class_aug_only needs the rare categories of the training data",
                              field="data.rare_class_aug_only")
        rare = frozenset(rare_categories)
    steps: list[Callable[..., Any]] = [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True)]
    if data.hflip_prob > 0:
        steps.append(HorizontalFlip(data.hflip_prob, landmark_flip_permutation(data.landmark_order)))
    if (data.rotation_deg > 0 and data.rotation_prob > 0) or data.scale_jitter > 0:
        steps.append(RandomRotateScale(data.rotation_deg, data.rotation_prob, data.scale_jitter, rare))
    if data.color_jitter > 0:
        c = data.color_jitter
        steps.append(v2.ColorJitter(brightness=c, contrast=c, saturation=c))
    if data.noise_std > 0 and data.noise_prob > 0:
        noise = v2.RandomApply([v2.GaussianNoise(sigma=data.noise_std, clip=True)], p=data.noise_prob)
        steps.append(noise if rare is None else ForLabels(noise, rare))
    return v2.Compose(steps)
