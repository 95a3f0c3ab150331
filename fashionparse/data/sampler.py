"""Iteration-based training sampler: an endless, seeded stream of (index, augmentation seed) pairs.

Detectron2-style: training counts iterations, not epochs. :class:`RepeatFactorTrainingSampler` shuffles
epoch ``e`` with a generator seeded from ``(seed, e)``, repeating images of rare classes (LVIS repeat-factor
sampling; all factors 1 give plain shuffled epochs), and each sample carries its own augmentation seed, so
the stream from any position is a pure function of (seed, position): resuming skips what was consumed and
continues identically. :class:`DistributedBatchSampler` cuts that stream into batches
(optionally of one aspect-ratio group each) and deals them out to the processes of a distributed run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice

import numpy as np
import torch
from torch.utils.data import Sampler


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of one epoch's permutation and sample seeds."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class RepeatFactorTrainingSampler(Sampler[tuple[int, int]]):
    """Yields ``(dataset_index, sample_seed)`` forever, starting after ``start`` consumed samples. Class-aware
    (LVIS repeat-factor sampling): image ``i`` appears ``floor(r_i) + Bernoulli(frac(r_i))`` times per epoch,
    so ``r_i`` times in expectation; ``r_i = 0`` leaves an image out (e.g. over a class cap).

    ``repeat_factors``: float [N], one per dataset index (:func:`fashionparse.data.balance.balance_plan`).
    Epoch ``e`` rounds with its own generator, then shuffles its list and draws one augmentation seed per sample
    from the epoch's torch generator; with all factors 1 every epoch is a permutation of the dataset. Epochs
    differ slightly in length; ``start`` skips that many samples by replaying only the epoch lengths, so
    resuming stays exact.
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


def orientation_groups(sizes: Sequence[tuple[int, int]]) -> np.ndarray:
    """Aspect-ratio group per image from its ``(height, width)``: 0 landscape or square, 1 portrait (int64 [N]).

    Two groups, as detectron2's: the model resizes every image to the same shorter side, so images of one
    orientation pad to nearly the same batch tensor.
    """
    hw = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    return (hw[:, 0] > hw[:, 1]).astype(np.int64)


def grouped_batches(stream: Iterable[tuple[int, int]], batch_size: int, window: int,
                    group_ids: np.ndarray | None = None) -> Iterator[list[tuple[int, int]]]:
    """Cut a stream of ``(index, seed)`` samples into batches of ``batch_size``.

    The stream is taken in windows of ``batch_size * window`` samples; with ``group_ids`` (int [N], one per
    dataset index) each window is stably sorted by group before it is cut, so a batch mixes groups only where
    a window's groups meet: at most ``groups - 1`` batches per window. Every sample is used exactly once and a
    batch depends only on its own window, so the batch stream resumes at any window without replaying the
    stream before it. A finite stream ends with its remaining (possibly short) batches.
    """
    samples = iter(stream)
    size = batch_size * window
    while chunk := list(islice(samples, size)):
        if group_ids is not None:
            chunk.sort(key=lambda sample: int(group_ids[sample[0]]))
        for start in range(0, len(chunk), batch_size):
            yield chunk[start:start + batch_size]


class DistributedBatchSampler(Sampler[list[tuple[int, int]]]):
    """One process's share of the global batch stream, for ``DataLoader(batch_sampler=...)``.

    The global stream is ``stream_from(0)`` (e.g. a :class:`RepeatFactorTrainingSampler`) cut by
    :func:`grouped_batches` into batches of ``batch_size`` (the per-process batch); global batch ``j`` goes to
    rank ``j % world_size``. One training step consumes ``world_size`` consecutive global batches, so the
    ranks' shares are disjoint and together are exactly the stream, at any world size. ``start_batch`` global
    batches are skipped: the stream restarts at the window holding that batch (``stream_from(first_sample)``),
    so resuming costs at most one window. ``stream_from(start)`` must return the stream from sample ``start``.
    """

    def __init__(self, stream_from: Callable[[int], Iterable[tuple[int, int]]], batch_size: int, *,
                 group_ids: np.ndarray | None = None, window: int = 16, rank: int = 0, world_size: int = 1,
                 start_batch: int = 0) -> None:
        if batch_size <= 0 or window <= 0 or start_batch < 0:
            raise ValueError("batch_size and window must be > 0 and start_batch >= 0")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of size {world_size}")
        self.stream_from = stream_from
        self.batch_size = batch_size
        self.group_ids = group_ids
        self.window = window
        self.rank = rank
        self.world_size = world_size
        self.start_batch = start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        first_window, skip = divmod(self.start_batch, self.window)
        stream = self.stream_from(first_window * self.window * self.batch_size)
        batches = grouped_batches(stream, self.batch_size, self.window, self.group_ids)
        return islice(batches, skip + self.rank, None, self.world_size)
