"""Hand-made evaluated run folders for the analysis and report tests (no training involved).

A run folder has what ``fashionparse train`` writes: ``config.yaml``, ``metrics.jsonl``, ``eval/metrics.json``,
``eval/bbox_results.json``, ``eval/segm_results.json``; next to it a small validation set (COCO JSON with
DF2's extra fields ``source``/``scale``/``occlusion``/``zoom_in``/``viewpoint``, and plain images).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from fashionparse.categories import coco_categories
from fashionparse.config import dump_config, from_dict
from fashionparse.engine.evaluate import evaluate_results, to_coco_results, write_eval_outputs

H, W = 96, 128
Box = tuple[int, int, int, int]  # x1, y1, x2, y2

# image id -> (source, [(category, box, scale, occlusion, zoom_in, viewpoint)])
GT_ITEMS: dict[int, tuple[str, list[tuple[int, Box, int, int, int, int]]]] = {
    1: ("shop", [(1, (8, 8, 60, 50), 2, 1, 1, 2), (8, (70, 20, 120, 90), 3, 2, 1, 2)]),
    2: ("user", [(9, (10, 50, 60, 90), 2, 3, 2, 3), (2, (5, 2, 70, 45), 3, 1, 1, 2)]),
    3: ("user", [(11, (20, 5, 100, 90), 3, 1, 3, 1)]),
    4: ("shop", [(1, (30, 30, 50, 50), 1, 2, 1, 3), (7, (60, 50, 110, 90), 2, 1, 2, 2)]),
}

# image id -> [(category, score, box)]: true positives, a duplicate, confusions (long/short sleeve top,
# short/long sleeve dress), a poorly localized dress, a background detection and a missed small top.
GOOD_DETECTIONS: dict[int, list[tuple[int, float, Box]]] = {
    1: [(1, 0.95, (9, 9, 60, 50)), (8, 0.85, (70, 20, 120, 90)), (1, 0.55, (10, 10, 58, 48))],
    2: [(9, 0.90, (12, 52, 60, 88)), (1, 0.80, (5, 2, 70, 45))],
    3: [(10, 0.70, (20, 5, 100, 90)), (11, 0.60, (20, 55, 100, 90))],
    4: [(7, 0.90, (60, 50, 110, 90)), (5, 0.65, (0, 0, 20, 20))],
}
# A weaker run: fewer and less confident detections.
WEAK_DETECTIONS: dict[int, list[tuple[int, float, Box]]] = {
    1: [(1, 0.60, (12, 12, 60, 50)), (9, 0.70, (70, 20, 120, 90))],
    2: [(9, 0.50, (10, 40, 60, 90))],
    3: [(10, 0.80, (20, 5, 100, 90))],
    4: [(5, 0.90, (0, 0, 20, 20)), (7, 0.40, (62, 52, 110, 90))],
}

HISTORY = [{"iteration": i, "loss": 3.0 / (1 + i / 10), "loss_classifier": 1.0 / (1 + i / 10),
            "loss_box_reg": 0.8 / (1 + i / 20), "loss_mask": 0.7 / (1 + i / 15), "loss_objectness": 0.3 / (1 + i),
            "loss_rpn_box_reg": 0.2 / (1 + i / 5), "lr": 0.01 * min(1.0, (i + 1) / 10) * (0.1 if i >= 30 else 1.0),
            "stage": 0 if i < 20 else 1} for i in range(0, 40, 2)]


def gt_dataset() -> dict:
    """COCO GT as ``fashionparse convert`` writes it: rectangle polygons, area = box area, DF2 attributes."""
    images, annotations = [], []
    for image_id, (source, items) in GT_ITEMS.items():
        images.append({"id": image_id, "file_name": f"{image_id:06d}.png", "height": H, "width": W})
        for category_id, (x1, y1, x2, y2), scale, occlusion, zoom_in, viewpoint in items:
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]], "source": source, "scale": scale,
                "occlusion": occlusion, "zoom_in": zoom_in, "viewpoint": viewpoint,
            })
    return {"images": images, "annotations": annotations, "categories": coco_categories()}


def detection_records(detections: dict[int, list[tuple[int, float, Box]]]) -> tuple[list[dict], list[dict]]:
    """DF2 bbox and segm records through the project's own writer; each mask fills its box."""
    bbox, segm = [], []
    for image_id, dets in detections.items():
        masks = torch.zeros((len(dets), 1, H, W))
        for i, (_, _, (x1, y1, x2, y2)) in enumerate(dets):
            masks[i, 0, y1:y2, x1:x2] = 0.9
        output = {"boxes": torch.tensor([d[2] for d in dets], dtype=torch.float32).reshape(-1, 4),
                  "labels": torch.tensor([d[0] for d in dets]), "scores": torch.tensor([d[1] for d in dets]),
                  "masks": masks}
        b, s = to_coco_results(image_id, output)
        bbox += b
        segm += s
    return bbox, segm


def make_validation_set(root: Path) -> tuple[Path, Path]:
    """Write the GT JSON and plain grey images; returns (gt json, image folder)."""
    image_dir = root / "validation" / "image"
    image_dir.mkdir(parents=True, exist_ok=True)
    for image_id in GT_ITEMS:
        Image.new("RGB", (W, H), (128, 128, 128)).save(image_dir / f"{image_id:06d}.png")
    gt_json = root / "validation.json"
    gt_json.write_text(json.dumps(gt_dataset()))
    return gt_json, image_dir


def make_run(root: Path, name: str, detections: dict[int, list[tuple[int, float, Box]]], gt_json: Path,
             image_dir: Path, *, attention: str = "se", history: bool = True) -> Path:
    """A run folder as training leaves it (config, log with one cut-off last line, evaluation outputs)."""
    run = root / name
    run.mkdir(parents=True)
    cfg = from_dict({"model": {"attention": attention, "depth": 18},
                     "data": {"val_annotations": str(gt_json), "val_images": str(image_dir)},
                     "train": {"output_dir": str(run)}})
    (run / "config.yaml").write_text(dump_config(cfg))
    if history:
        lines = [json.dumps(r) for r in HISTORY] + ['{"iteration": 40, "loss": 0.']
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    bbox, segm = detection_records(detections)
    write_eval_outputs(evaluate_results(gt_json, bbox, segm), run / "eval", bbox, segm)
    return run
