"""DeepFashion2 detection/segmentation evaluation (stock COCO protocol through pycocotools).

DF2's official evaluation is pycocotools' ``COCOeval`` for ``bbox`` and ``segm`` with
``params.imgIds = sorted(gt.getImgIds())`` and default parameters: IoU .50:.05:.95, maxDets 100, area ranges
from the GT ``area`` field (which DF2's converter sets to the box area). Results use DF2's submission format:
bbox ``{image_id, category_id, bbox: [x, y, w, h], score}`` and segm
``{image_id, category_id, segmentation: {size: [h, w], counts: str}, score}``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from fashionparse.categories import BY_ID
from fashionparse.data.compact_masks import coco_polygons
from fashionparse.data.dataset import collate
from fashionparse.data.df2 import check_unique_ids, is_box, is_int, is_number, rle_problem
from fashionparse.engine.published import APTriple, PublishedResult, comparison_table, format_percent
from fashionparse.errors import AnnotationError, FashionparseError
from fashionparse.utils.io import atomic_write_json, atomic_write_text

IOU_TYPES = ("bbox", "segm")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
_GT_ANNOTATION_KEYS = ("image_id", "category_id", "bbox", "area", "iscrowd", "segmentation")
_RESULT_KEYS = {"bbox": ("image_id", "category_id", "bbox", "score"),
                "segm": ("image_id", "category_id", "segmentation", "score")}


# --------------------------------------------------------------------------------------------------------
# Model output -> DF2 submission records
# --------------------------------------------------------------------------------------------------------

def to_coco_results(image_id: int, output: Mapping[str, torch.Tensor],
                    mask_threshold: float = 0.5) -> tuple[list[dict], list[dict]]:
    """Convert one torchvision Mask R-CNN output into DF2 bbox and segm submission records.

    ``output``: ``boxes`` float[N, 4] xyxy, ``labels`` int64[N] (1..13), ``scores`` float[N],
    ``masks`` float[N, 1, H, W] probabilities, all in original image coordinates. A mask pixel is
    foreground where its probability is ``> mask_threshold`` (as torchvision's reference evaluation).
    Returns ``(bbox_records, segm_records)``, one of each per detection, in the same order.
    """
    boxes = output["boxes"].detach().cpu().to(torch.float64)
    labels = output["labels"].detach().cpu().tolist()
    scores = output["scores"].detach().cpu().tolist()
    masks = output["masks"].detach().cpu()
    n = len(labels)
    if boxes.shape != (n, 4) or len(scores) != n or masks.dim() != 4 or masks.shape[:2] != (n, 1):
        raise ValueError(f"image {image_id}: expected boxes [N,4], labels [N], scores [N], masks [N,1,H,W]; "
                         f"got {tuple(boxes.shape)}, {n}, {len(scores)}, {tuple(masks.shape)}")
    if n == 0:
        return [], []
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    binary = (masks[:, 0] > mask_threshold).numpy().astype(np.uint8)  # [N, H, W]
    rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))  # needs Fortran H x W x N
    bbox_records, segm_records = [], []
    for box, label, score, rle in zip(xywh, labels, scores, rles):
        common = {"image_id": int(image_id), "category_id": int(label)}
        bbox_records.append({**common, "bbox": [float(v) for v in box], "score": float(score)})
        segmentation = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
        segm_records.append({**common, "segmentation": segmentation, "score": float(score)})
    return bbox_records, segm_records


# --------------------------------------------------------------------------------------------------------
# Result containers
# --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CategoryAP:
    """AP of one DF2 category (fractions); ``None`` when the category has no GT in the evaluated set."""

    category_id: int
    name: str
    AP: float | None
    AP50: float | None
    AP75: float | None


@dataclass(frozen=True)
class TaskMetrics:
    """COCOeval outcome for one iouType (``bbox`` or ``segm``).

    ``stats`` are pycocotools' 12 numbers unchanged (-1 = no GT in that area range); the named
    properties give the same values with ``None`` in place of -1. ``num_detections`` counts every record
    given, ``num_unscored`` those of them left out of scoring because their category is not in the ground
    truth (pycocotools only scores the GT's categories, e.g. a 91-class COCO model's unused ids).
    """

    iou_type: str
    stats: tuple[float, ...]
    per_category: tuple[CategoryAP, ...]
    num_detections: int
    summary: str
    num_unscored: int = 0

    def _stat(self, index: int) -> float | None:
        value = self.stats[index]
        return None if value < 0 else value

    @property
    def AP(self) -> float | None:
        return self._stat(0)

    @property
    def AP50(self) -> float | None:
        return self._stat(1)

    @property
    def AP75(self) -> float | None:
        return self._stat(2)

    @property
    def APs(self) -> float | None:
        return self._stat(3)

    @property
    def APm(self) -> float | None:
        return self._stat(4)

    @property
    def APl(self) -> float | None:
        return self._stat(5)

    def metrics(self) -> dict[str, float | None]:
        """All 12 stats by name, ``None`` where pycocotools reports -1."""
        return {name: self._stat(i) for i, name in enumerate(STAT_NAMES)}


@dataclass(frozen=True)
class EvalResult:
    """Box (``bbox``) and mask (``segm``) metrics of one evaluation run."""

    box: TaskMetrics
    mask: TaskMetrics
    num_images: int

    @property
    def summary(self) -> str:
        """pycocotools' printed summaries, box first."""
        return f"bbox\n{self.box.summary}\nsegm\n{self.mask.summary}"

    @property
    def is_df2(self) -> bool:
        """Whether the ground truth's categories are DF2's (so DF2's published results compare)."""
        return all(c.category_id in BY_ID and c.name == BY_ID[c.category_id].name for c in self.box.per_category)

    @property
    def title(self) -> str:
        return "DeepFashion2 evaluation" if self.is_df2 else "COCO-format evaluation"

    @property
    def unscored_note(self) -> str:
        """One sentence on the detections left out of scoring (category not in the GT); "" when none were."""
        if not (self.box.num_unscored or self.mask.num_unscored):
            return ""
        return (f"{self.box.num_unscored} box and {self.mask.num_unscored} mask detections of categories not in "
                "the ground truth's category list were left out of scoring, as pycocotools does.")

    def format(self) -> str:
        """Short console report: AP/AP50/AP75/APs/APm/APl in percent for box and mask."""
        names = ("AP", "AP50", "AP75", "APs", "APm", "APl")
        lines = [f"{self.title} on {self.num_images} images (COCO protocol, percent)",
                 "task  " + "".join(f"{n:>7}" for n in names)]
        for label, task in (("box", self.box), ("mask", self.mask)):
            lines.append(f"{label:<6}" + "".join(f"{format_percent(task.metrics()[n]):>7}" for n in names))
        if self.unscored_note:
            lines.append(self.unscored_note)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (fractions; ``null`` for undefined values)."""
        def task(t: TaskMetrics) -> dict[str, Any]:
            return {"metrics": t.metrics(), "stats": list(t.stats), "num_detections": t.num_detections,
                    "num_unscored": t.num_unscored, "per_category": [asdict(c) for c in t.per_category]}
        return {"protocol": "COCO bbox/segm, IoU .50:.05:.95, maxDets 100, areas from GT 'area'",
                "num_images": self.num_images, "box": task(self.box), "mask": task(self.mask)}


# --------------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------------

def load_ground_truth(gt: str | Path | COCO, *, df2_categories: bool = True) -> COCO:
    """Load and check a COCO-format GT file (DF2: the official converter's output); pass COCO through.

    ``df2_categories`` refuses category ids outside DF2's 1..13 (the attribute and confusion analyses need
    them); evaluation itself takes any category set, e.g. COCO's 80 for the pretraining config.
    """
    if isinstance(gt, COCO):
        coco, where = gt, "<ground truth>"
        _check_gt_dataset(coco.dataset, where)
    else:
        where = str(gt)
        try:
            dataset = json.loads(Path(gt).read_text("utf-8"))
        except OSError as err:
            raise AnnotationError(f"cannot read ground truth ({err.strerror})", path=where) from err
        except json.JSONDecodeError as err:
            raise AnnotationError(f"not valid JSON ({err.msg}, line {err.lineno})", path=where) from err
        if not isinstance(dataset, dict) or "images" not in dataset or "annotations" not in dataset:
            raise AnnotationError("expected a COCO object with 'images' and 'annotations'", path=where)
        _check_gt_dataset(dataset, where)  # before createIndex, which crashes on some of these
        coco = COCO()
        coco.dataset = dataset
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
    if not any(not ann.get("iscrowd") for ann in coco.dataset["annotations"]):  # COCOeval would give -1 for all
        raise AnnotationError(f"nothing to evaluate: no garments (non-crowd annotations) in its "
                              f"{len(coco.dataset['images'])} images", path=where, field="annotations")
    unknown = sorted(set(coco.getCatIds()) - set(BY_ID))
    if df2_categories and unknown:
        raise AnnotationError(f"category ids {unknown} are not DeepFashion2 categories (1..13)", path=where,
                              field="categories")
    return coco


def _check_gt_dataset(dataset: Mapping, where: str) -> None:
    """Raise AnnotationError naming the field for what pycocotools would crash on later (after inference)."""
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            problem = "missing field" if key not in dataset else f"expected a list, got {type(dataset[key]).__name__}"
            raise AnnotationError(problem, path=where, field=key)
    for key in ("images", "categories"):
        for i, entry in enumerate(dataset[key]):
            if not isinstance(entry, dict) or not is_int(entry.get("id")):
                raise AnnotationError("expected an object with an integer 'id'", path=where, field=f"{key}[{i}]")
    for i, ann in enumerate(dataset["annotations"]):
        if not isinstance(ann, dict):
            raise AnnotationError(f"expected an object, got {type(ann).__name__}", path=where,
                                  field=f"annotations[{i}]")
        for key in ("id", *_GT_ANNOTATION_KEYS):
            if key not in ann:
                raise AnnotationError("missing field", path=where, field=f"annotations[{i}].{key}")
        for key in ("id", "image_id", "category_id"):
            if not is_int(ann[key]):
                raise AnnotationError(f"expected an integer, got {ann[key]!r}", path=where,
                                      field=f"annotations[{i}].{key}")
        if ann["iscrowd"] not in (0, 1) or isinstance(ann["iscrowd"], (bool, float)):
            raise AnnotationError(f"expected 0 or 1, got {ann['iscrowd']!r}", path=where,
                                  field=f"annotations[{i}].iscrowd")
        if not is_box(ann["bbox"]):
            raise AnnotationError(f"expected [x, y, width, height] (4 finite numbers), got {ann['bbox']!r}",
                                  path=where, field=f"annotations[{i}].bbox")
        if not is_number(ann["area"]):
            raise AnnotationError(f"expected a finite number, got {ann['area']!r}", path=where,
                                  field=f"annotations[{i}].area")
        segmentation = ann["segmentation"]
        if isinstance(segmentation, dict):
            problem = rle_problem(segmentation)
        else:
            try:
                problem = None if coco_polygons(segmentation) else "no polygons (an empty list)"
            except ValueError as err:
                problem = str(err)
        if problem:
            raise AnnotationError(problem, path=where, field=f"annotations[{i}].segmentation")
    check_unique_ids(dataset, where)


def unscored_results(results: Sequence[Mapping], iou_type: str, gt: COCO, *,
                     path: str | Path | None = None) -> list[int]:
    """Indices of the records whose category is not in ``gt``, which COCOeval leaves out of scoring (it only
    scores the GT's categories); raise on a record pycocotools would crash on (not a list of objects, missing
    field or wrong type, unknown image). ``path``, the results file, is named in the errors."""
    if not isinstance(results, Sequence) or isinstance(results, (str, bytes)):
        raise FashionparseError(f"expected a list of {iou_type} records, got {type(results).__name__}", path=path,
                                field=f"{iou_type} results")
    image_ids, category_ids = set(gt.getImgIds()), set(gt.getCatIds())
    unscored = []
    for i, record in enumerate(results):
        if not isinstance(record, Mapping):
            raise FashionparseError(f"expected an object, got {type(record).__name__}", path=path,
                                    field=f"{iou_type} results[{i}]")
        for key in _RESULT_KEYS[iou_type]:
            if key not in record:
                raise FashionparseError("missing field", path=path, field=f"{iou_type} results[{i}].{key}")
            problem = _result_field_problem(key, record[key])
            if problem:
                raise FashionparseError(problem, path=path, field=f"{iou_type} results[{i}].{key}")
        if record["image_id"] not in image_ids:
            raise FashionparseError(f"image_id {record['image_id']} is not in the ground truth", path=path,
                                    field=f"{iou_type} results[{i}].image_id")
        if record["category_id"] not in category_ids:
            unscored.append(i)
    return unscored


def _result_field_problem(key: str, value: Any) -> str | None:
    """Why ``value`` is not a valid results-record ``key`` (None when it is)."""
    if key in ("image_id", "category_id"):
        return None if is_int(value) else f"expected an integer, got {value!r}"
    if key == "score":
        return None if is_number(value) else f"expected a finite number, got {value!r}"
    if key == "bbox":
        return None if is_box(value) else f"expected [x, y, width, height] (4 finite numbers), got {value!r}"
    return rle_problem(value, uncompressed=False)  # segmentation: loadRes takes compressed RLE only


def check_results(results: Sequence[Mapping], iou_type: str, gt: COCO, *, path: str | Path | None = None) -> None:
    """Reject records pycocotools would crash on or silently ignore (image or category not in ``gt``): the
    analyses, unlike the evaluation, have no place to count ignored records. ``path`` is named in the errors."""
    unscored = unscored_results(results, iou_type, gt, path=path)
    if unscored:
        i = unscored[0]
        raise FashionparseError(f"category_id {results[i]['category_id']} is not a ground-truth category",
                                path=path, field=f"{iou_type} results[{i}].category_id")


def load_detections(gt: COCO, results: Sequence[Mapping]) -> COCO:
    """``gt.loadRes`` on copies (it adds keys to each record); an empty COCO for no results, which loadRes rejects."""
    if results:
        return gt.loadRes([dict(r) for r in results])
    dt = COCO()
    dt.dataset = {"images": list(gt.dataset["images"]), "categories": copy.deepcopy(gt.dataset["categories"]),
                  "annotations": []}
    dt.createIndex()
    return dt


def _mean_precision(precision: np.ndarray) -> float | None:
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else None


def _per_category(evaluator: COCOeval) -> tuple[CategoryAP, ...]:
    """AP, AP50, AP75 per ground-truth category from ``eval['precision']`` [T, R, K, A, M] (all areas,
    maxDets 100); ``None`` for a category without ground truth."""
    precision = evaluator.eval["precision"]
    cat_ids = list(evaluator.params.catIds)
    out = []
    for k, category in enumerate(evaluator.cocoGt.loadCats(cat_ids)):
        p = precision[:, :, k, 0, -1]
        out.append(CategoryAP(category["id"], _display_name(category), _mean_precision(p),
                              _mean_precision(p[0]), _mean_precision(p[5])))
    return tuple(out)


def _display_name(category: Mapping) -> str:
    """DF2's readable name for a DF2 category record (the converter writes e.g. ``short_sleeved_shirt``),
    the record's own name for any other."""
    df2 = BY_ID.get(category["id"])
    return df2.name if df2 is not None and category.get("name") in (df2.coco_name, df2.name) else category["name"]


def _evaluate_task(gt: COCO, results: Sequence[Mapping], iou_type: str, unscored: set[int]) -> TaskMetrics:
    """pycocotools' evaluation of ``results`` under DF2's protocol, leaving out (and counting) the records at
    indices ``unscored`` (:func:`unscored_results`), which COCOeval would not score either."""
    scored = [r for i, r in enumerate(results) if i not in unscored]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, load_detections(gt, scored), iou_type)
        evaluator.params.imgIds = sorted(gt.getImgIds())
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    return TaskMetrics(iou_type=iou_type, stats=tuple(float(s) for s in evaluator.stats),
                       per_category=_per_category(evaluator), num_detections=len(results),
                       summary=summary.getvalue(), num_unscored=len(unscored))


