"""Failure analysis: TIDE's error split, the category confusion matrix and the worst images per category.

TIDE (Bolya et al., ECCV 2020) runs through its reference package ``tidecv`` at foreground IoU 0.5 and
background IoU 0.1. Each false positive gets the first type that fits, in tidecv's order:

- localization: 0.1 <= IoU <= 0.5 with an item of its own category;
- classification: IoU >= 0.5 with an item of another category;
- duplicate: IoU >= 0.5 with an item of its own category already taken by a higher-scoring detection;
- background: IoU <= 0.1 with every item;
- both (tidecv's "other"): whatever is left, in practice a wrong category with 0.1 < IoU < 0.5;

and each item that no detection accounts for is missed. ``delta_ap[kind]`` is the AP50 gained when only the
errors of that kind are fixed (TIDE's main errors, each measured from the original AP; TIDE averages over
the categories that have items or detections, COCO over those with items).

The confusion matrix matches detections with score >= ``score_threshold`` to items regardless of category
(greedy by score, each item once, the free item of highest box IoU >= ``iou_threshold``), so a detection
of the wrong category on an item counts as a confusion of the two.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from tidecv import TIDE, Data
from tidecv.errors.main_errors import (
    BackgroundError,
    BoxError,
    ClassError,
    DuplicateError,
    FalseNegativeError,
    FalsePositiveError,
    MissedError,
    OtherError,
)

from fashionparse.categories import BY_ID, NUM_CATEGORIES
from fashionparse.engine.evaluate import check_results, load_ground_truth

ERROR_KINDS = ("classification", "localization", "both", "duplicate", "background", "missed")
_TIDE_KINDS = {ClassError: "classification", BoxError: "localization", OtherError: "both",
               DuplicateError: "duplicate", BackgroundError: "background", MissedError: "missed"}
_TIDE_MODES = {"bbox": TIDE.BOX, "segm": TIDE.MASK}


# --------------------------------------------------------------------------------------------------------
# TIDE
# --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ErrorCase:
    """One TIDE error.

    ``detection``: index of the detection in the results list (None for missed items); ``category_id``:
    the detection's category (the item's for missed); ``iou``: the detection's best IoU with an item of its
    own category; ``gt_ann_id``/``gt_category_id``: the item the error refers to (classification,
    localization, missed), else None.
    """

    kind: str
    image_id: int
    category_id: int
    detection: int | None
    score: float | None
    iou: float | None
    gt_ann_id: int | None
    gt_category_id: int | None


@dataclass(frozen=True)
class TideSummary:
    """TIDE's outcome for one iouType; AP values are fractions (tidecv reports percent)."""

    iou_type: str
    ap50: float
    delta_ap: dict[str, float]
    counts: dict[str, int]
    false_positive_dap: float
    false_negative_dap: float
    cases: tuple[ErrorCase, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary without the individual cases."""
        return {"iou_type": self.iou_type, "ap50": self.ap50, "delta_ap": self.delta_ap, "counts": self.counts,
                "false_positive_dap": self.false_positive_dap, "false_negative_dap": self.false_negative_dap}


def _tide_data(coco: COCO, results: Sequence[Mapping], iou_type: str) -> tuple[Data, Data, list[int]]:
    """GT and detections as tidecv ``Data`` (boxes xywh or RLE masks); also the ann id of each GT entry."""
    key, field = ("box", "bbox") if iou_type == "bbox" else ("mask", "segmentation")
    gt, dt = Data("ground truth"), Data("detections")
    for image in coco.dataset["images"]:  # registers images without items, so their detections count
        gt.add_image(image["id"], image["file_name"])
    ann_ids = []
    for ann in coco.dataset["annotations"]:
        shape = ann["bbox"] if iou_type == "bbox" else coco.annToRLE(ann)
        add = gt.add_ignore_region if ann.get("iscrowd") else gt.add_ground_truth
        add(ann["image_id"], ann["category_id"], **{key: shape})
        ann_ids.append(ann["id"])
    for record in results:
        dt.add_detection(record["image_id"], record["category_id"], record["score"], **{key: record[field]})
    return gt, dt, ann_ids


def _case(error: Any, ann_ids: Sequence[int]) -> ErrorCase:
    pred, item = getattr(error, "pred", None), getattr(error, "gt", None)
    return ErrorCase(
        kind=_TIDE_KINDS[type(error)],
        image_id=int((pred or item)["image"]),
        category_id=int((pred or item)["class"]),
        detection=None if pred is None else int(pred["_id"]),
        score=None if pred is None else float(pred["score"]),
        iou=None if pred is None else float(pred["iou"]),
        gt_ann_id=None if item is None else int(ann_ids[item["_id"]]),
        gt_category_id=None if item is None else int(item["class"]),
    )


def tide_errors(gt: str | Path | COCO, results: Sequence[Mapping], iou_type: str = "bbox") -> TideSummary:
    """TIDE's error split of DF2 submission records (``bbox`` or ``segm``) against a COCO-format GT."""
    if iou_type not in _TIDE_MODES:
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    coco = load_ground_truth(gt)
    check_results(results, iou_type, coco)  # load_ground_truth refused a GT without garments
    if not results:  # tidecv divides by zero here; without detections every item is missed and no fix adds AP
        items = [ann for ann in coco.dataset["annotations"] if not ann.get("iscrowd")]
        return TideSummary(iou_type, 0.0, dict.fromkeys(ERROR_KINDS, 0.0),
                           {**dict.fromkeys(ERROR_KINDS, 0), "missed": len(items)}, 0.0, 0.0,
                           tuple(ErrorCase("missed", ann["image_id"], ann["category_id"], None, None, None, ann["id"],
                                           ann["category_id"]) for ann in items))
    gt_data, dt_data, ann_ids = _tide_data(coco, results, iou_type)
    with matplotlib.rc_context():  # TIDE() restyles matplotlib globally (seaborn whitegrid, dpi 150): undo it
        tide = TIDE()
    run = tide.evaluate(gt_data, dt_data, mode=_TIDE_MODES[iou_type])
    main = {_TIDE_KINDS[kind]: value / 100.0 for kind, value in run.fix_main_errors().items()}
    special = run.fix_special_errors()
    counts = {_TIDE_KINDS[kind]: n for kind, n in run.count_errors().items()}
    return TideSummary(
        iou_type=iou_type, ap50=run.ap / 100.0,
        delta_ap={kind: main[kind] for kind in ERROR_KINDS}, counts={kind: counts[kind] for kind in ERROR_KINDS},
        false_positive_dap=special[FalsePositiveError] / 100.0,
        false_negative_dap=special[FalseNegativeError] / 100.0,
        cases=tuple(_case(error, ann_ids) for error in run.errors),
    )


# --------------------------------------------------------------------------------------------------------
# Confusion matrix and worst images
# --------------------------------------------------------------------------------------------------------

def match_boxes(det_boxes: np.ndarray, det_scores: np.ndarray, gt_boxes: np.ndarray,
                iou_threshold: float = 0.5) -> np.ndarray:
    """Category-agnostic greedy matching of one image.

    ``det_boxes`` float [D, 4] and ``gt_boxes`` float [G, 4] are COCO xywh, ``det_scores`` float [D].
    Detections are taken by descending score (ties: input order); each takes the still free item of
    highest IoU >= ``iou_threshold``. Returns int64 [D]: the matched item's index, or -1.
    """
    matches = np.full(len(det_boxes), -1, dtype=np.int64)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return matches
    ious = np.asarray(mask_utils.iou(np.asarray(det_boxes, dtype=np.float64).tolist(),
                                     np.asarray(gt_boxes, dtype=np.float64).tolist(), [0] * len(gt_boxes)))
    free = np.ones(len(gt_boxes), dtype=bool)
    for d in np.argsort(-np.asarray(det_scores), kind="stable"):
        candidates = np.flatnonzero(free & (ious[d] >= iou_threshold))
        if candidates.size:
            g = candidates[np.argmax(ious[d, candidates])]
            matches[d], free[g] = g, False
    return matches


@dataclass(frozen=True)
class ImageErrors:
    """Errors of one category in one image at the confusion matrix's matching.

    ``missed``: items of the category not matched by a detection of the category; ``false_positives``:
    detections of the category not matched to an item of the category.
    """

    image_id: int
    category_id: int
    missed: int
    false_positives: int

    @property
    def errors(self) -> int:
        return self.missed + self.false_positives


@dataclass(frozen=True)
class Confusion:
    """Category confusion of matched detections.

    ``matrix`` int64 [13, 13]: row = item category - 1, column = detected category - 1; ``missed`` int64 [13]
    items matched by no detection, by item category; ``background`` int64 [13] detections matched to no item,
    by detected category; ``worst``: category id -> images with the most errors of that category.
    """

    matrix: np.ndarray
    missed: np.ndarray
    background: np.ndarray
    worst: dict[int, tuple[ImageErrors, ...]]
    iou_threshold: float
    score_threshold: float

    def top_confusions(self, n: int = 5) -> list[tuple[int, int, int, float]]:
        """The ``n`` largest off-diagonal cells: (item category, detected category, count, share of the row)."""
        off = self.matrix.copy()
        np.fill_diagonal(off, 0)
        rows = self.matrix.sum(axis=1)
        cells = sorted(((int(off[i, j]), i, j) for i in range(NUM_CATEGORIES) for j in range(NUM_CATEGORIES)
                        if off[i, j] > 0), key=lambda c: (-c[0], c[1], c[2]))[:n]
        return [(i + 1, j + 1, count, count / rows[i]) for count, i, j in cells]

    def to_dict(self) -> dict[str, Any]:
        return {"iou_threshold": self.iou_threshold, "score_threshold": self.score_threshold,
                "matrix": self.matrix.tolist(), "missed": self.missed.tolist(),
                "background": self.background.tolist(),
                "worst": {str(c): [{**asdict(e), "errors": e.errors} for e in items]
                          for c, items in self.worst.items()}}


def _image_errors(image_id: int, gt_labels: np.ndarray, det_labels: np.ndarray,
                  matches: np.ndarray) -> list[ImageErrors]:
    """Per category present in the image: items without a same-category match, detections likewise."""
    matched_gt = {int(g): int(det_labels[d]) for d, g in enumerate(matches) if g >= 0}
    out = []
    for category in sorted(set(gt_labels.tolist()) | set(det_labels.tolist())):
        missed = sum(1 for g, label in enumerate(gt_labels) if label == category and matched_gt.get(g) != category)
        false_positives = sum(1 for d, label in enumerate(det_labels)
                              if label == category and (matches[d] < 0 or gt_labels[matches[d]] != category))
        out.append(ImageErrors(image_id, int(category), missed, false_positives))
    return out


def confusion_analysis(gt: str | Path | COCO, bbox_results: Sequence[Mapping], *, iou_threshold: float = 0.5,
                       score_threshold: float = 0.5, worst_per_category: int = 3) -> Confusion:
    """Confusion matrix, missed items, background detections and worst images (see the module docstring)."""
    coco = load_ground_truth(gt)
    check_results(bbox_results, "bbox", coco)
    detections: dict[int, list[Mapping]] = defaultdict(list)
    for record in bbox_results:
        if record["score"] >= score_threshold:
            detections[record["image_id"]].append(record)
    matrix = np.zeros((NUM_CATEGORIES, NUM_CATEGORIES), dtype=np.int64)
    missed = np.zeros(NUM_CATEGORIES, dtype=np.int64)
    background = np.zeros(NUM_CATEGORIES, dtype=np.int64)
    per_category: dict[int, list[ImageErrors]] = defaultdict(list)
    for image_id in sorted(coco.getImgIds()):
        anns = coco.imgToAnns.get(image_id, [])
        dets = detections.get(image_id, [])
        gt_labels = np.array([a["category_id"] for a in anns], dtype=np.int64)
        det_labels = np.array([d["category_id"] for d in dets], dtype=np.int64)
        matches = match_boxes(np.array([d["bbox"] for d in dets]).reshape(-1, 4),
                              np.array([d["score"] for d in dets]), np.array([a["bbox"] for a in anns]).reshape(-1, 4),
                              iou_threshold)
        for d, g in enumerate(matches):
            if g >= 0:
                matrix[gt_labels[g] - 1, det_labels[d] - 1] += 1
            else:
                background[det_labels[d] - 1] += 1
        for g in set(range(len(anns))) - set(matches.tolist()):
            missed[gt_labels[g] - 1] += 1
        for errors in _image_errors(image_id, gt_labels, det_labels, matches):
            if errors.errors:
                per_category[errors.category_id].append(errors)
    worst = {c: tuple(sorted(per_category[c], key=lambda e: (-e.errors, e.image_id))[:worst_per_category])
             for c in BY_ID if per_category[c]}
    return Confusion(matrix, missed, background, worst, iou_threshold, score_threshold)
