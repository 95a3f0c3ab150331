"""Instance masks that never hold a full-image bitmap: polygons, and mini masks cut to each instance's box.

A full mask costs H x W bytes per instance (1 MiB at 1024 x 1024), and torchvision's Mask R-CNN resizes it
and copies it to float32 when it builds the mask targets (``methods.md`` §1.3, §2). The two compact forms
here share one interface, :class:`CompactMasks`, which the augmentation (:mod:`fashionparse.data.augment`),
the model transform and the RoI heads (:mod:`fashionparse.model.compact_heads`) use:

- :class:`PolygonMasks`: each instance's COCO polygons (float64 vertices, on the CPU). Mask targets are
  rasterized inside each proposal at the mask head's resolution with pycocotools (detectron2's way): exact,
  and nothing the size of the image is ever made.
- :class:`MiniMasks`: each instance's mask cut to its box and resized to a fixed shape (the original system's
  56 x 56 "mini mask"), with the boxes. Mask targets are RoIAlign samples of the crop: the price is the
  crop's resolution, box / 56 per cell.

Coordinates live on the continuous image plane where pixel (i, j) covers [i, i+1) x [j, j+1): pycocotools'
polygons and COCO boxes. Every geometric method returns a new object; the masks are never changed in place.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from torchvision.ops import roi_align

Size = int | tuple[int, int]
_MIN_SIDE = 1e-3  # boxes narrower than this are treated as this wide (avoids dividing by zero)


def _pair(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


class CompactMasks(abc.ABC):
    """N instance masks on a canvas of ``canvas_size`` (H, W), stored without full-image bitmaps."""

    canvas_size: tuple[int, int]

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def _take(self, indices: list[int]) -> CompactMasks:
        """The instances at ``indices``, in that order."""

    @abc.abstractmethod
    def flip(self) -> CompactMasks:
        """Mirror left-right on the canvas (x -> W - x)."""

    @abc.abstractmethod
    def affine(self, matrix: torch.Tensor) -> CompactMasks:
        """Map by the affine ``matrix`` ([2, 3], plane coordinates, forward) on the same canvas, cutting off what
        leaves it. Instances that leave it entirely become empty (see :meth:`nonempty`)."""

    @abc.abstractmethod
    def resize(self, canvas_size: tuple[int, int]) -> CompactMasks:
        """Scale onto a canvas of ``canvas_size`` (H, W), each axis by new / old size."""

    @abc.abstractmethod
    def bounding_boxes(self) -> torch.Tensor:
        """XYXY float32 [N, 4] boxes enclosing each instance; zeros for an empty instance."""

    @abc.abstractmethod
    def nonempty(self) -> torch.Tensor:
        """bool [N]: which instances cover any area."""

    @abc.abstractmethod
    def crop_and_resize(self, boxes: torch.Tensor, matched_idx: torch.Tensor, size: Size) -> torch.Tensor:
        """Mask-head targets: instance ``matched_idx[k]`` seen through box ``boxes[k]`` (XYXY) and resampled to
        ``size`` (an int M for M x M, or (h, w)). Returns float32 [K, h, w] in 0..1 on ``boxes``' device."""

    @property
    @abc.abstractmethod
    def nbytes(self) -> int:
        """Bytes of mask data held (array contents, without Python object overhead)."""

    def __getitem__(self, index: Any) -> CompactMasks:
        """Select instances with a bool mask [N], integer indices, a slice or an int (gives one instance)."""
        if isinstance(index, slice):
            return self._take(list(range(len(self)))[index])
        idx = torch.as_tensor(index)
        if idx.dtype == torch.bool:
            if idx.shape != (len(self),):
                raise IndexError(f"bool index of shape {tuple(idx.shape)} for {len(self)} instances")
            idx = idx.nonzero().flatten()
        return self._take(idx.flatten().tolist())

    def to_bitmasks(self) -> torch.Tensor:
        """uint8 [N, H, W] full-canvas masks (inspection and tests; the point of this class is not to need it)."""
        h, w = self.canvas_size
        canvas = torch.tensor([[0.0, 0.0, w, h]]).expand(len(self), 4)
        return (self.crop_and_resize(canvas, torch.arange(len(self)), (h, w)) >= 0.5).to(torch.uint8)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} instances, canvas {self.canvas_size}, {self.nbytes} bytes)"


