"""Class balance: repeat factors against hand-computed cases, the sampler's counts and resume, per-class caps."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest

from fashionparse.categories import DF2_ITEM_COUNTS
from fashionparse.config import DataConfig, from_dict
from fashionparse.data.balance import (
    _greedy_under_cap,
    balance_plan,
    category_image_frequency,
    category_repeat_factors,
    effective_stats,
    item_counts,
    select_images_under_cap,
    threshold_from_rank,
)
from fashionparse.data.sampler import RepeatFactorTrainingSampler
from fashionparse.data.stats import compute_stats, format_stats
from fashionparse.errors import ConfigError

# 100 images: class 1 in 64 of them, class 2 in 16, class 3 in 4; 20 images without items
HAND = [[1]] * 60 + [[1, 1]] * 4 + [[2]] * 12 + [[2, 3]] * 4 + [[]] * 20


def test_frequencies_thresholds_and_repeat_factors_by_hand():
    assert category_image_frequency(HAND) == {1: 0.64, 2: 0.16, 3: 0.04}
    assert threshold_from_rank(category_image_frequency(HAND), 1) == 0.64
    # t = f(most common) = 0.64: r(2) = sqrt(0.64 / 0.16) = 2, r(3) = sqrt(0.64 / 0.04) = 4
    plan = balance_plan(HAND, DataConfig(repeat_rank=1))
    assert plan.category_factors == pytest.approx({1: 1.0, 2: 2.0, 3: 4.0})
    expected = [1.0] * 64 + [2.0] * 12 + [4.0] * 4 + [1.0] * 20  # an image takes its rarest class's factor
    assert plan.repeat_factors.tolist() == pytest.approx(expected)
    assert plan.rare_categories == {2, 3}
    plan2 = balance_plan(HAND, DataConfig(repeat_rank=2))  # t = 0.16: only class 3 (r = 2) is rare
    assert plan2.category_factors == pytest.approx({1: 1.0, 2: 1.0, 3: 2.0}) and plan2.rare_categories == {3}
    lvis = balance_plan(HAND, DataConfig(repeat_threshold=0.001))  # LVIS's default repeats nothing here
    assert (lvis.repeat_factors == 1).all() and not lvis.rare_categories
    assert plan.expected_items() == pytest.approx({1: 68.0, 2: 12 * 2 + 4 * 4, 3: 16.0})


def test_category_repeat_factors_by_hand():
    # t = 0.5: t/f = 1, 4, 25 and 0.625 -> r = 1, 2, 5 and 1 (never below 1)
    factors = category_repeat_factors({1: 0.5, 2: 0.125, 3: 0.02, 4: 0.8}, 0.5)
    assert factors == pytest.approx({1: 1.0, 2: 2.0, 3: 5.0, 4: 1.0})


def test_repeat_threshold_from_df2_frequencies_oversamples_the_tail():
    freq = {c: n / 391_000 for c, n in DF2_ITEM_COUNTS.items()}  # about one item of a class per image
    t = threshold_from_rank(freq, 6)  # vest dress, the 6th most common
    assert t == pytest.approx(49_000 / 391_000)
    factors = category_repeat_factors(freq, t)
    # short sleeve outwear 5K items: sqrt(49 / 5) = 3.1305; sling 7K: sqrt(49 / 7) = 2.6458
    assert factors[3] == pytest.approx(3.1305, abs=1e-4) and factors[6] == pytest.approx(2.6458, abs=1e-4)
    assert factors[1] == factors[8] == factors[12] == 1.0


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="data.repeat_rank"):
        threshold_from_rank({1: 0.5, 2: 0.1}, 3)
    with pytest.raises(ConfigError, match="data.repeat_rank: set repeat_threshold or repeat_rank"):
        from_dict({"data": {"repeat_rank": 2, "repeat_threshold": 0.1}})
    with pytest.raises(ConfigError, match="data.rare_class_aug_only"):
        from_dict({"data": {"rare_class_aug_only": True}})


def test_sampler_repeat_counts_follow_the_factors_and_resume_exactly():
    plan = balance_plan(HAND[56:] + [[3]], DataConfig(repeat_rank=1))  # factors 1, 2, 4 and sqrt(...) non-integers
    factors = plan.repeat_factors
    assert not np.allclose(factors, np.round(factors))  # stochastic rounding is exercised
    sampler = RepeatFactorTrainingSampler(factors, seed=5)
    epochs = 300
    sizes = [int(sampler.epoch_counts(e).sum()) for e in range(epochs)]
    stream = list(itertools.islice(sampler, sum(sizes)))
    ends = np.cumsum([0, *sizes])
    seen = np.zeros((epochs, len(factors)))
    for e in range(epochs):
        seen[e] = np.bincount([i for i, _ in stream[ends[e]:ends[e + 1]]], minlength=len(factors))
        assert seen[e].tolist() == sampler.epoch_counts(e).tolist()
    assert ((seen == np.floor(factors)) | (seen == np.ceil(factors))).all()
    frac = factors - np.floor(factors)
    assert np.abs(seen.mean(0) - factors).max() <= 5 * np.sqrt(frac * (1 - frac) / epochs).max() + 1e-9
    for start in (0, 1, sizes[0] - 1, sizes[0], sizes[0] + sizes[1] + 3):
        resumed = list(itertools.islice(RepeatFactorTrainingSampler(factors, seed=5, start=start), 50))
        assert resumed == stream[start:start + 50]


def test_sampler_zero_factors_are_never_drawn():  # unit factors: tests/test_sampler_checkpoint.py
    stream = itertools.islice(RepeatFactorTrainingSampler([0.0, 1.0, 0.0, 2.0], seed=0), 300)
    assert Counter(i for i, _ in stream).keys() == {1, 3}
    with pytest.raises(ValueError, match="not all 0"):
        RepeatFactorTrainingSampler([0.0, 0.0])


def test_cap_keeps_rare_items_a_first_come_selection_loses():
    labels = [[1], [1], [1, 6], [6], [1, 6]]
    # by hand: class 6 (3 items) goes first: [6], then the [1, 6] at index 2; the third 6 would exceed the cap
    assert select_images_under_cap(labels, 2).tolist() == [True, False, True, True, False]
    assert _greedy_under_cap(labels, 2, range(5)).tolist() == [True, True, False, True, False]  # keeps one 6


def _long_tail(n: int, seed: int) -> list[list[int]]:
    """Images of one DF2-frequency class plus, half the time, a companion drawn the same way."""
    rng = np.random.default_rng(seed)
    cats = np.array(list(DF2_ITEM_COUNTS))
    p = np.array([DF2_ITEM_COUNTS[c] for c in cats], dtype=float)
    p /= p.sum()
    return [[int(c) for c in rng.choice(cats, size=1 + int(rng.random() < 0.5), p=p)] for _ in range(n)]


def test_cap_is_respected_and_beats_first_come_on_rare_classes():
    labels = _long_tail(4000, seed=1)
    cap = 200
    kept = select_images_under_cap(labels, cap)
    naive = _greedy_under_cap(labels, cap, range(len(labels)))
    ours, theirs, total = item_counts(labels, kept), item_counts(labels, naive), item_counts(labels)
    assert max(ours.values()) <= cap and max(theirs.values()) <= cap
    rare = [c for c in total if total[c] < cap]
    assert rare and sum(ours[c] for c in rare) > sum(theirs[c] for c in rare)
    assert all(ours[c] >= theirs[c] for c in rare)
    assert all(ours[c] >= 0.9 * total[c] for c in rare)
    assert np.array_equal(kept, select_images_under_cap(labels, cap))  # deterministic


def test_plan_measures_frequencies_after_the_cap():
    labels = [[1]] * 6 + [[1, 2]] * 2 + [[2]] * 2
    plan = balance_plan(labels, DataConfig(max_items_per_class=4, repeat_rank=1))
    assert plan.kept.tolist() == [True, True, False, False, False, False, True, True, True, True]
    # kept: [1], [1], [1, 2], [1, 2], [2], [2] -> f(1) = f(2) = 4/6: nothing is rare after the cap
    assert plan.category_factors == pytest.approx({1: 1.0, 2: 1.0})
    assert plan.repeat_factors.tolist() == plan.kept.astype(float).tolist()
    assert "6/10 images within the cap" in plan.format()


def _coco(tmp_path, per_image: list[list[tuple[int, int]]]):
    """COCO file: per image, (category, box side) items; plus one crowd item the dataset ignores."""
    images = [{"id": i + 1, "file_name": f"{i + 1}.jpg", "width": 200, "height": 200} for i in range(len(per_image))]
    anns = [{"id": k + 1, "image_id": i + 1, "category_id": c, "bbox": [0, 0, s, s], "area": s * s, "iscrowd": 0,
             "segmentation": [[0, 0, s, 0, s, s]]}
            for k, (i, (c, s)) in enumerate((i, item) for i, items in enumerate(per_image) for item in items)]
    anns.append({"id": 999, "image_id": 1, "category_id": 6, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 1,
                 "segmentation": [[0, 0, 5, 0, 5, 5]]})
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": []}))
    return path


def test_effective_stats_by_hand(tmp_path):
    path = _coco(tmp_path, [[(1, 10)], [(1, 20), (6, 40)], [(1, 10)], [(1, 100)]])
    # f(1) = 1, f(6) = 1/4; t = 1: r(6) = 2, so image 2 counts twice
    eff = effective_stats(path, DataConfig(repeat_threshold=1.0))
    assert eff.per_category[1] == pytest.approx(5.0) and eff.per_category[6] == pytest.approx(2.0)
    assert eff.num_images == pytest.approx(5.0) and eff.num_items == pytest.approx(7.0)
    assert eff.items_per_image == pytest.approx({1: 3.0, 2: 2.0})
    assert eff.box_size == pytest.approx({"small": 4.0, "medium": 2.0, "large": 1.0})  # sides 10, 20, 40, 100
    assert eff.sqrt_area_quantiles[0.0] == 10 and eff.sqrt_area_quantiles[1.0] == 100
    assert eff.sqrt_area_quantiles[0.5] == 20  # weighted: 10, 10, 20, 20, 40, 40, 100
    # cap 3 keeps images 2 (rarest class first), 1 and 3; then f(6) = 1/3 and r(6) = sqrt(3)
    capped = effective_stats(path, DataConfig(repeat_threshold=1.0, max_items_per_class=3))
    assert capped.per_category[1] == pytest.approx(2 + math.sqrt(3)) and capped.per_category[6] == pytest.approx(
        math.sqrt(3))
    table = format_stats(compute_stats(path), capped)
    row = next(line for line in table.splitlines() if line.strip().startswith("6 sling"))
    assert row.split()[-4::2] == ["1", f"{math.sqrt(3):.1f}"]  # the crowd sling is in neither column


def test_stats_and_effective_columns_count_the_same_items(tmp_path):
    path = _coco(tmp_path, [[(1, 10)], [(1, 20), (6, 40)], [(8, 10)]])
    items = compute_stats(path)
    assert items.per_category[6] == 1 and items.num_items == 4 and items.skipped_items == 1  # crowd left out
    same = effective_stats(path, DataConfig())  # no cap, no repeats: every image once
    assert same.per_category == items.per_category and same.num_items == items.num_items
    assert same.items_per_image == items.items_per_image and same.box_size == items.box_size
