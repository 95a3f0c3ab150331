"""AP (box and mask) per DF2 item attribute value and per image source, next to Match R-CNN's numbers.

Item attributes (scale, occlusion, zoom-in, viewpoint): a subset such as "occlusion heavy" is evaluated with
all detections against all GT items, where every item *outside* the subset is ignored, as COCOeval ignores
the GT outside its area ranges (APs/APm/APl). Consequences, all pycocotools' own rules for ignored GT:

- a detection matched to an ignored item is neither a true nor a false positive;
- a detection matches an in-subset item of its category when one qualifies, and falls back to an ignored
  item only otherwise (pycocotools sorts ignored GT last and stops there once it has a regular match);
- an ignored item absorbs one detection only: a second detection on it is a false positive, as a
  duplicate on an out-of-range item is in COCO's area subsets;
- detections matching no item stay false positives in every subset (a background detection cannot be
  assigned an attribute value; COCOeval's area subsets, unlike these, also ignore unmatched detections outside
  the range), which pulls the small subsets down; ignored items are not counted as positives;
- a category without items in the subset has no AP there and is left out of that subset's mean.

DF2 does not publish the code of its subset table, so Match R-CNN's numbers beside these are not strictly
comparable. The source rows differ: ``source`` belongs to the image, so "source user" is the stock evaluation
of the user images alone (pycocotools with ``params.imgIds`` restricted to them), every item kept.

Why the flag is set here and not in the GT file: ``COCOeval._prepare`` overwrites each GT's ``ignore``
with its ``iscrowd``, and ``iscrowd=1`` is not "ignore": it switches that GT's IoU to intersection over the
detection's area and lets it absorb any number of detections. So ``SubsetCOCOeval`` runs ``evaluate()``
once (IoUs included), then per subset sets ``ignore`` on the prepared GT and reruns ``evaluateImg`` and
``accumulate`` only.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from fashionparse.categories import ATTRIBUTES
from fashionparse.engine.evaluate import check_results, load_detections, load_ground_truth
from fashionparse.engine.published import APTriple, parse_triple, read_data_json
from fashionparse.errors import FashionparseError

SOURCES = ("shop", "user")
SUBSET_ATTRIBUTES = (*ATTRIBUTES, "source")
_IOU_TYPES = {"box": "bbox", "mask": "segm"}
_DISPLAY = {"zoom_in": "zoom-in"}


@dataclass(frozen=True)
class Subset:
    """GT items whose ``attribute`` equals ``value`` (``attribute == "overall"``: every item)."""

    attribute: str
    value: int | str | None = None

    @property
    def label(self) -> str:
        """DF2's row name, e.g. 'scale small', 'zoom-in no', 'source user', 'overall'."""
        if self.attribute == "overall":
            return "overall"
        name = ATTRIBUTES[self.attribute][self.value] if self.attribute in ATTRIBUTES else str(self.value)
        return f"{_DISPLAY.get(self.attribute, self.attribute)} {name}"

    @property
    def image_level(self) -> bool:
        """An attribute of the whole image (its source): the subset is a set of images, not of items."""
        return self.attribute == "source"

    def contains(self, ann: Mapping[str, Any]) -> bool:
        return self.attribute == "overall" or ann.get(self.attribute) == self.value


# DF2's subset table order (reference §6(b)), then the sources, then the whole set.
SUBSETS: tuple[Subset, ...] = (
    *(Subset(attribute, value) for attribute, values in ATTRIBUTES.items() for value in values),
    *(Subset("source", source) for source in SOURCES),
    Subset("overall"),
)


@dataclass(frozen=True)
class PublishedSubsets:
    """Per-subset box/mask AP of one published method (``rows`` keyed by ``(attribute, value)``)."""

    method: str
    training_data: str
    source: str
    note: str
    rows: dict[tuple[str, int | str | None], tuple[APTriple, APTriple]]

    def lookup(self, subset: Subset) -> tuple[APTriple | None, APTriple | None]:
        box_mask = self.rows.get((subset.attribute, subset.value))
        return (None, None) if box_mask is None else box_mask


def load_published_subsets(path: str | Path | None = None) -> PublishedSubsets:
    """Read ``data/published_subsets.json`` (Match R-CNN's per-subset table, reference §6(b)) or ``path``."""
    raw, where = read_data_json("published_subsets.json", path)
    for key in ("method", "training_data", "source", "note", "subsets"):
        if not isinstance(raw, dict) or key not in raw:
            raise FashionparseError("missing field", path=where, field=key)
    rows = {}
    for i, entry in enumerate(raw["subsets"]):
        for key in ("attribute", "value", "box", "mask"):
            if key not in entry:
                raise FashionparseError("missing field", path=where, field=f"subsets[{i}].{key}")
        subset = Subset(entry["attribute"], entry["value"])
        if subset not in SUBSETS:
            raise FashionparseError(f"unknown subset {subset.attribute}={subset.value!r}", path=where,
                                    field=f"subsets[{i}]")
        rows[(subset.attribute, subset.value)] = (parse_triple(entry["box"], where, f"subsets[{i}].box"),
                                                  parse_triple(entry["mask"], where, f"subsets[{i}].mask"))
    return PublishedSubsets(raw["method"], raw["training_data"], raw["source"], raw["note"], rows)


