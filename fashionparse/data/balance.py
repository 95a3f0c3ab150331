"""Class balance for training: per-class item caps and repeat-factor sampling with a data-driven threshold.

Input everywhere is ``labels``: for each dataset index, the category ids of its training targets
(:meth:`~fashionparse.data.dataset.CocoInstanceDataset.image_labels`). Output is one repeat factor per image,
which :class:`~fashionparse.data.sampler.RepeatFactorTrainingSampler` turns into an epoch.

1. Cap (``data.max_items_per_class``): :func:`select_images_under_cap` keeps whole images, visiting them
   rarest class first, so rare classes are kept whole and the common classes they co-occur with fill up last.
2. Repeat factors (LVIS, reference methods.md §5) on the kept images: f(c) = fraction of kept images holding c,
   r(c) = max(1, sqrt(t / f(c))), r(I) = max of r(c) over the classes in I (1 without items), 0 if capped out.
   The threshold t is ``data.repeat_threshold``, or with ``data.repeat_rank = k`` the image frequency of the
   k-th most common class: classes as frequent as the k-th are left alone, rarer ones repeated by the square
   root of how much rarer they are. (LVIS's t = 0.001 repeats nothing on DF2, whose rarest class is in ~1% of
   images.)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fashionparse.categories import BY_ID
from fashionparse.config import DataConfig
from fashionparse.data.stats import SQRT_AREA_QUANTILES, Stats, coco_training_items, stats_from_images
from fashionparse.errors import AnnotationError, ConfigError

Labels = Sequence[Sequence[int]]


def item_counts(labels: Labels, images: np.ndarray | None = None) -> Counter[int]:
    """Items per category over all images, or over the images where the bool mask ``images`` [N] is set."""
    return Counter(c for i, cats in enumerate(labels) if images is None or images[i] for c in cats)


def category_image_frequency(labels: Labels, images: np.ndarray | None = None) -> dict[int, float]:
    """f(c): fraction of the (selected) images holding at least one item of c, for every c that occurs."""
    chosen = range(len(labels)) if images is None else np.flatnonzero(images)
    holding = Counter(c for i in chosen for c in set(labels[i]))
    return {c: n / len(chosen) for c, n in sorted(holding.items())}


def threshold_from_rank(frequency: Mapping[int, float], rank: int) -> float:
    """Image frequency of the ``rank``-th most common class (1-based)."""
    if not 1 <= rank <= len(frequency):
        raise ConfigError(f"must lie in 1..{len(frequency)} (classes present in the training data), got {rank}",
                          field="data.repeat_rank")
    return sorted(frequency.values(), reverse=True)[rank - 1]


def category_repeat_factors(frequency: Mapping[int, float], threshold: float) -> dict[int, float]:
    """r(c) = max(1, sqrt(t / f(c)))."""
    return {c: max(1.0, math.sqrt(threshold / f)) for c, f in frequency.items()}


def image_repeat_factors(labels: Labels, category_factors: Mapping[int, float]) -> np.ndarray:
    """r(I) = max over the classes in I of r(c), 1 for an image without items (float [N])."""
    return np.array([max((category_factors[c] for c in cats), default=1.0) for cats in labels], dtype=np.float64)


def select_images_under_cap(labels: Labels, cap: int) -> np.ndarray:
    """Which images to keep (bool [N]) so that no class has more than ``cap`` items, losing few rare items.

    Greedy and deterministic: images are visited by the total item count of their rarest class (then fewer
    items first, then index) and kept when every class in them stays within the cap. A rare class therefore
    loses items only when an image of it also holds a class that even rarer images already filled. Images
    without items are kept.
    """
    totals = item_counts(labels)
    order = sorted(range(len(labels)),
                   key=lambda i: (min((totals[c] for c in labels[i]), default=0), len(labels[i]), i))
    return _greedy_under_cap(labels, cap, order)


def _greedy_under_cap(labels: Labels, cap: int, order: Sequence[int]) -> np.ndarray:
    """Keep each image of ``order`` in turn if all its classes stay within ``cap`` (bool [N])."""
    kept = np.zeros(len(labels), dtype=bool)
    used: Counter[int] = Counter()
    for i in order:
        need = Counter(labels[i])
        if all(used[c] + n <= cap for c, n in need.items()):
            kept[i] = True
            used.update(need)
    return kept


@dataclass
class BalancePlan:
    """What the cap and repeat-factor sampling make of one training set."""

    labels: Labels  # category ids per image, as given
    kept: np.ndarray  # bool [N], images within the cap
    repeat_factors: np.ndarray  # float [N], 0 for images the cap left out
    threshold: float | None  # t, None without repeat-factor sampling
    category_factors: dict[int, float]  # r(c) of every class present after the cap

    @property
    def rare_categories(self) -> frozenset[int]:
        """Classes that repeat-factor sampling repeats (r(c) > 1): the rare classes."""
        return frozenset(int(c) for c, r in self.category_factors.items() if r > 1.0)

    def expected_items(self) -> dict[int, float]:
        """Expected items of each class per epoch: every image counts its repeat factor."""
        out: dict[int, float] = {}
        for cats, r in zip(self.labels, self.repeat_factors):
            for c in cats:
                out[c] = out.get(c, 0.0) + float(r)
        return out

    def format(self) -> str:
        """One line per class: items, items within the cap, r(c), expected items per epoch."""
        items, kept_items = item_counts(self.labels), item_counts(self.labels, self.kept)
        expected = self.expected_items()
        t = "off" if self.threshold is None else f"{self.threshold:.4f}"
        lines = [f"class balance: {int(self.kept.sum())}/{len(self.kept)} images within the cap, "
                 f"repeat threshold {t}",
                 f"  {'category':<24}{'items':>9}{'capped':>9}{'r(c)':>7}{'per epoch':>11}"]
        for c in sorted(items):
            name = BY_ID[c].name if c in BY_ID else f"id {c}"
            lines.append(f"  {name:<24}{items[c]:>9}{kept_items[c]:>9}"
                         f"{self.category_factors.get(c, 0.0):>7.2f}{expected.get(c, 0.0):>11.1f}")
        return "\n".join(lines)


def balance_plan(labels: Labels, data: DataConfig) -> BalancePlan:
    """Apply ``data.max_items_per_class``, then repeat-factor sampling (``data.repeat_threshold`` or
    ``data.repeat_rank``; neither: every kept image has factor 1), with f(c) measured on the kept images."""
    if not labels:
        raise AnnotationError("the training set has no images")
    if data.max_items_per_class is None:
        kept = np.ones(len(labels), dtype=bool)
    else:
        kept = select_images_under_cap(labels, data.max_items_per_class)
    frequency = category_image_frequency(labels, kept)
    threshold = data.repeat_threshold
    if data.repeat_rank is not None:
        threshold = threshold_from_rank(frequency, data.repeat_rank)
    if threshold is None:
        factors = dict.fromkeys(frequency, 1.0)
    else:
        factors = category_repeat_factors(frequency, threshold)
    return BalancePlan(labels, kept, image_repeat_factors(labels, factors) * kept, threshold, factors)


def _weighted(stats: Sequence[Stats], weights: Sequence[float], origin: str, quantiles: dict[float, float]) -> Stats:
    """Sum of ``weight * stats`` over groups of images (counts become expectations)."""
    def add(dicts: Sequence[Mapping]) -> dict:
        out: dict = {}
        for d, w in zip(dicts, weights):
            for k, v in d.items():
                out[k] = out.get(k, 0.0) + w * v
        return out

    names = dict.fromkeys(n for s in stats for n in s.per_attribute)
    return Stats(
        origin=origin,
        num_images=sum(w * s.num_images for s, w in zip(stats, weights)),
        num_items=sum(w * s.num_items for s, w in zip(stats, weights)),
        per_category=add([s.per_category for s in stats]),
        per_attribute={n: add([s.per_attribute.get(n, {}) for s in stats]) for n in names},
        per_source=add([s.per_source for s in stats]),
        items_per_image=dict(sorted(add([s.items_per_image for s in stats]).items())),
        box_size=add([s.box_size for s in stats]),
        sqrt_area_quantiles=quantiles,
    )


def effective_stats(coco_json: str | Path, data: DataConfig) -> Stats:
    """Expected distribution of one training epoch under ``data``'s cap and repeat-factor sampling, for
    ``format_stats(compute_stats(coco_json), effective_stats(coco_json, cfg.data))``. Each image counts its
    repeat factor (0 when capped out); augmentation is not modelled."""
    path = Path(coco_json)
    images, _ = coco_training_items(path)  # the items compute_stats counts, so both columns match
    plan = balance_plan([[it.category_id for it in items] for items in images], data)
    groups = sorted(set(plan.repeat_factors[plan.repeat_factors > 0].tolist()))
    stats = [stats_from_images(str(path), [im for im, r in zip(images, plan.repeat_factors) if r == g])
             for g in groups]
    areas = [(it.bbox_area, r) for im, r in zip(images, plan.repeat_factors) if r > 0 for it in im]
    quantiles: dict[float, float] = {}
    if areas:
        a, w = np.array(areas).T
        values = np.quantile(np.sqrt(a), SQRT_AREA_QUANTILES, weights=w, method="inverted_cdf")
        quantiles = {q: float(v) for q, v in zip(SQRT_AREA_QUANTILES, values)}
    t = "off" if plan.threshold is None else f"{plan.threshold:.4f}"
    return _weighted(stats, groups, f"{path} (cap {data.max_items_per_class}, repeat threshold {t})", quantiles)
