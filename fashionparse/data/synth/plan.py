"""What each image shows: outfits, shop/user pair groups and the category distribution.

Images come in groups that share a ``pair_id``: one shop image and one or two user images of the same
garment (same category, cut, colour and pattern; ``style`` 1, and sometimes a second shared garment with
style 2), or a single unpaired image. Every other garment is drawn afresh per image with ``style`` 0.

Category frequencies: each group picks a *target* category, and worn outfits are completed around it
(a top needs a bottom, outwear needs something under it, ...), which adds companion items. The target
distribution is solved (:func:`target_weights`) so that the expected item counts, companions included,
follow DF2's long tail (``DF2_ITEM_COUNTS``) or, with ``balanced``, a uniform distribution, as closely
as a floor of ``MIN_TARGET_SHARE`` times each category's share allows: without it, balanced mode would
never build a group around a bottom (bottoms come as companions anyway), so shorts, trousers and skirts
would never be the shared garment, a flat-lay or the focus of a framing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fashionparse.categories import CATEGORIES, DF2_ITEM_COUNTS, NUM_CATEGORIES
from fashionparse.data.synth.appearance import Look, sample_look
from fashionparse.data.synth.garments import BOTTOMS, DRESSES, OUTWEAR, TOPS, Cut, sample_cut

OUTWEAR_P = 0.08  # chance that a worn outfit without outwear gets some
SECOND_PERSON_P = 0.25  # user images: chance of a second, smaller person
FLAT_P = 0.55  # shop images of a single shared garment: chance of a flat-lay photo
GROUP_SIZES, GROUP_SIZE_P = (1, 2, 3), (0.2, 0.45, 0.35)
SECOND_SHARED_P = 0.25  # pair groups: chance that a companion garment is shared too (style 2)
MIN_TARGET_SHARE = 0.3  # floor of a category's target weight, relative to its desired item share
_SHORT_OUTWEAR_INNER = (1, 5, 6, 10, 12, 13)  # short sleeve outwear never goes over long sleeves


@dataclass(frozen=True)
class GarmentSpec:
    """One concrete garment: category, proportions and look."""

    category_id: int
    cut: Cut
    look: Look


def sample_garment(rng: np.random.Generator, category_id: int) -> GarmentSpec:
    return GarmentSpec(category_id, sample_cut(rng, category_id), sample_look(rng, category_id))


@dataclass(frozen=True)
class ImagePlan:
    """Everything image ``image_id`` must show that is shared with its group; the rest is drawn from
    a per-image RNG seeded by ``(seed, image_id)``.

    ``shared`` holds ``(style, garment)`` pairs (style > 0) that appear in every image of the group;
    ``target`` is the category the outfit is built around; ``flat`` asks for a flat-lay shop photo.
    """

    image_id: int
    seed: int
    source: str
    pair_id: int
    target: int
    shared: tuple[tuple[int, GarmentSpec], ...]
    flat: bool
    balanced: bool


def category_weights(balanced: bool) -> np.ndarray:
    """Desired item share per category id 1..13 (index 0 = id 1); sums to 1."""
    if balanced:
        return np.full(NUM_CATEGORIES, 1.0 / NUM_CATEGORIES)
    w = np.array([DF2_ITEM_COUNTS[c.id] for c in CATEGORIES], dtype=float)
    return w / w.sum()


def _slot_weights(p: np.ndarray, ids: tuple[int, ...]) -> dict[int, float]:
    total = sum(p[i - 1] for i in ids)
    return {i: p[i - 1] / total for i in ids}


@lru_cache(maxsize=8)
def _all_outfits(p_key: tuple[float, ...]) -> tuple[tuple[float, tuple[int, ...]], ...]:
    """Every complete worn outfit with its prior probability, categories in drawing order.

    An outfit is a top with a bottom, or a dress, optionally with outwear over it; within a slot the
    category follows ``p``.
    """
    p = np.array(p_key)
    upper = _slot_weights(p, TOPS + DRESSES)
    bottom = _slot_weights(p, BOTTOMS)
    out = []
    for u, pu in upper.items():
        for b, pb in ([(None, 1.0)] if u in DRESSES else bottom.items()):
            coats = [o for o in OUTWEAR if o == 4 or u in _SHORT_OUTWEAR_INNER]
            cw = _slot_weights(p, tuple(coats))
            for o, po in [(None, 1.0 - OUTWEAR_P)] + [(o, OUTWEAR_P * cw[o]) for o in coats]:
                items = tuple(c for c in (b, u, o) if c is not None)
                out.append((pu * pb * po, items))
    return tuple(out)


def outfit_options(fixed: tuple[int, ...], p: np.ndarray) -> list[tuple[float, tuple[int, ...]]]:
    """Complete outfits containing every category in ``fixed``, with probabilities summing to 1."""
    opts = [(w, items) for w, items in _all_outfits(tuple(p)) if all(c in items for c in fixed)]
    total = sum(w for w, _ in opts)
    return [(w / total, items) for w, items in opts]


def sample_outfit(rng: np.random.Generator, fixed: tuple[int, ...], p: np.ndarray) -> tuple[int, ...]:
    """A random complete outfit containing ``fixed`` (categories in drawing order)."""
    opts = outfit_options(fixed, p)
    return opts[rng.choice(len(opts), p=np.array([w for w, _ in opts]))][1]


@lru_cache(maxsize=4)
def _target_weights(p_key: tuple[float, ...]) -> tuple[float, ...]:
    p = np.array(p_key)
    worn = np.zeros((NUM_CATEGORIES, NUM_CATEGORIES))  # [k, c]: expected count of k in an outfit around c
    for c in range(1, NUM_CATEGORIES + 1):
        for w, items in outfit_options((c,), p):
            for k in items:
                worn[k - 1, c - 1] += w
    sizes, size_p = np.array(GROUP_SIZES), np.array(GROUP_SIZE_P)
    shop = size_p[0] * 0.5 + size_p[1:].sum()
    user = size_p[0] * 0.5 + (size_p * (sizes - 1)).sum()
    m = shop * FLAT_P * np.eye(NUM_CATEGORIES) + (shop * (1 - FLAT_P) + user * (1 + SECOND_PERSON_P)) * worn
    r = p.copy()
    for _ in range(500):  # multiplicative updates keep r above the floor while matching m @ r to p
        got = m @ r
        r = np.maximum(r * p / (got / got.sum()), MIN_TARGET_SHARE * p)
        r /= r.sum()
    return tuple(r)


def target_weights(p: np.ndarray) -> np.ndarray:
    """Distribution of group target categories whose expected item counts (companions included)
    best match ``p``, each at least about ``MIN_TARGET_SHARE`` times its share in ``p``."""
    return np.array(_target_weights(tuple(p)))


def _group_rng(seed: int, first_id: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, 1, first_id]))


def plan_split(num_images: int, seed: int, *, balanced: bool = False, start_id: int = 1) -> list[ImagePlan]:
    """Plans of images ``start_id .. start_id + num_images - 1``, grouped into shop/user pairs.

    Group sizes come from one stream seeded by ``seed``; each group's content from a generator seeded by
    ``(seed, first image id)``, so a plan never depends on how the images are later distributed.
    """
    p = category_weights(balanced)
    r = target_weights(p)
    sizes_rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    plans: list[ImagePlan] = []
    image_id = start_id
    while len(plans) < num_images:
        size = min(int(sizes_rng.choice(GROUP_SIZES, p=GROUP_SIZE_P)), num_images - len(plans))
        rng = _group_rng(seed, image_id)
        target = int(rng.choice(NUM_CATEGORIES, p=r)) + 1
        shared: list[tuple[int, GarmentSpec]] = []
        if size > 1:
            shared.append((1, sample_garment(rng, target)))
            if rng.random() < SECOND_SHARED_P:
                companions = [c for c in sample_outfit(rng, (target,), p) if c != target]
                if companions:
                    shared.append((2, sample_garment(rng, int(rng.choice(companions)))))
        sources = [str(rng.choice(["shop", "user"]))] if size == 1 else ["shop"] + ["user"] * (size - 1)
        for k, source in enumerate(sources):
            flat = source == "shop" and len(shared) <= 1 and bool(rng.random() < FLAT_P)
            plans.append(ImagePlan(image_id + k, seed, source, image_id, target, tuple(shared), flat, balanced))
        image_id += size
    return plans