class SubsetCOCOeval(COCOeval):
    """COCOeval (area 'all', maxDets 100, DF2's image ids) that evaluates any GT subset without recomputing IoUs.

    ``precision(keep, images)`` returns ``eval['precision']`` [T=10 IoUs, R=101 recalls, K categories] with the
    GT items for which ``keep(ann)`` is false ignored (see the module docstring) and, given ``images``, only
    those image ids evaluated; ``precision()`` is the stock evaluation of all items.
    """

    def __init__(self, gt: COCO, dt: COCO, iou_type: str) -> None:
        super().__init__(gt, dt, iou_type)
        p = self.params
        p.imgIds = sorted(gt.getImgIds())
        p.areaRng, p.areaRngLbl, p.maxDets = p.areaRng[:1], p.areaRngLbl[:1], [p.maxDets[-1]]
        with contextlib.redirect_stdout(io.StringIO()):
            self.evaluate()

    def precision(self, keep: Callable[[Mapping[str, Any]], bool] | None = None,
                  images: Collection[int] | None = None) -> np.ndarray:
        for anns in self._gts.values():
            for ann in anns:
                ann["ignore"] = int(bool(ann.get("iscrowd")) or (keep is not None and not keep(ann)))
        p = self.params
        # accumulate() skips None entries: as if params.imgIds held ``images`` only
        self.evalImgs = [self.evaluateImg(image_id, cat_id, p.areaRng[0], p.maxDets[-1])
                         if images is None or image_id in images else None
                         for cat_id in p.catIds for image_id in p.imgIds]
        with contextlib.redirect_stdout(io.StringIO()):
            self.accumulate()
        return self.eval["precision"][:, :, :, 0, 0].copy()


def ap_triple(precision: np.ndarray) -> APTriple:
    """AP (mean over IoUs .50:.95), AP50, AP75 from precision [T, R, K]; -1 entries (no GT) are left out."""
    def mean(values: np.ndarray) -> float | None:
        valid = values[values > -1]
        return float(valid.mean()) if valid.size else None
    return APTriple(mean(precision), mean(precision[0]), mean(precision[5]))


@dataclass(frozen=True)
class SubsetAP:
    """One row of the subset table: this run's AP and, where published, Match R-CNN's."""

    subset: Subset
    num_gt: int
    box: APTriple
    mask: APTriple
    published_box: APTriple | None
    published_mask: APTriple | None


@dataclass(frozen=True)
class SubsetReport:
    """The subset table plus what it was built from.

    ``unassigned``: per attribute, GT items whose value is missing or outside DF2's vocabulary (they are in
    none of that attribute's subsets); ``precision``: 'box'/'mask' -> the overall precision [T, R, K] for
    precision-recall curves, categories ordered as ``cat_ids``.
    """

    rows: tuple[SubsetAP, ...]
    unassigned: dict[str, int]
    published: PublishedSubsets
    precision: dict[str, np.ndarray]
    cat_ids: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready rows (fractions, ``null`` where undefined or unpublished)."""
        def triple(t: APTriple | None) -> dict[str, float | None] | None:
            return None if t is None else t.as_dict()
        return {"published_method": self.published.method, "unassigned": self.unassigned,
                "rows": [{"attribute": r.subset.attribute, "value": r.subset.value, "label": r.subset.label,
                          "num_gt": r.num_gt, "box": triple(r.box), "mask": triple(r.mask),
                          "published_box": triple(r.published_box), "published_mask": triple(r.published_mask)}
                         for r in self.rows]}


def _unassigned(annotations: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    out = {}
    for attribute in SUBSET_ATTRIBUTES:
        values = {s.value for s in SUBSETS if s.attribute == attribute}
        out[attribute] = sum(1 for ann in annotations if ann.get(attribute) not in values)
    return out


def evaluate_subsets(gt: str | Path | COCO, bbox_results: Sequence[Mapping], segm_results: Sequence[Mapping],
                     *, subsets: Sequence[Subset] = SUBSETS, published: PublishedSubsets | None = None,
                     progress: bool = True) -> SubsetReport:
    """Box and mask AP/AP50/AP75 of every subset (DF2 submission records; GT as ``evaluate_results`` takes it).

    A ``COCO`` passed as ``gt`` has its polygons replaced by RLE in place (as any COCOeval 'segm' run).
    """
    coco = load_ground_truth(gt)
    check_results(bbox_results, "bbox", coco)
    check_results(segm_results, "segm", coco)
    published = load_published_subsets() if published is None else published
    with contextlib.redirect_stdout(io.StringIO()):  # loadRes prints progress
        detections = {"box": load_detections(coco, bbox_results), "mask": load_detections(coco, segm_results)}
    evaluators = {task: SubsetCOCOeval(coco, dt, _IOU_TYPES[task]) for task, dt in detections.items()}
    annotations = [ann for ann in coco.dataset["annotations"] if not ann.get("iscrowd")]
    rows, overall = [], {}
    for subset in tqdm(subsets, desc="AP per subset", unit="subset", disable=not progress):
        keep, images = (None if subset.attribute == "overall" or subset.image_level else subset.contains), None
        if subset.image_level:
            images = {ann["image_id"] for ann in annotations if subset.contains(ann)}
        precision = {task: evaluator.precision(keep, images) for task, evaluator in evaluators.items()}
        if subset.attribute == "overall":
            overall = precision
        rows.append(SubsetAP(subset, sum(1 for ann in annotations if subset.contains(ann)),
                             ap_triple(precision["box"]), ap_triple(precision["mask"]), *published.lookup(subset)))
    if not overall:
        overall = {task: evaluator.precision(None) for task, evaluator in evaluators.items()}
    return SubsetReport(tuple(rows), _unassigned(annotations), published, overall,
                        tuple(int(c) for c in evaluators["box"].params.catIds))