# ----------------------------------------------------------------------------------------------------------
# polygons


def coco_polygons(segmentation: Any) -> list[np.ndarray]:
    """One instance's COCO polygon list (``[[x1, y1, x2, y2, ...], ...]``) as float64 [P, 2] vertex arrays.

    Raises ValueError for RLE (a dict) and for polygons that are not an even count of at least 6 numbers
    (pycocotools would read a 4-number polygon as a box).
    """
    if isinstance(segmentation, dict):
        raise ValueError("is RLE; mask_format minimask and polygon need polygons (use mask_format full)")
    if not isinstance(segmentation, list):
        raise ValueError(f"expected a list of polygons, got {type(segmentation).__name__}")
    out = []
    for i, poly in enumerate(segmentation):
        try:
            values = np.asarray(poly, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"polygon {i} is not a list of numbers ({e})") from e
        if values.ndim != 1 or values.size % 2 or values.size < 6:
            raise ValueError(f"polygon {i} has {values.size} values; needs an even count >= 6")
        out.append(values.reshape(-1, 2))
    return out


def clip_polygon(vertices: np.ndarray, width: float, height: float) -> np.ndarray:
    """Cut a closed polygon (float [P, 2]) to the canvas [0, width] x [0, height] (Sutherland-Hodgman: one
    pass per canvas side; the subject may be concave, the result then may hold zero-width bridges along the
    border, which rasterize to nothing). Returns float [Q, 2], Q = 0 when nothing is left."""
    if len(vertices) and (vertices.min(0) >= 0).all() and vertices[:, 0].max() <= width \
            and vertices[:, 1].max() <= height:
        return vertices  # the usual case: nothing to cut
    for axis, bound, below in ((0, 0.0, False), (0, width, True), (1, 0.0, False), (1, height, True)):
        if len(vertices) == 0:
            break
        coord = vertices[:, axis]
        inside = coord <= bound if below else coord >= bound
        nxt = np.roll(vertices, -1, axis=0)
        crosses = inside != np.roll(inside, -1)
        with np.errstate(divide="ignore", invalid="ignore"):  # only edges that cross are kept
            t = (bound - coord) / (nxt[:, axis] - coord)
            crossing = vertices + t[:, None] * (nxt - vertices)
        crossing[:, axis] = bound  # exact on the border despite rounding
        # each vertex (when inside) followed by its edge's crossing (when the edge crosses), in order
        vertices = np.stack([vertices, crossing], 1)[np.stack([inside, crosses], 1)]
    return vertices


