"""Galleries: ground truth (left) against prediction (right) overlays, chosen automatically.

Three kinds: per attribute condition (the images most made of items in that subset), per TIDE error type
(the most confident errors of that type, the largest missed items) and the worst image of each category
(most missed items plus false positives). Overlays are drawn by ``fashionparse.visualize`` (masks, boxes,
names, scores, one colour per category) and kept as downscaled JPEG bytes, ready to embed in a page.
Images that cannot be read are left out and counted in the gallery's note.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from tqdm import tqdm

from fashionparse.analysis.errors import ERROR_KINDS, Confusion, ErrorCase, TideSummary
from fashionparse.analysis.subsets import Subset
from fashionparse.categories import BY_ID
from fashionparse.data.dataset import CocoInstanceDataset
from fashionparse.errors import AnnotationError, FashionparseError
from fashionparse.visualize import draw_ground_truth_vs_prediction


@dataclass(frozen=True)
class GalleryEntry:
    """One overlay: ``jpeg`` holds the encoded picture."""

    image_id: int
    caption: str
    jpeg: bytes


@dataclass(frozen=True)
class Gallery:
    """A titled row of overlays; ``note`` says why it has fewer than asked for (or is empty)."""

    title: str
    entries: tuple[GalleryEntry, ...]
    note: str = ""


def pair_results(bbox_results: Sequence[Mapping],
                 segm_results: Sequence[Mapping]) -> list[tuple[Mapping, Mapping | None]]:
    """Pair each bbox record with its segm record (DF2 writers emit them in the same order); no segm -> None."""
    if not segm_results:
        return [(record, None) for record in bbox_results]
    if len(segm_results) != len(bbox_results):
        raise FashionparseError(f"{len(bbox_results)} bbox records but {len(segm_results)} segm records; "
                                "they must describe the same detections in the same order", field="segm results")
    for i, (box, segm) in enumerate(zip(bbox_results, segm_results)):
        if any(box[key] != segm[key] for key in ("image_id", "category_id", "score")):
            raise FashionparseError("bbox and segm records differ in image_id, category_id or score",
                                    field=f"segm results[{i}]")
    return list(zip(bbox_results, segm_results))


class OverlayRenderer:
    """Draws GT-versus-prediction overlays of a validation set and encodes them as JPEG."""

    def __init__(self, dataset: CocoInstanceDataset, bbox_results: Sequence[Mapping],
                 segm_results: Sequence[Mapping], *, score_threshold: float = 0.5, max_width: int = 960,
                 quality: int = 85) -> None:
        self.dataset = dataset
        self.score_threshold = score_threshold
        self.max_width = max_width
        self.quality = quality
        self._index = {image_id: i for i, image_id in enumerate(dataset.ids)}
        self._detections: dict[int, list[tuple[Mapping, Mapping | None]]] = defaultdict(list)
        for box, segm in pair_results(bbox_results, segm_results):
            self._detections[box["image_id"]].append((box, segm))

    def prediction(self, image_id: int) -> dict[str, torch.Tensor]:
        """The image's detections as a Mask R-CNN output: boxes xyxy [N, 4], labels, scores [N], masks [N, 1, H, W]."""
        pairs = self._detections.get(image_id, [])
        xywh = torch.tensor([box["bbox"] for box, _ in pairs], dtype=torch.float32).reshape(-1, 4)
        out = {"boxes": torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1),
               "labels": torch.tensor([box["category_id"] for box, _ in pairs], dtype=torch.int64),
               "scores": torch.tensor([box["score"] for box, _ in pairs], dtype=torch.float32)}
        if pairs and all(segm is not None for _, segm in pairs):
            masks = mask_utils.decode([dict(segm["segmentation"]) for _, segm in pairs])  # [H, W, N]
            out["masks"] = torch.from_numpy(np.ascontiguousarray(masks.transpose(2, 0, 1)))[:, None].float()
        return out

    def render(self, image_id: int, score_threshold: float | None = None) -> torch.Tensor:
        """uint8 [3, H, 2W + gap]: GT left, detections with score >= the threshold right."""
        if image_id not in self._index:
            raise AnnotationError(f"image {image_id} is not in the ground truth", path=self.dataset.annotations)
        image, target = self.dataset[self._index[image_id]]
        threshold = self.score_threshold if score_threshold is None else score_threshold
        return draw_ground_truth_vs_prediction(image, target, self.prediction(image_id), threshold)

    def entry(self, image_id: int, caption: str, score_threshold: float | None = None) -> GalleryEntry:
        picture = Image.fromarray(self.render(image_id, score_threshold).permute(1, 2, 0).numpy())
        picture.thumbnail((self.max_width, self.max_width))
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=self.quality)
        return GalleryEntry(image_id, caption, buffer.getvalue())


