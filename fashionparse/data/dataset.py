"""A torch ``Dataset`` over any COCO instance-segmentation JSON and its image folder.

It yields exactly what torchvision's detection models take, so DeepFashion2 (after ``fashionparse
convert``), the synthetic splits and COCO itself (for pretraining) share one code path.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from fashionparse.categories import BY_ID, TOTAL_LANDMARKS
from fashionparse.config import MASK_FORMATS
from fashionparse.data.compact_masks import CompactMasks, MiniMasks, PolygonMasks, coco_polygons
from fashionparse.data.df2 import check_unique_ids, is_box, is_number, is_short_polygon, rle_problem
from fashionparse.data.images import load_rgb
from fashionparse.data.masks import polygons_to_mask
from fashionparse.errors import AnnotationError

Target = dict[str, Any]


@dataclass
class SkipCounts:
    """What the dataset left out of its targets, by reason, so that nothing is dropped silently."""

    counts: Counter = field(default_factory=Counter)

    def add(self, reason: str, n: int = 1) -> None:
        self.counts[reason] += n

    def format(self) -> str:
        if not self.counts:
            return "no annotations skipped"
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))


class CocoInstanceDataset(torch.utils.data.Dataset):
    """Images and instance targets from a COCO JSON.

    ``dataset[i]`` returns ``(image, target)``: ``image`` a float ``tv_tensors.Image`` [3, H, W] in 0..1;
    ``target`` with ``boxes`` (``BoundingBoxes`` XYXY float [N, 4]), ``labels`` (int64 [N]), ``masks``,
    ``image_id`` (int), ``area`` and ``iscrowd`` (float/int64 [N]). ``masks`` depends on ``mask_format``:
    ``full`` a ``tv_tensors.Mask`` uint8 [N, H, W]; ``polygon`` a
    :class:`~fashionparse.data.compact_masks.PolygonMasks`; ``minimask`` a
    :class:`~fashionparse.data.compact_masks.MiniMasks` of ``minimask_shape`` (h, w) crops. The compact formats
    need polygon segmentations (an RLE one raises :class:`AnnotationError`).

    Files in DF2's COCO layout (every category lists 294 keypoint names, as the official converter writes)
    also give landmarks: ``keypoints`` (``tv_tensors.KeyPoints`` float [N, 294, 2], x/y on the pixel-edge
    plane of pycocotools' polygons) and ``keypoints_visibility`` (int64 [N, 294], DF2's v: 0 not labelled,
    1 occluded, 2 visible). Only the item's own category slots (``Category.slots``) are kept; the fixed
    294-slot layout lets items of different categories share one tensor and one flip permutation, and is
    the layout of DF2's landmark evaluation.

    ``dataset[(i, seed)]`` applies ``transforms`` under a torch RNG seeded with ``seed``, so an
    augmented sample is a pure function of (index, seed): training resumes and shards exactly.
    Crowd annotations and degenerate boxes are dropped and counted in ``skipped``.
    """

    def __init__(
        self,
        images_dir: str | Path,
        annotations: str | Path,
        transforms: Callable | None = None,
        with_masks: bool = True,
        mask_format: str = "full",
        minimask_shape: tuple[int, int] = (56, 56),
    ) -> None:
        if mask_format not in MASK_FORMATS:
            raise ValueError(f"mask_format {mask_format!r} is not one of {', '.join(MASK_FORMATS)}")
        self.images_dir = Path(images_dir)
        self.annotations = Path(annotations)
        if not self.annotations.is_file():
            raise AnnotationError("annotation file not found", path=self.annotations)
        if not self.images_dir.is_dir():
            raise AnnotationError("image folder not found", path=self.images_dir)
        try:
            self.coco = _quiet_coco(self.annotations)
        except (AssertionError, ValueError, KeyError, TypeError) as e:  # pycocotools asserts a top-level object
            reason = f"missing key {e}" if isinstance(e, KeyError) else str(e) or "the top level is not an object"
            raise AnnotationError(f"not a COCO instance file ({reason})", path=self.annotations) from e
        check_unique_ids(self.coco.dataset, self.annotations)
        self.ids: list[int] = sorted(self.coco.imgs)
        self.transforms = transforms
        self.with_masks = with_masks
        self.mask_format = mask_format
        self.minimask_shape = (int(minimask_shape[0]), int(minimask_shape[1]))
        self.skipped = SkipCounts()
        cats = self.coco.cats.values()
        self.with_landmarks = bool(cats) and all(len(c.get("keypoints", ())) == TOTAL_LANDMARKS for c in cats)
        for image_id, info in self.coco.imgs.items():
            self._check_image(image_id, info)
        for ann in self.coco.anns.values():
            self._check_annotation(ann)
            info = self.coco.imgs[ann["image_id"]]
            reason = reject_reason(ann, int(info["width"]), int(info["height"]))
            if reason:  # e.g. crowd annotations, RLE in COCO itself, whatever their mask format
                self.skipped.add(reason)
                continue
            if self.with_masks:
                self._check_segmentation(ann)
            if self.with_landmarks:
                self._check_landmarks(ann)

    def _error(self, message: str, field: str) -> AnnotationError:
        return AnnotationError(message, path=self.annotations, field=field)

    def _check_image(self, image_id: int, info: dict) -> None:
        """Raise on an ``images`` entry the dataset could not read an image and its size from."""
        if not isinstance(info.get("file_name"), str) or not info["file_name"]:
            raise self._error("expected a file name", f"image {image_id}.file_name")
        for key in ("width", "height"):
            value = info.get(key)
            if not _is_integral(value) or value <= 0:
                raise self._error(f"expected a positive integer, got {value!r}", f"image {image_id}.{key}")

    def _check_annotation(self, ann: dict) -> None:
        """Raise on the annotation fields every annotation needs, kept or skipped: its image, category and box."""
        where = f"annotation {ann['id']}"
        if ann.get("image_id") not in self.coco.imgs:
            raise self._error(f"no image with id {ann.get('image_id')!r}", f"{where}.image_id")
        category = ann.get("category_id")
        if not _is_integral(category):
            raise self._error(f"expected an integer, got {category!r}", f"{where}.category_id")
        bbox = ann.get("bbox")
        if not is_box(bbox):
            raise self._error(f"expected [x, y, width, height] as 4 finite numbers, got {bbox!r}", f"{where}.bbox")

    def _check_segmentation(self, ann: dict) -> None:
        """Raise on a kept annotation's outline this mask format cannot take; count the polygons of fewer than 3
        points that :func:`_outline` leaves out (no area; pycocotools would read a 4-number one as a box)."""
        field = f"annotation {ann['id']}.segmentation"
        segmentation = ann.get("segmentation")
        if isinstance(segmentation, dict):
            if self.mask_format != "full":
                raise self._error(f"segmentation is RLE; mask_format {self.mask_format} needs polygons (use "
                                  "mask_format full)", field)
            problem = rle_problem(segmentation)
            if problem:
                raise self._error(problem, field)
            return
        outline = _outline(segmentation)
        try:
            coco_polygons(outline)
        except ValueError as e:
            raise self._error(f"segmentation {e}", field) from e
        short = len(segmentation) - len(outline)
        if short:
            self.skipped.add("polygons of fewer than 3 points (left out of their annotation's mask)", short)

    def _check_landmarks(self, ann: dict) -> None:
        """Raise on a malformed ``keypoints`` field; count what :func:`_landmarks` will leave out."""
        where = f"annotation {ann.get('id')}"
        if ann["category_id"] not in BY_ID:
            raise AnnotationError(f"category {ann['category_id']} has no DF2 landmark slots", path=self.annotations,
                                  field=f"{where}.category_id")
        values = ann.get("keypoints")
        if values is None:
            self.skipped.add("annotations without keypoints (landmarks unlabelled)")
            return
        if not isinstance(values, list) or len(values) != 3 * TOTAL_LANDMARKS:
            n = len(values) if isinstance(values, list) else type(values).__name__
            raise AnnotationError(f"expected {3 * TOTAL_LANDMARKS} values, got {n}", path=self.annotations,
                                  field=f"{where}.keypoints")
        if not all(is_number(v) for v in values):
            raise AnnotationError("expected numbers", path=self.annotations, field=f"{where}.keypoints")
        outside = np.asarray(values, dtype=np.float64).reshape(TOTAL_LANDMARKS, 3)
        outside[BY_ID[ann["category_id"]].slots] = 0
        if outside.any():
            self.skipped.add("annotations with landmark values outside their category's slots (ignored)")

    def __len__(self) -> int:
        return len(self.ids)

    def image_labels(self) -> list[list[int]]:
        """Category ids of every training target (crowd and degenerate annotations left out), per index."""
        out = []
        for image_id in self.ids:
            info = self.coco.imgs[image_id]
            w, h = int(info["width"]), int(info["height"])
            out.append([int(a["category_id"]) for a in self.coco.imgToAnns.get(image_id, [])
                        if not reject_reason(a, w, h)])
        return out

    def image_info(self, index: int) -> dict:
        return self.coco.imgs[self.ids[index]]

    def get_height_and_width(self, index: int) -> tuple[int, int]:
        info = self.image_info(index)
        return int(info["height"]), int(info["width"])

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[tv_tensors.Image, Target]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        info = self.image_info(index)
        path = self.images_dir / info["file_name"]
        pil = load_rgb(path, upright=False)  # annotations are on the stored pixels (data/images.py)
        if pil.size != (info["width"], info["height"]):
            raise AnnotationError(
                f"image is {pil.size[0]}x{pil.size[1]}, annotation says "
                f"{info['width']}x{info['height']}",
                path=path,
                field="width/height",
            )
        image = tv_tensors.Image(F.pil_to_tensor(pil))
        target = self._target(index, info)
        if self.transforms is not None:
            if seed is None:
                image, target = self.transforms(image, target)
            else:
                # the CPU generator only, the one fork_rng(devices=[]) restores: torch.manual_seed would also
                # seed every CUDA generator for good (or, where CUDA is not initialised, queue that seeding)
                with torch.random.fork_rng(devices=[]):
                    torch.default_generator.manual_seed(seed)
                    image, target = self.transforms(image, target)
        return F.to_dtype(image, torch.float32, scale=True), target

    def _target(self, index: int, info: dict) -> Target:
        image_id = self.ids[index]
        h, w = int(info["height"]), int(info["width"])
        boxes, labels, kept, areas, landmarks = [], [], [], [], []
        for ann in self.coco.imgToAnns.get(image_id, []):
            if reject_reason(ann, w, h):  # counted once in __init__
                continue
            if self.with_landmarks:
                landmarks.append(_landmarks(ann))
            boxes.append(_clipped_xyxy(ann["bbox"], w, h))
            labels.append(int(ann["category_id"]))
            areas.append(float(ann.get("area", ann["bbox"][2] * ann["bbox"][3])))
            kept.append(ann)
        target: Target = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), format="XYXY", canvas_size=(h, w)
            ),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "image_id": image_id,
            "area": torch.tensor(areas, dtype=torch.float32),
            "iscrowd": torch.zeros(len(labels), dtype=torch.int64),
        }
        if self.with_masks:
            target["masks"] = self._masks(kept, h, w)
        if self.with_landmarks:
            kv = torch.from_numpy(np.stack(landmarks) if landmarks else np.zeros((0, TOTAL_LANDMARKS, 3)))
            target["keypoints"] = tv_tensors.KeyPoints(kv[..., :2].float(), canvas_size=(h, w))
            target["keypoints_visibility"] = kv[..., 2].long()
        return target

    def _masks(self, anns: list[dict], h: int, w: int) -> tv_tensors.Mask | CompactMasks:
        """The instance masks of ``anns`` in this dataset's ``mask_format``."""
        if self.mask_format == "full":
            masks = [polygons_to_mask(_outline(ann["segmentation"]), h, w) for ann in anns]
            return tv_tensors.Mask(torch.from_numpy(np.stack(masks) if masks else np.zeros((0, h, w), np.uint8)))
        polygons = [coco_polygons(_outline(ann["segmentation"])) for ann in anns]  # checked in __init__
        masks = PolygonMasks(polygons, (h, w)).clipped()
        return masks if self.mask_format == "polygon" else MiniMasks.from_polygons(masks, self.minimask_shape)


