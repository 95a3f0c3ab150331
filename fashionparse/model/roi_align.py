"""Multi-scale RoIAlign as one sparse weighted sum, for fast training on the CPU (``model.roi_align: gather``).

torchvision's CPU ``roi_align`` backward runs on one thread; replacing it makes the demo's training step
1.13x faster (``benchmarks/bench_roi_align.py``). RoIAlign is linear in the features: each output bin is a
weighted sum of ``4 * sampling_ratio**2`` feature vectors whose positions and weights depend only on the box.
:func:`roi_align_gather` computes those positions and weights for the RoIs of every FPN level at once and sums
with ``F.embedding_bag``, whose backward is a multi-threaded index-add. The numbers are torchvision's
(``aligned=False``, as its ``MultiScaleRoIAlign``) to float rounding; ``tests/test_roi_align.py`` compares them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.poolers import _setup_scales  # torchvision's scale inference (pinned torchvision version)


def _axis_samples(start: torch.Tensor, length: torch.Tensor, bins: int, sampling_ratio: int,
                  size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear neighbours along one axis of the ``bins * sampling_ratio`` sample points of each RoI.

    ``start``/``length`` [K] are the RoIs' extent in feature-map pixels (``length`` already at least 1) and
    ``size`` [K] the map's extent. Returns ``index`` [K, P, 2] (low, high neighbour) and ``weight`` [K, P, 2],
    ``P = bins * sampling_ratio``, with torchvision's border rules: a point beyond ``[-1, size]`` gets weight
    0, one in ``[-1, 0)`` is clamped to 0, one at or past ``size - 1`` uses the last pixel only.
    """
    steps = torch.arange(bins * sampling_ratio, device=start.device)
    bin_size = (length / bins)[:, None]
    # torchvision's expression and order: start + bin * bin_size + (sample + 0.5) * bin_size / sampling_ratio
    v = (start[:, None] + (steps // sampling_ratio)[None] * bin_size
         + (steps % sampling_ratio + 0.5)[None] * bin_size / sampling_ratio)  # [K, P]
    inside = (v >= -1.0) & (v <= size[:, None].to(v.dtype))
    v = v.clamp(min=0)
    low = v.floor().long().clamp(max=size[:, None] - 1)
    at_edge = low >= size[:, None] - 1
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, torch.zeros_like(v), v - low.to(v.dtype))
    weight = torch.stack([1 - frac, frac], -1) * inside[..., None]
    return torch.stack([low, high], -1), weight


def roi_align_gather(features: list[torch.Tensor], boxes: torch.Tensor, batch_index: torch.Tensor,
                     levels: torch.Tensor, scales: list[float], output_size: tuple[int, int],
                     sampling_ratio: int) -> torch.Tensor:
    """RoIAlign (``aligned=False``) of ``boxes`` [K, 4] (x1, y1, x2, y2 in image pixels) of image
    ``batch_index`` [K] on FPN level ``levels`` [K] of ``features`` (one [N, C, H_l, W_l] map per level, with
    ``scales[l]`` = map size / image size). Returns [K, C, PH, PW] in the features' dtype, computed in float32
    like torchvision's autocast rule for ``roi_align``. ``sampling_ratio`` must be positive (fixed grid)."""
    if sampling_ratio <= 0:
        raise ValueError("roi_align_gather needs a fixed sampling_ratio > 0")
    num_channels, dtype, device = features[0].shape[1], features[0].dtype, features[0].device
    ph, pw = output_size
    k = boxes.shape[0]
    if k == 0:
        return torch.zeros((0, num_channels, ph, pw), dtype=dtype, device=device)
    # one [sum_l N*H_l*W_l, C] table of every level's feature vectors; per level its rows' offset and shape
    table = torch.cat([f.permute(0, 2, 3, 1).reshape(-1, num_channels) for f in features]).float()
    sizes = torch.tensor([f.shape[-2:] for f in features], device=device)  # [L, 2] (H, W)
    counts = features[0].shape[0] * sizes.prod(1)  # rows per level: N * H_l * W_l
    offsets = torch.cumsum(counts, 0) - counts
    scale = torch.tensor(scales, device=device, dtype=torch.float32)[levels]
    h, w = sizes[levels, 0], sizes[levels, 1]
    b = boxes.float() * scale[:, None]
    rows, row_w = _axis_samples(b[:, 1], (b[:, 3] - b[:, 1]).clamp(min=1.0), ph, sampling_ratio, h)
    cols, col_w = _axis_samples(b[:, 0], (b[:, 2] - b[:, 0]).clamp(min=1.0), pw, sampling_ratio, w)
    base = offsets[levels] + batch_index.long() * h * w  # [K]
    # [K, P, Q, 2, 2] table rows and weights of every (row sample, column sample, neighbour pair)
    index = (base[:, None, None, None, None] + rows[:, :, None, :, None] * w[:, None, None, None, None]
             + cols[:, None, :, None, :])
    s = sampling_ratio
    weight = row_w[:, :, None, :, None] * col_w[:, None, :, None, :] / s**2

    def per_bin(t: torch.Tensor) -> torch.Tensor:  # [K, PH*s, PW*s, 2, 2] -> [K*PH*PW, s*s*4]
        return t.reshape(k, ph, s, pw, s, 4).permute(0, 1, 3, 2, 4, 5).reshape(k * ph * pw, s * s * 4)

    pooled = F.embedding_bag(per_bin(index), table, per_sample_weights=per_bin(weight), mode="sum")
    return pooled.reshape(k, ph, pw, num_channels).permute(0, 3, 1, 2).to(dtype)


class GatherMultiScaleRoIAlign(MultiScaleRoIAlign):
    """torchvision's ``MultiScaleRoIAlign`` that pools with :func:`roi_align_gather` in training.

    Same constructor, scale inference, level mapping and (absent) state. Evaluation and an adaptive
    ``sampling_ratio`` (0) run torchvision's pooler, so inference and exported models are unchanged.
    """

    def forward(self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        if not self.training or self.sampling_ratio <= 0:
            return super().forward(x, boxes, image_shapes)
        features = [x[name] for name in self.featmap_names]
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(features, image_shapes, self.canonical_scale,
                                                         self.canonical_level)
        batch_index = torch.cat([torch.full((len(b),), i, device=b.device) for i, b in enumerate(boxes)])
        return roi_align_gather(features, torch.cat(boxes), batch_index, self.map_levels(boxes), self.scales,
                                tuple(self.output_size), self.sampling_ratio)
