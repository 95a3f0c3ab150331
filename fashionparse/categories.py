"""DeepFashion2 category table: ids, names, landmark counts and 294-slot keypoint ranges.

Source: ``shared/reference/deepfashion2.md`` §1 (README of switchablenorms/DeepFashion2 and the slot
ranges of its ``evaluation/deepfashion2_to_coco.py``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    """One DF2 clothing category.

    ``name`` is the string used in per-image annotations (``category_name``); ``coco_name`` the one the
    official COCO converter writes; ``slot_start`` the 0-based first slot in the 294-landmark vector.
    """

    id: int
    name: str
    coco_name: str
    num_landmarks: int
    slot_start: int

    @property
    def slots(self) -> range:
        """0-based landmark slots of this category inside the 294-vector."""
        return range(self.slot_start, self.slot_start + self.num_landmarks)


_TABLE: tuple[tuple[int, str, str, int], ...] = (
    (1, "short sleeve top", "short_sleeved_shirt", 25),
    (2, "long sleeve top", "long_sleeved_shirt", 33),
    (3, "short sleeve outwear", "short_sleeved_outwear", 31),
    (4, "long sleeve outwear", "long_sleeved_outwear", 39),
    (5, "vest", "vest", 15),
    (6, "sling", "sling", 15),
    (7, "shorts", "shorts", 10),
    (8, "trousers", "trousers", 14),
    (9, "skirt", "skirt", 8),
    (10, "short sleeve dress", "short_sleeved_dress", 29),
    (11, "long sleeve dress", "long_sleeved_dress", 37),
    (12, "vest dress", "vest_dress", 19),
    (13, "sling dress", "sling_dress", 19),
)


def _build() -> tuple[Category, ...]:
    out, start = [], 0
    for cid, name, coco_name, n in _TABLE:
        out.append(Category(cid, name, coco_name, n, start))
        start += n
    return tuple(out)


CATEGORIES: tuple[Category, ...] = _build()
NUM_CATEGORIES = len(CATEGORIES)  # 13
NUM_CLASSES = NUM_CATEGORIES + 1  # detector classes including background (id 0)
TOTAL_LANDMARKS = sum(c.num_landmarks for c in CATEGORIES)  # 294
BY_ID: dict[int, Category] = {c.id: c for c in CATEGORIES}
BY_NAME: dict[str, Category] = {c.name: c for c in CATEGORIES}

# Approximate item counts of the full dataset, read from README Figure 3b (±5K); the synthetic
# generator's default long tail follows these proportions (reference §5).
DF2_ITEM_COUNTS: dict[int, int] = {
    1: 190_000, 2: 95_000, 3: 5_000, 4: 37_000, 5: 42_000, 6: 7_000, 7: 92_000,
    8: 147_000, 9: 83_000, 10: 47_000, 11: 24_000, 12: 49_000, 13: 19_000,
}

# Attribute vocabularies (reference §1): value -> meaning.
ATTRIBUTES: dict[str, dict[int, str]] = {
    "scale": {1: "small", 2: "moderate", 3: "large"},
    "occlusion": {1: "slight", 2: "medium", 3: "heavy"},
    "zoom_in": {1: "no", 2: "medium", 3: "large"},
    "viewpoint": {1: "no wear", 2: "frontal", 3: "side or back"},
}


def label_name(label: int, *, df2: bool = True) -> str:
    """The display name of a detector label: DF2's category name when ``df2`` (a DF2 parser) and the label is
    one of DF2's ids; ``category N`` otherwise (e.g. COCO ids of a model trained with the pretraining config)."""
    return BY_ID[label].name if df2 and label in BY_ID else f"category {label}"


def coco_categories() -> list[dict]:
    """Category records exactly as the official converter writes them (294 keypoint names each)."""
    keypoints = [str(i) for i in range(1, TOTAL_LANDMARKS + 1)]
    return [
        {"id": c.id, "name": c.coco_name, "supercategory": "clothes", "keypoints": keypoints, "skeleton": []}
        for c in CATEGORIES
    ]