def _landmarks(ann: dict) -> np.ndarray:
    """[294, 3] (x, y, v) of an annotation in DF2's layout, zero outside its category's slots (and when the
    ``keypoints`` field is missing); both cases are counted by the dataset."""
    out = np.zeros((TOTAL_LANDMARKS, 3), dtype=np.float64)
    if ann.get("keypoints") is not None:
        slots = BY_ID[ann["category_id"]].slots
        out[slots] = np.asarray(ann["keypoints"], dtype=np.float64).reshape(TOTAL_LANDMARKS, 3)[slots]
    return out


def _is_integral(value: Any) -> bool:
    """An int, or a float with an integral value (100.0), as JSON writers may give them."""
    return is_number(value) and float(value).is_integer()


def _outline(segmentation: list | dict) -> list | dict:
    """An annotation's segmentation without its well-formed polygons of fewer than 3 points (RLE unchanged);
    a malformed polygon stays, for :func:`coco_polygons` to refuse."""
    if not isinstance(segmentation, list):
        return segmentation
    return [p for p in segmentation if not is_short_polygon(p)]


def _clipped_xyxy(bbox: list[float], width: int, height: int) -> list[float]:
    """COCO xywh -> xyxy clipped to the image."""
    x, y, w, h = bbox
    return [max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)]


def reject_reason(ann: dict, width: int, height: int) -> str | None:
    """Why an annotation cannot be a training target, or None when it can."""
    if ann.get("iscrowd", 0):
        return "crowd annotations"
    x1, y1, x2, y2 = _clipped_xyxy(ann["bbox"], width, height)
    if x2 <= x1 or y2 <= y1:
        return "degenerate boxes"
    if isinstance(ann.get("segmentation"), list) and not _outline(ann["segmentation"]):
        return "annotations without a polygon of 3 or more points"
    return None


def _quiet_coco(path: Path) -> COCO:
    """Load a COCO file without pycocotools' progress prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[tuple[torch.Tensor, ...], tuple[Target, ...]]:
    """Detection batches stay lists: images of different sizes, targets of different lengths."""
    images, targets = zip(*batch)
    return images, targets
