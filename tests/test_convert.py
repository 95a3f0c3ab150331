"""DF2 -> COCO converter: a hand-computed record, pycocotools masks and evaluation, ids and ordering."""

from __future__ import annotations

import contextlib
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from df2_fixtures import (
    EXAMPLE_SIZE, SHORT_SLEEVE_TOP, SKIRT, example_annotation, image_path, make_annotation, make_item, write_split,
)
from PIL import Image, ImageDraw
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fashionparse.categories import coco_categories
from fashionparse.data.convert import convert_split, records_to_coco
from fashionparse.data.df2 import read_split
from fashionparse.errors import AnnotationError


# pycocotools 2.0.11 itself triggers this NumPy 2 deprecation inside annToMask.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def convert(root: Path, out: Path, **kw):
    return convert_split(root, out, workers=1, progress=False, **kw)


@pytest.fixture
def example(tmp_path: Path) -> tuple[Path, dict]:
    """The #4 annotation as image 000007 (640x480), converted."""
    root = write_split(tmp_path / "split", {7: example_annotation()}, size=EXAMPLE_SIZE)
    out = tmp_path / "out" / "coco.json"
    summary = convert(root, out)
    assert (summary.images, summary.annotations, summary.skipped_images, summary.skipped_items) == (1, 2, 0, 0)
    return out, json.loads(out.read_text())


def test_matches_official_converter_by_hand(example: tuple[Path, dict]) -> None:
    _, coco = example
    assert list(coco) == ["info", "licenses", "images", "annotations", "categories"]
    assert coco["info"] == {} and coco["licenses"] == []
    assert coco["categories"] == coco_categories() and len(coco["categories"]) == 13
    assert coco["images"] == [{"coco_url": "", "date_captured": "", "file_name": "000007.jpg", "flickr_url": "",
                               "id": 7, "license": 0, "width": 640, "height": 480}]

    # Skirt: slots 182..189 of the 294-vector (reference §1 table) -> values 546..569.
    skirt_kp = [0.0] * 882
    skirt_kp[546:570] = [237.0, 160.0, 1.0, 378.0, 153.0, 2.0, 461.0, 92.0, 1.0, 247.0, 309.0, 2.0,
                         292.0, 420.0, 2.0, 440.0, 428.0, 2.0, 535.0, 348.0, 2.0, 519.0, 214.0, 2.0]
    # Short sleeve top: slots 0..24; landmarks 3, 6, 7 set -> values 6..8 and 15..20.
    top_kp = [0.0] * 882
    top_kp[6:9] = [94.0, 58.0, 2.0]
    top_kp[15:21] = [180.0, 86.0, 2.0, 203.0, 173.0, 1.0]
    expected = [
        {"area": 316 * 369, "bbox": [227, 86, 316, 369], "category_id": 9, "id": 1, "pair_id": 1811, "image_id": 7,
         "iscrowd": 0, "style": 1, "num_keypoints": 8, "keypoints": skirt_kp,
         "segmentation": SKIRT["segmentation"],
         "source": "shop", "scale": 2, "occlusion": 2, "zoom_in": 1, "viewpoint": 2},
        {"area": 495 * 179, "bbox": [0, 0, 495, 179], "category_id": 1, "id": 2, "pair_id": 1811, "image_id": 7,
         "iscrowd": 0, "style": 0, "num_keypoints": 3, "keypoints": top_kp,
         "segmentation": SHORT_SLEEVE_TOP["segmentation"],
         "source": "shop", "scale": 2, "occlusion": 1, "zoom_in": 3, "viewpoint": 2},
    ]
    for got, want in zip(coco["annotations"], expected, strict=True):
        assert list(got) == list(want)  # official field order, then the extra analysis fields
        for key in want:
            assert got[key] == want[key], key
        assert all(isinstance(v, float) for v in got["keypoints"])  # official writes np.zeros(...).tolist()