def evaluate_results(gt: str | Path | COCO, bbox_results: Sequence[Mapping],
                     segm_results: Sequence[Mapping]) -> EvalResult:
    """Evaluate DF2 submission records against a COCO-format GT under DF2's protocol.

    The records are not modified. A ``COCO`` passed as ``gt`` is, as with any COCOeval 'segm' run: pycocotools
    replaces its annotations' polygons by RLE in place.
    """
    coco = load_ground_truth(gt, df2_categories=False)
    unscored_bbox, unscored_segm = [set(unscored_results(results, iou_type, coco))  # both checked before scoring
                                    for results, iou_type in ((bbox_results, "bbox"), (segm_results, "segm"))]
    return EvalResult(box=_evaluate_task(coco, bbox_results, "bbox", unscored_bbox),
                      mask=_evaluate_task(coco, segm_results, "segm", unscored_segm),
                      num_images=len(coco.getImgIds()))


# --------------------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------------------

def ours_as_published(result: EvalResult, label: str = "ours") -> PublishedResult:
    """This run as a comparison row (AP/AP50/AP75 of box and mask)."""
    def triple(t: TaskMetrics) -> APTriple:
        return APTriple(t.AP, t.AP50, t.AP75)
    return PublishedResult(method=label, training_data="", backbone="", box=triple(result.box),
                           mask=triple(result.mask), source=f"this evaluation ({result.num_images} images)")


