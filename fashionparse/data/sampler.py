"""Iteration-based training sampler: an endless, seeded stream of (index, augmentation seed) pairs.

Detectron2-style: training counts iterations, not epochs. Epoch ``e`` is a permutation drawn from
``seed + e``, and each sample carries its own augmentation seed, so the stream from any position is a
pure function of (seed, position): resuming skips what was consumed and continues identically.
:class:`RepeatFactorTrainingSampler` keeps that stream and its exact resume while repeating images of rare
classes (LVIS repeat-factor sampling).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's permutation and sample seeds."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


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
            g = _epoch_generator(self.seed, epoch)
            order = torch.randperm(self.size, generator=g)
            seeds = torch.randint(0, 2**31 - 1, (self.size,), generator=g)
            for pos in range(offset, self.size):
                yield int(order[pos]), int(seeds[pos])
            epoch, offset = epoch + 1, 0


class RepeatFactorTrainingSampler(Sampler[tuple[int, int]]):
    """Class-aware variant (LVIS repeat-factor sampling): image ``i`` appears ``floor(r_i) + Bernoulli(frac(r_i))``
    times per epoch, so ``r_i`` times in expectation; ``r_i = 0`` leaves an image out (e.g. over a class cap).

    ``repeat_factors``: float [N], one per dataset index (:func:`fashionparse.data.balance.balance_plan`).
    Epoch ``e`` rounds with its own generator, then shuffles its list and draws the per-sample seeds exactly as
    :class:`TrainingSampler` does, so all-ones factors give :class:`TrainingSampler`'s stream. Epochs differ
    slightly in length; ``start`` skips that many samples by replaying only the epoch lengths, so resuming stays
    exact.
    """

    def __init__(self, repeat_factors: Sequence[float] | np.ndarray, seed: int = 0, start: int = 0) -> None:
        factors = np.asarray(repeat_factors, dtype=np.float64)
        if factors.ndim != 1 or not len(factors):
            raise ValueError("cannot sample from an empty dataset")
        if not np.isfinite(factors).all() or (factors < 0).any() or not factors.any():
            raise ValueError("repeat factors must be finite, >= 0 and not all 0")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.repeat_factors = factors
        self.seed = seed
        self.start = start

    def epoch_counts(self, epoch: int) -> np.ndarray:
        """How often each image appears in ``epoch`` (int64 [N]): stochastic rounding of the factors."""
        whole = np.floor(self.repeat_factors)
        draw = np.random.default_rng([self.seed, epoch]).random(len(whole))
        return (whole + (draw < self.repeat_factors - whole)).astype(np.int64)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = 0, self.start
        while True:
            counts = self.epoch_counts(epoch)
            size = int(counts.sum())
            if offset < size:
                indices = torch.from_numpy(np.repeat(np.arange(len(counts)), counts))
                g = _epoch_generator(self.seed, epoch)
                order = indices[torch.randperm(size, generator=g)]
                seeds = torch.randint(0, 2**31 - 1, (size,), generator=g)
                for pos in range(offset, size):
                    yield int(order[pos]), int(seeds[pos])
                offset = 0
            else:
                offset -= size
            epoch += 1
