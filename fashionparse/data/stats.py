"""Dataset statistics of a DF2 split folder or of its converted COCO JSON.

Counts are plain dicts (key -> count) so that another distribution over the same keys, e.g. the
effective one after caps and sampling, can be built with :func:`stats_from_images` and printed next to
the dataset's own with ``format_stats(stats, other)``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from matplotlib.figure import Figure

from fashionparse.categories import ATTRIBUTES, BY_ID, CATEGORIES
from fashionparse.data.df2 import ATTRIBUTE_FIELDS, SOURCES, ImageRecord, Item, check_unique_ids, is_int, read_split
from fashionparse.errors import AnnotationError
from fashionparse.utils.io import atomic_write_with

# COCO area ranges (cocoeval's small/medium/large) over the *bbox* area, as DF2's COCO ``area`` is the
# bbox area: small < 32^2 <= medium < 96^2 <= large.
BOX_SIZE_LIMITS: dict[str, float] = {"small": 32.0**2, "medium": 96.0**2, "large": math.inf}
SQRT_AREA_QUANTILES: tuple[float, ...] = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)

Count = int | float  # float once counts are expectations (e.g. under sampling weights)


class ItemFacts(NamedTuple):
    """What the statistics need of one item; attributes/source are None when the input lacks them."""

    category_id: int
    bbox_area: float
    source: str | None = None
    scale: int | None = None
    occlusion: int | None = None
    zoom_in: int | None = None
    viewpoint: int | None = None


@dataclass
class Stats:
    """Distributions of one dataset. Every count dict maps a key to a number of items (images for
    ``items_per_image``); an attribute or ``per_source`` is empty when the input does not record it."""

    origin: str
    num_images: int
    num_items: int
    per_category: dict[int, Count]  # category id -> items (all 13 ids present)
    per_attribute: dict[str, dict[int, Count]]  # "scale"/"occlusion"/"zoom_in"/"viewpoint" -> value -> items
    per_source: dict[str, Count]  # "shop"/"user" -> items
    items_per_image: dict[int, Count]  # number of items in an image -> images
    box_size: dict[str, Count]  # "small"/"medium"/"large" (BOX_SIZE_LIMITS) -> items
    sqrt_area_quantiles: dict[float, float]  # quantile -> sqrt(bbox area) in px; empty without items
    skipped_images: int = 0
    skipped_items: int = 0


def _box_size(area: float) -> str:
    return next(name for name, limit in BOX_SIZE_LIMITS.items() if area < limit)


def stats_from_images(origin: str, images: Iterable[Sequence[ItemFacts]], *, skipped_images: int = 0,
                      skipped_items: int = 0) -> Stats:
    """Stats of a dataset given as one sequence of :class:`ItemFacts` per image."""
    items: list[ItemFacts] = []
    per_image: Counter[int] = Counter()
    for image_items in images:
        per_image[len(image_items)] += 1
        items.extend(image_items)

    def counts(values: Iterable[Any], keys: Iterable[Any]) -> dict[Any, int]:
        present = Counter(v for v in values if v is not None)
        return {k: present.get(k, 0) for k in (*keys, *sorted(present.keys() - set(keys)))} if present else {}

    areas = np.array([it.bbox_area for it in items], dtype=np.float64)
    quantiles = np.quantile(np.sqrt(areas), SQRT_AREA_QUANTILES) if len(items) else []
    per_category = counts((it.category_id for it in items), BY_ID) or {cid: 0 for cid in BY_ID}
    return Stats(
        origin=origin,
        num_images=sum(per_image.values()),
        num_items=len(items),
        per_category=per_category,
        per_attribute={name: c for name in ATTRIBUTE_FIELDS
                       if (c := counts((getattr(it, name) for it in items), ATTRIBUTES[name]))},
        per_source=counts((it.source for it in items), SOURCES),
        items_per_image=dict(sorted(per_image.items())),
        box_size=counts((_box_size(a) for a in areas), BOX_SIZE_LIMITS) or dict.fromkeys(BOX_SIZE_LIMITS, 0),
        sqrt_area_quantiles={q: float(v) for q, v in zip(SQRT_AREA_QUANTILES, quantiles)},
        skipped_images=skipped_images,
        skipped_items=skipped_items,
    )


def _split_stats(root: Path, workers: int | None, progress: bool) -> Stats:
    report = read_split(root, workers=workers, progress=progress)
    def facts(rec: ImageRecord, it: Item) -> ItemFacts:
        x1, y1, x2, y2 = it.bounding_box
        return ItemFacts(it.category_id, (x2 - x1) * (y2 - y1), rec.source, *(getattr(it, n) for n in ATTRIBUTE_FIELDS))

    images = ([facts(rec, it) for it in rec.items] for rec in report.records)
    return stats_from_images(str(root), images, skipped_images=report.skipped_images,
                             skipped_items=report.skipped_items)


def _drop_heavy(obj: dict[str, Any]) -> dict[str, Any]:
    """JSON object hook: drop the 882-value keypoints and polygons as soon as each object is parsed."""
    obj.pop("keypoints", None)
    obj.pop("segmentation", None)
    return obj


def coco_training_items(path: Path) -> tuple[list[list[ItemFacts]], int]:
    """Per image of a COCO file, in id order as the dataset indexes them: the facts of the annotations
    training uses, and how many it leaves out (crowd or degenerate box, ``dataset.reject_reason``).

    The one reader of ``compute_stats`` and ``balance.effective_stats``, so both count the same items.
    """
    from fashionparse.data.dataset import reject_reason  # imports torch: only when a COCO file is read

    try:
        with open(path, "rb") as f:
            data = json.load(f, object_hook=_drop_heavy)
    except (OSError, ValueError) as exc:
        raise AnnotationError(f"unreadable JSON: {exc}", path=path) from None
    for key in ("images", "annotations"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise AnnotationError("COCO file needs an 'images' and an 'annotations' list", path=path, field=key)
    sizes: dict[Any, tuple[int, int]] = {}
    for i, img in enumerate(data["images"]):
        try:
            if not is_int(img["id"]):  # ids are sorted below
                raise TypeError
            sizes[img["id"]] = (int(img["width"]), int(img["height"]))
        except (KeyError, TypeError, ValueError):
            raise AnnotationError("every image needs an integer 'id', a 'width' and a 'height'", path=path,
                                  field=f"images[{i}]") from None
    check_unique_ids(data, path, ("images",))  # else two images' items would count as one image's
    per_image: dict[Any, list[ItemFacts]] = {image_id: [] for image_id in sorted(sizes)}
    skipped = 0
    for i, ann in enumerate(data["annotations"]):
        try:
            if reject_reason(ann, *sizes[ann["image_id"]]):
                skipped += 1
                continue
            _, _, w, h = ann["bbox"]
            facts = ItemFacts(ann["category_id"], float(w) * float(h), ann.get("source"),
                              *(ann.get(name) for name in ATTRIBUTE_FIELDS))
            per_image[ann["image_id"]].append(facts)
        except (KeyError, TypeError, ValueError):
            raise AnnotationError("needs category_id, bbox [x, y, w, h] and an image_id listed in images",
                                  path=path, field=f"annotations[{i}]") from None
    return list(per_image.values()), skipped


def _coco_stats(path: Path) -> Stats:
    images, skipped = coco_training_items(path)
    return stats_from_images(str(path), images, skipped_items=skipped)


def compute_stats(source: str | Path, *, workers: int | None = None, progress: bool = True) -> Stats:
    """Stats of a DF2 split folder (read leniently, skipped counts kept) or of a COCO JSON file (the items
    training uses: crowd annotations and degenerate boxes are counted as skipped).

    Raises:
        AnnotationError: ``source`` is neither, or cannot be read.
    """
    path = Path(source)
    if path.is_dir():
        return _split_stats(path, workers, progress)
    if path.is_file():
        return _coco_stats(path)
    raise AnnotationError("not found: expected a DF2 split folder or a COCO JSON file", path=path)


# ---------------------------------------------------------------------------------------------------
# Output.

def _num(v: Count) -> str:
    return f"{v:,}" if isinstance(v, int) else f"{v:,.1f}"


def _table(title: str, rows: Sequence[tuple[str, Any]], counts: Sequence[Mapping[Any, Count]],
           headers: Sequence[str], share: bool = True) -> list[str]:
    """One section: a label column, then per count dict its value (and share of the dict's total)."""
    width = max([len(title), *(len(label) for label, _ in rows)]) + 2
    cols = [f"{h:>12}" + (f"{'share':>8}" if share else "") for h in headers[:len(counts)]]
    lines = [f"{title:<{width}}" + "".join(cols)]
    if not any(counts):
        return [*lines, "  n/a (not recorded in this input)"]
    totals = [sum(c.values()) for c in counts]
    for label, key in rows:
        cells = []
        for c, total in zip(counts, totals):
            v = c.get(key)
            cells.append(f"{'n/a' if v is None else _num(v):>12}")
            if share:
                cells.append(f"{100 * v / total:>7.1f}%" if v is not None and total else f"{'':>8}")
        lines.append(f"  {label:<{width - 2}}" + "".join(cells))
    return lines


def format_stats(stats: Stats, other: Stats | None = None, *,
                 headers: tuple[str, str] = ("items", "effective")) -> str:
    """Printable tables; with ``other`` each table gets a second column (e.g. effective distribution)."""
    both = [stats] if other is None else [stats, other]

    def section(title: str, get: Any, labels: dict[Any, str], share: bool = True,
                col_headers: Sequence[str] = headers) -> list[str]:
        dicts = [get(s) for s in both]
        keys = list(dict.fromkeys(k for d in dicts for k in d)) or list(labels)
        if not labels:  # open-ended numeric keys (items per image)
            keys.sort()
        return ["", *_table(title, [(labels.get(k, str(k)), k) for k in keys], dicts, col_headers, share)]

    mean = stats.num_items / stats.num_images if stats.num_images else 0.0
    lines = [f"DF2 statistics of {stats.origin}: {stats.num_images:,} images, {stats.num_items:,} items "
             f"({mean:.2f} per image)"]
    if stats.skipped_images or stats.skipped_items:
        lines.append(f"skipped (invalid, crowd or degenerate box): {stats.skipped_images:,} images, "
                     f"{stats.skipped_items:,} items")
    lines += section("items per category", lambda s: s.per_category, {c.id: f"{c.id:>2} {c.name}" for c in CATEGORIES})
    for name, vocab in ATTRIBUTES.items():
        lines += section(name, lambda s, n=name: s.per_attribute.get(n, {}), {v: f"{v} {t}" for v, t in vocab.items()})
    lines += section("source", lambda s: s.per_source, {k: k for k in SOURCES})
    img_headers = [h.replace("items", "images") for h in headers]
    lines += section("items per image", lambda s: s.items_per_image, {}, col_headers=img_headers)
    lines += section("box size (bbox area)", lambda s: s.box_size,
                     {"small": "small  < 32^2", "medium": "medium < 96^2", "large": "large  >= 96^2"})
    quantile_labels = {q: {0.0: "min", 1.0: "max"}.get(q, f"q{round(100 * q):02d}") for q in SQRT_AREA_QUANTILES}
    lines += section("sqrt(bbox area) px", lambda s: s.sqrt_area_quantiles, quantile_labels,
                     share=False, col_headers=[h.replace("items", "px") for h in headers])
    return "\n".join(lines)


def plot_category_counts(stats: Stats, png_path: str | Path) -> None:
    """Horizontal bar chart "items per category" (largest first), written atomically as PNG."""
    ordered = sorted(stats.per_category.items(), key=lambda kv: (-kv[1], kv[0]))
    labels = [BY_ID[cid].name if cid in BY_ID else f"id {cid}" for cid, _ in ordered]
    values = [v for _, v in ordered]
    fig = Figure(figsize=(7.5, 0.32 * len(ordered) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.barh(labels, values, color="tab:blue")
    ax.invert_yaxis()
    ax.bar_label(bars, labels=[_num(v) for v in values], padding=3, fontsize=8)
    ax.margins(x=0.15)
    ax.set_xlabel("items")
    ax.set_title(f"items per category ({_num(stats.num_items)} items, {Path(stats.origin).name})")
    atomic_write_with(png_path, lambda f: fig.savefig(f, format="png", dpi=120))