def metrics_markdown(result: EvalResult, published: Sequence[PublishedResult] | None = None) -> str:
    """Results table (box/mask AP..APl), per-category table and, for DF2's categories, the comparison with
    published DF2 results."""
    lines = [f"# {result.title}", "",
             f"{result.num_images} images; COCO protocol (IoU .50:.05:.95, maxDets 100, area ranges from the "
             "GT `area` field). Values in percent; '–' = undefined (no GT in that range/category).", ""]
    if result.unscored_note:
        lines += [result.unscored_note, ""]
    lines += ["## Results", "", "| task | AP | AP50 | AP75 | APs | APm | APl |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, task in (("box", result.box), ("mask", result.mask)):
        values = (task.AP, task.AP50, task.AP75, task.APs, task.APm, task.APl)
        lines.append(f"| {name} | " + " | ".join(format_percent(v) for v in values) + " |")
    lines += ["", "## Per category", "",
              "| id | category | box AP | box AP50 | box AP75 | mask AP | mask AP50 | mask AP75 |",
              "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for box, mask in zip(result.box.per_category, result.mask.per_category):
        values = (box.AP, box.AP50, box.AP75, mask.AP, mask.AP50, mask.AP75)
        lines.append(f"| {box.category_id} | {box.name} | " + " | ".join(format_percent(v) for v in values) + " |")
    if result.is_df2:
        lines += ["", "## Comparison with published results", "",
                  comparison_table(ours_as_published(result), published)]
    return "\n".join(lines)


def write_eval_outputs(result: EvalResult, out_dir: str | Path, bbox_results: Sequence[Mapping],
                       segm_results: Sequence[Mapping]) -> dict[str, Path]:
    """Atomically write metrics.json, metrics.md, bbox_results.json and segm_results.json into ``out_dir``."""
    out_dir = Path(out_dir)
    paths = {name: out_dir / name for name in
             ("metrics.json", "metrics.md", "bbox_results.json", "segm_results.json")}
    atomic_write_json(paths["metrics.json"], result.to_dict(), indent=2)
    atomic_write_text(paths["metrics.md"], metrics_markdown(result))
    atomic_write_json(paths["bbox_results.json"], list(bbox_results))
    atomic_write_json(paths["segm_results.json"], list(segm_results))
    return paths


# --------------------------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------------------------

def run_inference(model: torch.nn.Module, dataset: torch.utils.data.Dataset, device: str | torch.device, *,
                  batch_size: int = 1, num_workers: int = 0, progress: bool = True,
                  mask_threshold: float = 0.5) -> tuple[list[dict], list[dict]]:
    """Run a torchvision-style detector over a map-style dataset and return DF2 submission records.

    Dataset items: ``(image float Tensor[3, H, W] in 0..1, target dict with "image_id")``; the model takes a
    list of images and returns one output dict per image (see ``to_coco_results``).
    """
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=num_workers, collate_fn=collate)
    model.eval()
    bbox_results: list[dict] = []
    segm_results: list[dict] = []
    with torch.inference_mode():
        for images, targets in tqdm(loader, desc="inference", unit="batch", disable=not progress):
            outputs = model([image.to(device) for image in images])
            for target, output in zip(targets, outputs):
                boxes, segms = to_coco_results(int(target["image_id"]), output, mask_threshold)
                bbox_results += boxes
                segm_results += segms
    return bbox_results, segm_results


def evaluate_model(model: torch.nn.Module, dataset: torch.utils.data.Dataset, gt_json: str | Path | COCO,
                   device: str | torch.device, out_dir: str | Path | None = None, *,
                   batch_size: int = 1, progress: bool = True) -> EvalResult:
    """Inference + DF2 evaluation; writes the report and submission files when ``out_dir`` is given."""
    coco = load_ground_truth(gt_json, df2_categories=False)  # fail on a bad GT before inference
    bbox_results, segm_results = run_inference(model, dataset, device, batch_size=batch_size, progress=progress)
    result = evaluate_results(coco, bbox_results, segm_results)
    if out_dir is not None:
        write_eval_outputs(result, out_dir, bbox_results, segm_results)
    return result