def _area(vertices: np.ndarray) -> float:
    """Unsigned area of a closed polygon [P, 2] (shoelace)."""
    x, y = vertices[:, 0], vertices[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


class PolygonMasks(CompactMasks):
    """Per instance a list of float64 [P, 2] polygons (P >= 3), all inside the canvas; an instance's mask is
    the union of its polygons, as pycocotools rasterizes them. An instance may have no polygon (empty)."""

    def __init__(self, polygons: Sequence[Sequence[np.ndarray]], canvas_size: tuple[int, int]) -> None:
        self.polygons = [list(instance) for instance in polygons]
        self.canvas_size = (int(canvas_size[0]), int(canvas_size[1]))

    def __len__(self) -> int:
        return len(self.polygons)

    def _take(self, indices: list[int]) -> PolygonMasks:
        return PolygonMasks([self.polygons[i] for i in indices], self.canvas_size)

    def clipped(self) -> PolygonMasks:
        """Polygons cut to the canvas; those left with fewer than 3 vertices are removed."""
        h, w = self.canvas_size
        clipped = [[c for c in (clip_polygon(p, w, h) for p in instance) if len(c) >= 3]
                   for instance in self.polygons]
        return PolygonMasks(clipped, self.canvas_size)

    def _map_vertices(self, fn: Callable[[np.ndarray], np.ndarray], canvas_size: tuple[int, int]) -> PolygonMasks:
        """Apply ``fn`` (float [V, 2] -> [V, 2]) to every vertex of every polygon in one call."""
        flat = [p for instance in self.polygons for p in instance]
        if not flat:
            return PolygonMasks(self.polygons, canvas_size)
        moved = iter(np.split(fn(np.concatenate(flat)), np.cumsum([len(p) for p in flat])[:-1]))
        return PolygonMasks([[next(moved) for _ in instance] for instance in self.polygons], canvas_size)

    def flip(self) -> PolygonMasks:
        width = self.canvas_size[1]
        return self._map_vertices(lambda v: np.column_stack([width - v[:, 0], v[:, 1]]), self.canvas_size)

    def affine(self, matrix: torch.Tensor) -> PolygonMasks:
        a = np.asarray(matrix, dtype=np.float64)
        return self._map_vertices(lambda v: v @ a[:, :2].T + a[:, 2], self.canvas_size).clipped()

    def resize(self, canvas_size: tuple[int, int]) -> PolygonMasks:
        scale = np.array([canvas_size[1] / self.canvas_size[1], canvas_size[0] / self.canvas_size[0]])
        return self._map_vertices(lambda v: v * scale, canvas_size)

    def bounding_boxes(self) -> torch.Tensor:
        boxes = torch.zeros(len(self), 4, dtype=torch.float64)
        for i, instance in enumerate(self.polygons):
            if instance:
                vertices = np.concatenate(instance)
                boxes[i] = torch.from_numpy(np.concatenate([vertices.min(0), vertices.max(0)]))
        return boxes.float()

    def nonempty(self) -> torch.Tensor:
        return torch.tensor([any(_area(p) > 0 for p in instance) for instance in self.polygons], dtype=torch.bool)

    def crop_and_resize(self, boxes: torch.Tensor, matched_idx: torch.Tensor, size: Size) -> torch.Tensor:
        """Each proposal's instance polygons moved to the box origin, scaled by (w / box width, h / box
        height) and rasterized as an h x w bitmap by pycocotools: binary targets, exact up to rasterization."""
        h, w = _pair(size)
        flat, owner = [], []
        for k, (box, j) in enumerate(zip(boxes.detach().cpu().double().numpy(), matched_idx.cpu().tolist())):
            origin = box[:2]
            scale = np.array([w / max(box[2] - box[0], _MIN_SIDE), h / max(box[3] - box[1], _MIN_SIDE)])
            for p in self.polygons[j]:
                flat.append(((p - origin) * scale).ravel().tolist())
                owner.append(k)
        out = np.zeros((len(boxes), h, w), dtype=np.uint8)
        if flat:
            rles = mask_utils.frPyObjects(flat, h, w)
            for k, group in groupby(range(len(owner)), key=owner.__getitem__):
                out[k] = mask_utils.decode(mask_utils.merge([rles[i] for i in group]))
        return torch.from_numpy(out).to(boxes.device, torch.float32)

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for instance in self.polygons for p in instance)


# ----------------------------------------------------------------------------------------------------------
# mini masks


def _unit_to_plane(boxes: torch.Tensor) -> torch.Tensor:
    """[N, 3, 3] maps from a box's normalised [-1, 1]^2 (grid_sample's, align_corners=False) to the plane."""
    out = torch.zeros(len(boxes), 3, 3, dtype=boxes.dtype)
    out[:, 0, 0] = (boxes[:, 2] - boxes[:, 0]) / 2
    out[:, 1, 1] = (boxes[:, 3] - boxes[:, 1]) / 2
    out[:, 0, 2] = (boxes[:, 0] + boxes[:, 2]) / 2
    out[:, 1, 2] = (boxes[:, 1] + boxes[:, 3]) / 2
    out[:, 2, 2] = 1
    return out


