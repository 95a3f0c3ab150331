"""Iteration-based training sampler: an endless, seeded stream of (index, augmentation seed) pairs.

Detectron2-style: training counts iterations, not epochs. Epoch ``e`` is a permutation drawn from
``seed + e``, and each sample carries its own augmentation seed, so the stream from any position is a
pure function of (seed, position): resuming skips what was consumed and continues identically.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class TrainingSampler(Sampler[tuple[int, int]]):
    """Yields ``(dataset_index, sample_seed)`` forever, starting after ``start`` consumed samples."""

    def __init__(self, size: int, seed: int = 0, start: int = 0) -> None:
        if size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.size = size
        self.seed = seed
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.size)
        while True:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.size, generator=g)
            seeds = torch.randint(0, 2**31 - 1, (self.size,), generator=g)
            for pos in range(offset, self.size):
                yield int(order[pos]), int(seeds[pos])
            epoch, offset = epoch + 1, 0
