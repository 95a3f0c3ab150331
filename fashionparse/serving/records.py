"""Parsed instances in the formats users read: DF2 submission records, API JSON and overlay images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor

from fashionparse.api import Instance
from fashionparse.engine.evaluate import to_coco_results
from fashionparse.visualize import draw_instances


def instances_as_output(instances: Sequence[Instance], height: int, width: int) -> dict[str, torch.Tensor]:
    """Instances as a torchvision Mask R-CNN output: ``boxes`` float[N, 4] xyxy, ``labels`` int64[N],
    ``scores`` float[N], ``masks`` uint8[N, 1, H, W] (0/1), so the project's converters apply unchanged."""
    if instances:
        masks = torch.from_numpy(np.stack([inst.mask for inst in instances])).to(torch.uint8)[:, None]
    else:
        masks = torch.zeros(0, 1, height, width, dtype=torch.uint8)
    return {
        "boxes": torch.tensor([inst.box for inst in instances], dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor([inst.category_id for inst in instances], dtype=torch.int64),
        "scores": torch.tensor([inst.score for inst in instances], dtype=torch.float32),
        "masks": masks,
    }


def submission_records(image_id: int, instances: Sequence[Instance], height: int,
                       width: int) -> tuple[list[dict], list[dict]]:
    """DF2 submission records ``(bbox, segm)`` for one image: bbox xywh, segm COCO RLE (compressed string)."""
    return to_coco_results(image_id, instances_as_output(instances, height, width))


def instances_json(instances: Sequence[Instance], height: int, width: int) -> list[dict[str, Any]]:
    """The API's view of each instance: category id and name, score, xyxy box, polygons, RLE mask, area."""
    _, segm = submission_records(0, instances, height, width)
    return [
        {
            "category_id": inst.category_id,
            "category_name": inst.category_name,
            "score": inst.score,
            "box": list(inst.box),
            "area": int(inst.mask.sum()),
            "polygons": inst.polygons,
            "mask_rle": record["segmentation"],
        }
        for inst, record in zip(instances, segm)
    ]


def draw_overlay(image: Image.Image, instances: Sequence[Instance]) -> torch.Tensor:
    """Masks, boxes and "name score" labels over an RGB image; returns uint8 [3, H, W]. The names are the
    instances' own (``Parser.category_name``), so a non-DF2 model's labels read ``category N``."""
    output = instances_as_output(instances, image.height, image.width)
    return draw_instances(pil_to_tensor(image), output["boxes"], output["labels"], output["masks"][:, 0].bool(),
                          output["scores"], names=[inst.category_name for inst in instances])