def _rasterize(polygons: list[list[float]], width: int, height: int) -> np.ndarray:
    """Union of the polygons drawn with PIL (independent of pycocotools' rasterizer); (H, W) uint8."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        draw.polygon(poly, fill=1, outline=1)
    return np.asarray(canvas)


def test_pycocotools_loads_and_masks_match(example: tuple[Path, dict]) -> None:
    out, _ = example
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(out))
    assert coco.getImgIds() == [7] and sorted(coco.getCatIds()) == list(range(1, 14))
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[7])):
        mask = coco.annToMask(ann)
        assert mask.shape == (480, 640)
        reference = _rasterize(ann["segmentation"], 640, 480)
        iou = np.logical_and(mask, reference).sum() / np.logical_or(mask, reference).sum()
        assert iou > 0.98, (ann["id"], iou)  # a 3 px shift gives ~0.96
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        assert xs.min() >= x - 1 and xs.max() <= x + w and ys.min() >= y - 1 and ys.max() <= y + h


def test_cocoeval_gt_as_detections_scores_one(example: tuple[Path, dict]) -> None:
    out, coco_json = example
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(out))
        for iou_type in ("bbox", "segm"):
            dets = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                     "segmentation": a["segmentation"], "score": 1.0} for a in coco_json["annotations"]]
            ev = COCOeval(gt, gt.loadRes(dets), iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            assert ev.stats[0] == pytest.approx(1.0), iou_type


def test_ids_run_over_images_then_item_number(tmp_path: Path) -> None:
    def item(n: int) -> dict:
        return make_item(1 + n % 13, (n, n, n + 10, n + 10))  # x1 encodes the item number

    big = {f"item{n}": item(n) for n in range(1, 13)}
    keys = list(big)
    random.Random(0).shuffle(keys)  # file key order must not matter (item10 vs item2)
    anno3 = {"source": "user", "pair_id": 3, **{k: big[k] for k in keys}}
    annos = {12: make_annotation(item(1), pair_id=12), 3: anno3,
             7: make_annotation(item(1), item(2), source="shop", pair_id=7)}
    root = write_split(tmp_path / "split", annos, size=(64, 48))
    out = tmp_path / "coco.json"
    convert(root, out)
    coco = json.loads(out.read_text())
    assert [img["id"] for img in coco["images"]] == [3, 7, 12]
    got = [(a["id"], a["image_id"], a["bbox"][0], a["pair_id"]) for a in coco["annotations"]]
    expected = ([(n, 3, n, 3) for n in range(1, 13)] + [(13, 7, 1, 7), (14, 7, 2, 7), (15, 12, 1, 12)])
    assert got == expected


def test_stream_equals_in_memory_dict(tmp_path: Path) -> None:
    annos = {i: make_annotation(*[make_item(1 + (i * k) % 13, (k, k, 30, 30), visible=range(k + 1))
                                  for k in range(1, 1 + i % 4)], pair_id=i) for i in range(1, 9)}
    root = write_split(tmp_path / "split", annos, size=(64, 48))
    out = tmp_path / "coco.json"
    convert(root, out)
    records = read_split(root, workers=1, progress=False).records
    text = out.read_text()
    assert text == json.dumps(records_to_coco(records))  # byte-identical to json.dump of the whole dict
    assert json.loads(text)["annotations"][0]["keypoints"][0] == 0.0


def test_skipped_are_counted_and_strict_writes_nothing(tmp_path: Path) -> None:
    bad_item = make_item(2, (1, 1, 20, 20))
    bad_item["category_name"] = "skirt"
    annos = {1: make_annotation(make_item(1, (1, 1, 20, 20)), bad_item), 2: make_annotation(make_item(3)),
             3: make_annotation(make_item(4))}
    root = write_split(tmp_path / "split", annos, size=(64, 48))
    image_path(root, 3).write_bytes(b"junk")
    out = tmp_path / "coco.json"
    summary = convert_split(root, out, workers=2, progress=False)
    assert (summary.images, summary.annotations, summary.skipped_images, summary.skipped_items) == (2, 2, 1, 1)
    assert "2 images, 2 annotations; skipped 1 images, 1 items" in str(summary)
    coco = json.loads(out.read_text())
    assert [(a["image_id"], a["category_id"]) for a in coco["annotations"]] == [(1, 1), (2, 3)]

    strict_out = tmp_path / "strict.json"
    with pytest.raises(AnnotationError, match="item2.category_name"):
        convert(root, strict_out, strict=True)
    assert not strict_out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["coco.json", "split"]


def test_short_polygon_dropped_item_converted(tmp_path: Path) -> None:
    item = make_item(3, (10, 5, 40, 30))
    item["segmentation"].append([12, 6, 30, 6])  # 2 points: the official script copies it, we drop it
    root = write_split(tmp_path / "split", {5: make_annotation(item)}, size=(64, 48))
    out = tmp_path / "coco.json"
    summary = convert(root, out)
    assert (summary.annotations, summary.skipped_items, summary.report.dropped_polygons) == (1, 0, 1)
    assert "skipped 0 images, 0 items, 1 polygons (1 problems)" in str(summary)
    (ann,) = json.loads(out.read_text())["annotations"]
    assert ann["segmentation"] == [[10, 5, 40, 5, 40, 30, 10, 30, 10, 5]]
    assert (ann["category_id"], ann["bbox"], ann["area"]) == (3, [10, 5, 30, 25], 750)