def _widened(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes with width and height at least ``_MIN_SIDE`` (empty instances have all-zero boxes)."""
    return torch.cat([boxes[:, :2], torch.maximum(boxes[:, 2:], boxes[:, :2] + _MIN_SIDE)], 1)


def _foreground_extent(crops: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The part of each box ([N, 4]) covered by the rows and columns of its crop (bool [N, h, w]) that hold
    foreground; boxes of empty crops are returned unchanged."""
    h, w = crops.shape[-2:]
    cols, rows = crops.any(1).to(torch.uint8), crops.any(2).to(torch.uint8)
    c0, c1 = cols.argmax(1), w - cols.flip(1).argmax(1)
    r0, r1 = rows.argmax(1), h - rows.flip(1).argmax(1)
    cell_w, cell_h = (boxes[:, 2] - boxes[:, 0]) / w, (boxes[:, 3] - boxes[:, 1]) / h
    shrunk = torch.stack([boxes[:, 0] + c0 * cell_w, boxes[:, 1] + r0 * cell_h,
                          boxes[:, 0] + c1 * cell_w, boxes[:, 1] + r1 * cell_h], 1)
    return torch.where(crops.flatten(1).any(1, keepdim=True), shrunk, boxes)


class MiniMasks(CompactMasks):
    """``crops`` uint8 [N, h, w]: instance i's mask inside ``boxes[i]`` (XYXY float32 [N, 4]) resampled to
    h x w cells. An empty instance has an all-zero crop and an all-zero box."""

    def __init__(self, crops: torch.Tensor, boxes: torch.Tensor, canvas_size: tuple[int, int]) -> None:
        if crops.dim() != 3 or boxes.shape != (len(crops), 4):
            raise ValueError(f"expected crops [N, h, w] and boxes [N, 4], got {tuple(crops.shape)} and "
                             f"{tuple(boxes.shape)}")
        self.crops = crops.to(torch.uint8)
        self.boxes = boxes.to(torch.float32)
        self.canvas_size = (int(canvas_size[0]), int(canvas_size[1]))

    @classmethod
    def from_polygons(cls, polygons: PolygonMasks, shape: Size) -> MiniMasks:
        """Rasterize each instance's polygons inside its own tight box at ``shape`` (h, w) cells."""
        boxes = polygons.bounding_boxes()
        crops = polygons.crop_and_resize(boxes, torch.arange(len(polygons)), shape)
        return cls(crops.to(torch.uint8), boxes, polygons.canvas_size)

    def __len__(self) -> int:
        return len(self.crops)

    @property
    def shape(self) -> tuple[int, int]:
        """(h, w) of a crop."""
        return self.crops.shape[1], self.crops.shape[2]

    def _take(self, indices: list[int]) -> MiniMasks:
        idx = torch.tensor(indices, dtype=torch.int64)
        return MiniMasks(self.crops[idx], self.boxes[idx], self.canvas_size)

    def flip(self) -> MiniMasks:
        width = self.canvas_size[1]
        boxes = torch.stack([width - self.boxes[:, 2], self.boxes[:, 1], width - self.boxes[:, 0],
                             self.boxes[:, 3]], 1)
        return MiniMasks(self.crops.flip(-1), torch.where(self.nonempty()[:, None], boxes, 0.0), self.canvas_size)

    def resize(self, canvas_size: tuple[int, int]) -> MiniMasks:
        """Only the boxes move (the crops are box-relative), scaled exactly as torchvision's ``resize_boxes``."""
        ratio_h, ratio_w = (torch.tensor(new, dtype=torch.float32) / torch.tensor(old, dtype=torch.float32)
                            for new, old in zip(canvas_size, self.canvas_size))
        return MiniMasks(self.crops, self.boxes * torch.stack([ratio_w, ratio_h, ratio_w, ratio_h]), canvas_size)

    def affine(self, matrix: torch.Tensor) -> MiniMasks:
        """New box: the extent of the mapped corners of the crop's foreground cells, cut to the canvas and then
        to the rows and columns the mapped mask fills; new crop: the old crop sampled bilinearly (>= 0.5) at the
        new cells' centres mapped back. One resampling of the old crop; the box is tight to a cell."""
        if len(self) == 0:
            return self
        forward = torch.cat([torch.as_tensor(matrix, dtype=torch.float64).reshape(2, 3),
                             torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)])
        h, w = self.shape
        old = _widened(self.boxes.double())
        xs = old[:, 0, None] + torch.linspace(0, 1, w + 1, dtype=torch.float64) * (old[:, 2] - old[:, 0])[:, None]
        ys = old[:, 1, None] + torch.linspace(0, 1, h + 1, dtype=torch.float64) * (old[:, 3] - old[:, 1])[:, None]
        corners_x = forward[0, 0] * xs[:, None, :] + forward[0, 1] * ys[:, :, None] + forward[0, 2]
        corners_y = forward[1, 0] * xs[:, None, :] + forward[1, 1] * ys[:, :, None] + forward[1, 2]
        # a cell corner [N, h + 1, w + 1] counts when one of the (up to) four cells around it is foreground
        active = F.max_pool2d(F.pad(self.crops[:, None].float(), (1, 1, 1, 1)), 2, stride=1)[:, 0] > 0
        big = torch.finfo(torch.float64).max
        canvas_h, canvas_w = self.canvas_size
        boxes = torch.stack([
            corners_x.masked_fill(~active, big).amin((1, 2)).clamp(0, canvas_w),
            corners_y.masked_fill(~active, big).amin((1, 2)).clamp(0, canvas_h),
            corners_x.masked_fill(~active, -big).amax((1, 2)).clamp(0, canvas_w),
            corners_y.masked_fill(~active, -big).amax((1, 2)).clamp(0, canvas_h),
        ], 1)
        inverse = torch.linalg.inv(forward)
        boxes = _foreground_extent(self._sample(inverse, old, boxes), boxes)  # cut off what left the canvas
        crops = self._sample(inverse, old, boxes)
        boxes = torch.where(crops.flatten(1).any(1, keepdim=True), boxes, 0.0)
        return MiniMasks(crops.to(torch.uint8), boxes.float(), self.canvas_size)

    def _sample(self, inverse: torch.Tensor, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """bool [N, h, w]: the crops resampled into boxes ``new`` through the inverse map ``inverse`` [3, 3]."""
        theta = torch.linalg.inv(_unit_to_plane(old)) @ inverse @ _unit_to_plane(new)
        grid = F.affine_grid(theta[:, :2].float(), [len(self), 1, *self.shape], align_corners=False)
        sampled = F.grid_sample(self.crops[:, None].float(), grid, mode="bilinear", padding_mode="zeros",
                                align_corners=False)
        return sampled[:, 0] >= 0.5

    def bounding_boxes(self) -> torch.Tensor:
        return self.boxes.clone()

    def nonempty(self) -> torch.Tensor:
        return self.crops.flatten(1).amax(1) > 0

    def crop_and_resize(self, boxes: torch.Tensor, matched_idx: torch.Tensor, size: Size) -> torch.Tensor:
        """RoIAlign (aligned, bilinear) of each proposal's box expressed in its instance's crop cells; the crops
        get a one-cell zero border so that whatever lies outside the instance box reads as background."""
        h, w = self.shape
        device = boxes.device
        crops = F.pad(self.crops.to(device, torch.float32)[:, None], (1, 1, 1, 1))
        matched_idx = matched_idx.to(device)
        gt = _widened(self.boxes.to(device))[matched_idx]
        cells = torch.stack([torch.full_like(gt[:, 0], w) / (gt[:, 2] - gt[:, 0]),
                             torch.full_like(gt[:, 0], h) / (gt[:, 3] - gt[:, 1])], 1).repeat(1, 2)
        rois = (boxes.to(torch.float32) - gt[:, :2].repeat(1, 2)) * cells + 1.0
        rois = torch.cat([matched_idx[:, None].to(rois), rois], 1)
        return roi_align(crops, rois, _pair(size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)[:, 0]

    @property
    def nbytes(self) -> int:
        return self.crops.numel() * self.crops.element_size() + self.boxes.numel() * self.boxes.element_size()
