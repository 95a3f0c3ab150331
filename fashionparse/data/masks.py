"""Conversions between the mask representations the project meets: COCO polygons, RLE, binary masks."""

from __future__ import annotations

import cv2
import numpy as np
from pycocotools import mask as mask_utils


def polygons_to_mask(segmentation: list[list[float]] | dict, height: int, width: int) -> np.ndarray:
    """Rasterize COCO polygons (or an RLE dict) into a uint8 mask of shape [H, W] with pycocotools."""
    if isinstance(segmentation, dict):
        rle = segmentation
        if isinstance(rle.get("counts"), list):
            rle = mask_utils.frPyObjects(rle, height, width)
    else:
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    return mask_utils.decode(rle)


def mask_to_polygons(mask: np.ndarray, min_points: int = 3) -> list[list[float]]:
    """Outer contours of a binary mask [H, W] as flat COCO polygons ``[x1, y1, x2, y2, ...]``.

    Vertices are pixel centres (``+0.5``), so the polygon traces the middle of the boundary pixels; the
    exact mask travels as RLE. Holes are not represented (like DF2's own polygons); contours with fewer
    than ``min_points`` vertices are left out because COCO tools reject them.
    """
    contours, _ = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [(c.reshape(-1).astype(float) + 0.5).tolist() for c in contours if len(c) >= min_points]