def _gallery(renderer: OverlayRenderer, title: str, picks: Sequence[tuple[int, str, float | None]],
             empty_note: str) -> Gallery:
    """Render ``(image_id, caption, score threshold)`` picks; unreadable images are counted in the note."""
    entries, failures = [], []
    for image_id, caption, threshold in picks:
        try:
            entries.append(renderer.entry(image_id, caption, threshold))
        except AnnotationError as err:
            failures.append(str(err))
    note = "" if picks else empty_note
    if failures:
        note = f"{len(failures)} image(s) left out, first: {failures[0]}"
    return Gallery(title, tuple(entries), note)


def condition_images(coco: COCO, subset: Subset, count: int) -> list[tuple[int, int, int]]:
    """Images best showing a subset: ``(image_id, items in subset, items)``, ranked by the share of their items in
    the subset, then the number, then the id."""
    ranked = []
    for image_id in coco.getImgIds():
        anns = coco.imgToAnns.get(image_id, [])
        inside = sum(1 for ann in anns if subset.contains(ann))
        if inside:
            ranked.append((image_id, inside, len(anns)))
    ranked.sort(key=lambda r: (-r[1] / r[2], -r[1], r[0]))
    return ranked[:count]


def condition_galleries(renderer: OverlayRenderer, subsets: Sequence[Subset], count: int = 3, *,
                        progress: bool = False) -> list[Gallery]:
    """One gallery per subset (attribute condition or source)."""
    coco = renderer.dataset.coco
    out = []
    for subset in tqdm(subsets, desc="condition galleries", unit="gallery", disable=not progress):
        picks = [(image_id, f"image {image_id}: {inside} of {total} items {subset.label}", None)
                 for image_id, inside, total in condition_images(coco, subset, count)]
        out.append(_gallery(renderer, subset.label, picks, f"no item is {subset.label}"))
    return out


def _describe(case: ErrorCase, coco: COCO) -> str:
    name = BY_ID[case.category_id].name
    if case.kind == "missed":
        area = coco.anns[case.gt_ann_id]["area"] if case.gt_ann_id in coco.anns else float("nan")
        return f"image {case.image_id}: {name} item missed (box area {area:.0f} px²)"
    head = f"image {case.image_id}: {name} {case.score:.2f}"
    if case.kind == "classification":
        return f"{head} on a {BY_ID[case.gt_category_id].name} item"
    if case.kind == "localization":
        return f"{head}, IoU {case.iou:.2f} with its item"
    return {"both": f"{head}, wrong category and poorly localized",
            "duplicate": f"{head} on an item already detected",
            "background": f"{head} on no item"}[case.kind]


def failure_cases(tide: TideSummary, kind: str, count: int, coco: COCO) -> list[ErrorCase]:
    """The ``count`` most telling errors of a kind, one per image: highest score, or largest missed item."""
    cases = [c for c in tide.cases if c.kind == kind]
    if kind == "missed":
        cases.sort(key=lambda c: (-coco.anns.get(c.gt_ann_id, {}).get("area", 0), c.image_id))
    else:
        cases.sort(key=lambda c: (-(c.score or 0.0), c.image_id))
    picked, seen = [], set()
    for case in cases:
        if case.image_id not in seen:
            picked.append(case)
            seen.add(case.image_id)
        if len(picked) == count:
            break
    return picked


def failure_galleries(renderer: OverlayRenderer, tide: TideSummary, count: int = 3) -> list[Gallery]:
    """One gallery per TIDE error kind; the right panel shows every detection at least as confident as the error."""
    coco = renderer.dataset.coco
    out = []
    for kind in ERROR_KINDS:
        picks = [(c.image_id, _describe(c, coco),
                  None if c.score is None else min(renderer.score_threshold, c.score))
                 for c in failure_cases(tide, kind, count, coco)]
        out.append(_gallery(renderer, kind, picks, "no error of this kind"))
    return out


def worst_gallery(renderer: OverlayRenderer, confusion: Confusion) -> Gallery:
    """The worst image of each category (``Confusion.worst``), at the confusion matrix's score threshold."""
    picks = []
    for category_id, images in sorted(confusion.worst.items()):
        worst = images[0]
        picks.append((worst.image_id, f"{BY_ID[category_id].name}, image {worst.image_id}: {worst.missed} missed, "
                                      f"{worst.false_positives} false positive(s)", confusion.score_threshold))
    return _gallery(renderer, "worst image per category", picks, "no category has errors")
