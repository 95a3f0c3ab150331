"""Time of the report's analysis steps on a fake DF2-sized validation set, extrapolated to the real one.

Builds N fake images (DF2-like 1.6 items per image, 8-point polygons, random attributes) and detections
(a jittered copy of each item, some with a wrong category, plus background boxes; ~7 per image, as a
detector at score >= 0.05 gives), then times ``evaluate_subsets`` (15 subsets, box and mask),
``tide_errors`` (box and mask) and ``confusion_analysis``, and scales to the 32,153 validation images.

    .venv/bin/python benchmarks/bench_analysis.py [--n 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import time

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from fashionparse.analysis.errors import confusion_analysis, tide_errors
from fashionparse.analysis.subsets import evaluate_subsets
from fashionparse.categories import coco_categories

VAL_IMAGES = 32_153  # released validation split (reference §5)
H, W = 600, 480


def _polygon(x1: float, y1: float, w: float, h: float) -> list[float]:
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    cx, cy = x1 + w / 2, y1 + h / 2
    return np.stack([cx + 0.5 * w * np.cos(angles), cy + 0.5 * h * np.sin(angles)], 1).ravel().tolist()


def fake_split(n: int, seed: int = 0) -> tuple[COCO, list[dict], list[dict]]:
    rng = np.random.default_rng(seed)
    images, annotations, bbox, segm = [], [], [], []
    for image_id in range(1, n + 1):
        images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "height": H, "width": W})
        boxes = []
        for _ in range(rng.choice([1, 2, 3], p=[0.5, 0.4, 0.1])):
            w, h = rng.uniform(60, 400), rng.uniform(60, 500)
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            category = int(rng.integers(1, 14))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
                                "segmentation": [_polygon(x, y, w, h)], "source": str(rng.choice(["shop", "user"])),
                                **{a: int(rng.integers(1, 4)) for a in ("scale", "occlusion", "zoom_in", "viewpoint")}})
            boxes.append((category, [x, y, w, h]))
        for _ in range(3):
            w, h = rng.uniform(30, 200), rng.uniform(30, 200)
            boxes.append((int(rng.integers(1, 14)), [rng.uniform(0, W - w), rng.uniform(0, H - h), w, h]))
        for category, (x, y, w, h) in boxes:
            for _ in range(2):
                jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
                box = [max(0.0, x + jitter[0]), max(0.0, y + jitter[1]), w + jitter[2], h + jitter[3]]
                label = category if rng.random() > 0.15 else int(rng.integers(1, 14))
                score = float(rng.uniform(0.05, 1.0))
                rle = mask_utils.merge(mask_utils.frPyObjects([_polygon(*box)], H, W))
                record = {"image_id": image_id, "category_id": label, "score": score}
                bbox.append({**record, "bbox": box})
                segm.append({**record, "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()}})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": coco_categories()}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco, bbox, segm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    coco, bbox, segm = fake_split(args.n)
    steps = {
        "AP by subset (15 subsets, box+mask)": lambda: evaluate_subsets(coco, bbox, segm, progress=False),
        "TIDE box": lambda: tide_errors(coco, bbox, "bbox"),
        "TIDE mask": lambda: tide_errors(coco, segm, "segm"),
        "confusion + worst images": lambda: confusion_analysis(coco, bbox),
    }
    print(f"{args.n} images, {len(coco.dataset['annotations'])} items, {len(bbox)} detections; "
          f"{platform.processor() or platform.machine()}, 1 process")
    print(f"{'step':<38}{'seconds':>10}{'s / 1000 images':>18}{'DF2 val (est. min)':>20}")
    for name, step in steps.items():
        started = time.perf_counter()
        step()
        seconds = time.perf_counter() - started
        print(f"{name:<38}{seconds:>10.1f}{1000 * seconds / args.n:>18.2f}"
              f"{seconds / args.n * VAL_IMAGES / 60:>20.1f}")


if __name__ == "__main__":
    main()
