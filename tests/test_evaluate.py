"""DF2 evaluation: parity with direct pycocotools, hand-computed cases, submission format, reports."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from fashionparse.categories import CATEGORIES, coco_categories
from fashionparse.engine.evaluate import (
    check_results,
    evaluate_model,
    evaluate_results,
    load_ground_truth,
    metrics_markdown,
    run_inference,
    to_coco_results,
    write_eval_outputs,
)
from fashionparse.engine.published import APTriple, PublishedResult, comparison_table, load_published
from fashionparse.errors import AnnotationError, FashionparseError

FIXTURES = Path("/work/shared/fixtures/deepfashion2_official")
H, W = 48, 64


def _rect_polygon(x1: float, y1: float, x2: float, y2: float) -> list[float]:
    return [x1, y1, x2, y1, x2, y2, x1, y2]


def _gt_dataset(items: dict[int, list[tuple[int, tuple[float, float, float, float]]]],
                sizes: dict[int, tuple[int, int]] | None = None) -> dict:
    """COCO GT as DF2's converter writes it: rectangle polygons, area = box area, iscrowd 0."""
    images, annotations = [], []
    for image_id, objects in items.items():
        h, w = (sizes or {}).get(image_id, (H, W))
        images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "height": h, "width": w})
        for category_id, (x1, y1, x2, y2) in objects:
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                "segmentation": [_rect_polygon(x1, y1, x2, y2)],
            })
    return {"images": images, "annotations": annotations, "categories": coco_categories()}


def _write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def _output(detections: list[tuple[int, float, tuple[int, int, int, int]]], h: int = H, w: int = W) -> dict:
    """Mask R-CNN-style output: (label, score, integer xyxy box); mask = box interior with probability 0.9."""
    masks = torch.full((len(detections), 1, h, w), 0.1)
    for i, (_, _, (x1, y1, x2, y2)) in enumerate(detections):
        masks[i, 0, y1:y2, x1:x2] = 0.9
    return {
        "boxes": torch.tensor([d[2] for d in detections], dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor([d[0] for d in detections], dtype=torch.int64),
        "scores": torch.tensor([d[1] for d in detections], dtype=torch.float32),
        "masks": masks,
    }


def _direct_cocoeval(gt_file: Path, res_file: Path, iou_type: str) -> COCOeval:
    """The official way: COCO(gt), loadRes(file), COCOeval with imgIds = sorted GT ids."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        dt = gt.loadRes(str(res_file))
        ev = COCOeval(gt, dt, iou_type)
        ev.params.imgIds = sorted(gt.getImgIds())
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


# GT with a long tail: three images, categories 1, 7, 8 and 11 in small, medium and large sizes.
SIZES = {1: (H, W), 2: (H, W), 3: (120, 160)}
GT_ITEMS = {
    1: [(1, (4, 4, 30, 40)), (8, (34, 10, 60, 46))],
    2: [(1, (10, 2, 50, 30)), (7, (12, 30, 40, 46))],
    3: [(11, (0, 0, 150, 120)), (1, (50, 25, 90, 55))],
}
# Predictions with a range of overlaps, a confusion, duplicates and background false positives.
PREDICTIONS = {
    1: [(1, 0.95, (5, 5, 30, 40)), (8, 0.80, (30, 12, 60, 44)), (1, 0.40, (34, 10, 60, 46)),
        (8, 0.30, (0, 0, 20, 20))],
    2: [(1, 0.90, (10, 6, 44, 30)), (7, 0.70, (14, 32, 40, 46)), (1, 0.20, (12, 4, 48, 28))],
    3: [(11, 0.85, (5, 0, 140, 120)), (1, 0.60, (60, 35, 100, 65)), (9, 0.50, (0, 75, 50, 120))],
}


@pytest.fixture()
def scenario(tmp_path: Path) -> dict:
    gt_file = _write_json(tmp_path / "gt.json", _gt_dataset(GT_ITEMS, SIZES))
    bbox, segm = [], []
    for image_id, detections in PREDICTIONS.items():
        b, s = to_coco_results(image_id, _output(detections, *SIZES[image_id]))
        bbox += b
        segm += s
    return {"gt": gt_file, "bbox": bbox, "segm": segm,
            "bbox_file": _write_json(tmp_path / "bbox.json", bbox),
            "segm_file": _write_json(tmp_path / "segm.json", segm)}


def test_matches_direct_pycocotools(scenario: dict) -> None:
    result = evaluate_results(scenario["gt"], scenario["bbox"], scenario["segm"])
    for task, iou_type, res_file in ((result.box, "bbox", scenario["bbox_file"]),
                                     (result.mask, "segm", scenario["segm_file"])):
        ev = _direct_cocoeval(scenario["gt"], res_file, iou_type)
        assert task.stats == tuple(float(s) for s in ev.stats)
        assert task.AP == ev.stats[0] and task.AP75 == ev.stats[2] and task.APl == ev.stats[5]
        assert all(0.0 < v < 1.0 for v in task.stats[:6])  # every range is populated and non-trivial
        precision = ev.eval["precision"]
        for cat in task.per_category:
            if cat.category_id not in GT_ITEMS_CATEGORIES:
                assert (cat.AP, cat.AP50, cat.AP75) == (None, None, None)
                continue
            k = ev.params.catIds.index(cat.category_id)
            p = precision[:, :, k, 0, -1]
            assert cat.AP == pytest.approx(np.mean(p[p > -1]), abs=0)
            assert cat.AP50 == pytest.approx(np.mean(p[0][p[0] > -1]), abs=0)
            assert cat.AP75 == pytest.approx(np.mean(p[5][p[5] > -1]), abs=0)
    assert result.num_images == 3
    assert "Average Precision" in result.box.summary and "Average Precision" in result.mask.summary
    # the caller's records are not modified by loadRes
    assert set(scenario["segm"][0]) == {"image_id", "category_id", "segmentation", "score"}


GT_ITEMS_CATEGORIES = {c for objects in GT_ITEMS.values() for c, _ in objects}


def test_per_category_names_and_order(scenario: dict) -> None:
    result = evaluate_results(scenario["gt"], scenario["bbox"], scenario["segm"])
    assert [(c.category_id, c.name) for c in result.mask.per_category] == [(c.id, c.name) for c in CATEGORIES]


def test_perfect_predictions_give_ap_one(tmp_path: Path) -> None:
    gt_file = _write_json(tmp_path / "gt.json", _gt_dataset(GT_ITEMS, SIZES))
    bbox, segm = [], []
    for image_id, objects in GT_ITEMS.items():
        b, s = to_coco_results(image_id, _output([(c, 0.9, box) for c, box in objects], *SIZES[image_id]))
        bbox += b
        segm += s
    result = evaluate_results(gt_file, bbox, segm)
    for task in (result.box, result.mask):
        assert [task.AP, task.AP50, task.AP75] == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)
        for cat in task.per_category:
            values = [cat.AP, cat.AP50, cat.AP75]
            if cat.category_id in GT_ITEMS_CATEGORIES:
                assert values == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)
            else:
                assert values == [None, None, None]


def test_iou_exactly_0_6_is_a_match_up_to_threshold_0_6(tmp_path: Path) -> None:
    """GT 10x10 box, prediction its top 6 rows: IoU = 60/100 = 0.6 (box and mask).

    COCOeval matches when IoU >= t, so the detection is a TP at t = .50, .55, .60 (precision 1 at every
    recall level) and a FP at the 7 higher thresholds: AP = 3/10, AP50 = 1, AP75 = 0. The GT area (100)
    is small, so APs = AP and APm = APl are undefined (-1 in pycocotools).
    """
    gt_file = _write_json(tmp_path / "gt.json", _gt_dataset({1: [(4, (0, 0, 10, 10))]}))
    bbox, segm = to_coco_results(1, _output([(4, 0.8, (0, 0, 10, 6))]))
    gt_rle = mask_utils.merge(mask_utils.frPyObjects([_rect_polygon(0, 0, 10, 10)], H, W))
    assert mask_utils.iou([segm[0]["segmentation"]], [gt_rle], [0])[0, 0] == 0.6
    result = evaluate_results(gt_file, bbox, segm)
    for task in (result.box, result.mask):
        assert task.AP == pytest.approx(0.3, abs=1e-12)
        assert [task.AP50, task.AP75] == pytest.approx([1.0, 0.0], abs=1e-12)
        assert task.APs == pytest.approx(0.3, abs=1e-12)
        assert task.APm is None and task.APl is None and task.stats[4] == -1.0
        assert task.per_category[3].AP == pytest.approx(0.3, abs=1e-12)


def test_empty_predictions_give_zero_ap(tmp_path: Path) -> None:
    gt_file = _write_json(tmp_path / "gt.json", _gt_dataset(GT_ITEMS, SIZES))
    result = evaluate_results(gt_file, [], [])
    for task in (result.box, result.mask):
        assert task.AP == 0.0 and task.AP50 == 0.0 and task.num_detections == 0
        present = [c for c in task.per_category if c.category_id in GT_ITEMS_CATEGORIES]
        assert present and all(c.AP == 0.0 for c in present)


def test_to_coco_results_round_trip() -> None:
    generator = torch.Generator().manual_seed(0)
    n, h, w = 4, 37, 53
    xy = torch.rand(n, 2, generator=generator) * 20
    boxes = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=generator) * 20], dim=1)
    output = {"boxes": boxes, "labels": torch.tensor([1, 13, 7, 7]), "scores": torch.tensor([0.9, 0.8, 0.5, 0.1]),
              "masks": torch.rand(n, 1, h, w, generator=generator)}
    bbox, segm = to_coco_results(42, output, mask_threshold=0.6)
    assert len(bbox) == len(segm) == n
    for i in range(n):
        x1, y1, x2, y2 = boxes[i].tolist()
        assert bbox[i]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1e-5)
        assert bbox[i]["image_id"] == segm[i]["image_id"] == 42
        assert bbox[i]["category_id"] == segm[i]["category_id"] == int(output["labels"][i])
        assert bbox[i]["score"] == segm[i]["score"] == pytest.approx(float(output["scores"][i]))
        rle = segm[i]["segmentation"]
        assert rle["size"] == [h, w] and isinstance(rle["counts"], str)
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        np.testing.assert_array_equal(decoded, (output["masks"][i, 0] > 0.6).numpy().astype(np.uint8))
    json.dumps([bbox, segm])  # plain JSON types only
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0),
             "masks": torch.zeros(0, 1, h, w)}
    assert to_coco_results(1, empty) == ([], [])


def _types(record: dict) -> dict:
    def kind(v):
        if isinstance(v, dict):
            return {k: kind(x) for k, x in sorted(v.items())}
        if isinstance(v, list):
            return ("list", sorted({type(x).__name__ for x in v}))
        return type(v).__name__
    return kind(record)


def test_records_have_the_official_layout(tmp_path: Path) -> None:
    """The official example files and ours load with loadRes and have identical keys and value types."""
    official = {kind: json.loads((FIXTURES / f"example_{kind}_results.json").read_text()) for kind in ("bbox", "segm")}
    sizes = {r["image_id"]: tuple(r["segmentation"]["size"]) for r in official["segm"]}
    gt = COCO()
    gt.dataset = _gt_dataset({i: [(1, (10, 10, 100, 100))] for i in sizes}, sizes)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    h, w = sizes[1]
    ours_bbox, ours_segm = to_coco_results(1, _output([(1, 0.5, (199, 179, 290, 273))], h, w))
    for kind, ours in (("bbox", ours_bbox), ("segm", ours_segm)):
        with contextlib.redirect_stdout(io.StringIO()):
            loaded_official = gt.loadRes([dict(r) for r in official[kind]])
            loaded_ours = gt.loadRes([dict(r) for r in ours])
        assert len(loaded_official.getAnnIds()) == 5 and len(loaded_ours.getAnnIds()) == 1
        assert all(_types(r) == _types(ours[0]) for r in official[kind])
    # the official example records evaluate the same through our API as through pycocotools directly
    gt_file = _write_json(tmp_path / "gt.json", gt.dataset)
    bbox_file = _write_json(tmp_path / "bbox.json", official["bbox"])
    result = evaluate_results(gt, official["bbox"], official["segm"])
    assert result.box.stats == tuple(float(s) for s in _direct_cocoeval(gt_file, bbox_file, "bbox").stats)


def test_bad_inputs_raise_clear_errors(tmp_path: Path, scenario: dict) -> None:
    with pytest.raises(AnnotationError, match="missing.json"):
        evaluate_results(tmp_path / "missing.json", [], [])
    broken = _gt_dataset(GT_ITEMS)
    del broken["annotations"][2]["area"]
    with pytest.raises(AnnotationError, match=r"annotations\[2\]\.area"):
        evaluate_results(_write_json(tmp_path / "broken.json", broken), [], [])
    repeated = _gt_dataset(GT_ITEMS)
    repeated["annotations"][3]["id"] = repeated["annotations"][1]["id"]  # pycocotools would evaluate one twice
    with pytest.raises(AnnotationError, match=r"repeated.json: annotations\[3\].id: id \d+ is also annotations\[1\]'s"):
        evaluate_results(_write_json(tmp_path / "repeated.json", repeated), [], [])
    stray = [{**scenario["bbox"][0], "image_id": 99}]
    with pytest.raises(FashionparseError, match="image_id 99"):
        evaluate_results(scenario["gt"], stray, [])


@pytest.mark.parametrize(("field", "value", "message"), [
    ("iscrowd", "no", "expected 0 or 1"),
    ("segmentation", "x", "expected a list of polygons"),
    ("segmentation", [[1, 2, 3]], "polygon 0 has 3 values"),
    ("segmentation", [], "no polygons"),
    ("segmentation", {"size": [H, W]}, "RLE 'counts'"),
    ("bbox", "x", "expected \\[x, y, width, height\\]"),
    ("area", "big", "expected a finite number"),
    ("category_id", "1", "expected an integer"),
])
def test_broken_ground_truth_fields_are_named_when_it_loads(tmp_path: Path, field: str, value, message: str) -> None:
    """Checked at load time (before inference), not left to crash pycocotools after it."""
    broken = _gt_dataset(GT_ITEMS)
    broken["annotations"][3][field] = value
    gt_file = _write_json(tmp_path / "broken_gt.json", broken)
    with pytest.raises(AnnotationError, match=rf"^{tmp_path}/broken_gt\.json: annotations\[3\]\.{field}: {message}"):
        load_ground_truth(gt_file, df2_categories=False)


def test_ground_truth_without_categories_is_named(tmp_path: Path) -> None:
    broken = _gt_dataset(GT_ITEMS)
    del broken["categories"]
    with pytest.raises(AnnotationError, match=r"no_cats\.json: categories: missing field"):
        load_ground_truth(_write_json(tmp_path / "no_cats.json", broken), df2_categories=False)


def test_crowd_rle_ground_truth_still_loads(tmp_path: Path) -> None:
    gt = _gt_dataset(GT_ITEMS)
    rle = mask_utils.encode(np.asfortranarray(np.ones((H, W), dtype=np.uint8)))
    gt["annotations"][0].update(iscrowd=1, segmentation={"size": [H, W], "counts": rle["counts"].decode("ascii")})
    gt["annotations"][1].update(iscrowd=1, segmentation={"size": [H, W], "counts": [0, H * W]})
    coco = load_ground_truth(_write_json(tmp_path / "crowd.json", gt), df2_categories=False)
    evaluate_results(coco, [], [])
    load_ground_truth(coco, df2_categories=False)  # polygons now RLE with bytes counts, as pycocotools left them


@pytest.mark.parametrize(("iou_type", "field", "value", "message"), [
    ("bbox", "bbox", "x", "expected \\[x, y, width, height\\]"),
    ("bbox", "bbox", [1, 2, 3], "expected \\[x, y, width, height\\]"),
    ("bbox", "score", float("nan"), "expected a finite number"),
    ("bbox", "score", "0.9", "expected a finite number"),
    ("bbox", "image_id", "1", "expected an integer"),
    ("bbox", "category_id", 1.5, "expected an integer"),
    ("segm", "segmentation", [[1, 2, 3, 4, 5, 6]], "expected an RLE dict"),
    ("segm", "segmentation", {"size": [H, W], "counts": [0, H * W]}, "RLE 'counts' must be a string$"),
])
def test_results_with_wrong_types_name_the_file_and_field(scenario: dict, iou_type: str, field: str, value,
                                                          message: str) -> None:
    records = [dict(r) for r in scenario[iou_type]]
    records[1][field] = value
    gt = load_ground_truth(scenario["gt"], df2_categories=False)
    with pytest.raises(FashionparseError, match=rf"^runs/x/eval/{iou_type}_results\.json: {iou_type} results\[1\]"
                                                rf"\.{field}: {message}"):
        check_results(records, iou_type, gt, path=f"runs/x/eval/{iou_type}_results.json")
    with pytest.raises(FashionparseError, match=rf"^{iou_type} results\[1\]\.{field}: {message}"):
        evaluate_results(gt, *((records, []) if iou_type == "bbox" else ([], records)))


def test_results_must_be_a_list_and_errors_name_the_file(scenario: dict) -> None:
    gt = load_ground_truth(scenario["gt"], df2_categories=False)
    with pytest.raises(FashionparseError, match=r"^r\.json: bbox results: expected a list of bbox records, got dict"):
        check_results({"image_id": 1}, "bbox", gt, path="r.json")
    stray = [{**scenario["bbox"][0], "image_id": 424242}]
    with pytest.raises(FashionparseError, match=r"^runs/x/eval/bbox_results\.json: bbox results\[0\]\.image_id: "
                                                r"image_id 424242 is not in the ground truth$"):
        check_results(stray, "bbox", gt, path="runs/x/eval/bbox_results.json")


def test_any_coco_category_set_evaluates_like_pycocotools(tmp_path: Path) -> None:
    """COCO's own ids (the pretraining config): same numbers as pycocotools, GT names, no DF2 comparison.

    Detections of an id the GT lacks (9 and 5 here, as a 91-class model predicts ids unused by a GT) are left
    out of scoring as pycocotools leaves them out, and counted."""
    names = {1: "person", 18: "dog", 90: "toothbrush"}
    items = {image_id: [(18 if c == 8 else 90 if c == 11 else c, box) for c, box in objects]
             for image_id, objects in GT_ITEMS.items() if all(c != 7 for c, _ in objects)}
    gt = {**_gt_dataset(items, SIZES), "categories": [{"id": i, "name": n} for i, n in names.items()]}
    gt_file = _write_json(tmp_path / "coco_gt.json", gt)
    bbox, segm = [], []
    for image_id in items:
        detections = [(18 if c == 8 else 90 if c == 11 else c, score, box) for c, score, box in PREDICTIONS[image_id]]
        detections.append((5, 0.99, (2, 2, 20, 20)))  # the highest score of the image, of a category without GT
        b, m = to_coco_results(image_id, _output(detections, *SIZES[image_id]))
        bbox, segm = bbox + b, segm + m
    foreign = sum(r["category_id"] not in names for r in bbox)
    assert foreign == 3  # image 3's category 9 and both images' category 5
    result = evaluate_results(gt_file, bbox, segm)
    for task, iou_type, records in ((result.box, "bbox", bbox), (result.mask, "segm", segm)):
        # pycocotools on every record, the foreign ones included
        ev = _direct_cocoeval(gt_file, _write_json(tmp_path / f"{iou_type}.json", records), iou_type)
        assert task.stats == tuple(float(v) for v in ev.stats)
        assert all(0.0 < v < 1.0 for v in task.stats[:3])
        assert task.num_detections == len(records) and task.num_unscored == foreign
    assert [(c.category_id, c.name) for c in result.box.per_category] == [
        (1, "person"), (18, "dog"), (90, "toothbrush")]
    assert not result.is_df2
    note = ("3 box and 3 mask detections of categories not in the ground truth's category list were left out of "
            "scoring")
    assert note in result.format()
    text = metrics_markdown(result)
    assert text.startswith("# COCO-format evaluation") and "| 90 | toothbrush |" in text and note in text
    assert "Comparison with published results" not in text
    assert result.to_dict()["box"]["num_unscored"] == result.to_dict()["mask"]["num_unscored"] == 3
    # the analyses, which have nowhere to count them, still refuse such records
    first = next(i for i, r in enumerate(segm) if r["category_id"] not in names)
    with pytest.raises(FashionparseError, match=rf"segm results\[{first}\]\.category_id: category_id 5 "):
        check_results(segm, "segm", load_ground_truth(gt_file, df2_categories=False))
    with pytest.raises(AnnotationError, match="not DeepFashion2 categories"):
        load_ground_truth(gt_file)  # the attribute and confusion analyses still need DF2's ids


def test_reports_and_submission_files(scenario: dict, tmp_path: Path) -> None:
    result = evaluate_results(scenario["gt"], scenario["bbox"], scenario["segm"])
    paths = write_eval_outputs(result, tmp_path / "out", scenario["bbox"], scenario["segm"])
    metrics = json.loads(paths["metrics.json"].read_text())
    assert metrics["mask"]["stats"] == list(result.mask.stats)
    assert metrics["box"]["num_unscored"] == metrics["mask"]["num_unscored"] == 0  # every category is DF2's
    assert metrics["box"]["per_category"][1]["AP"] is None  # long sleeve top: absent from the GT
    assert json.loads(paths["segm_results.json"].read_text()) == scenario["segm"]
    with contextlib.redirect_stdout(io.StringIO()):
        COCO(str(scenario["gt"])).loadRes(str(paths["bbox_results.json"]))
    markdown = paths["metrics.md"].read_text()
    for category in CATEGORIES:
        assert f"| {category.id} | {category.name} |" in markdown
    assert f"| box | {100 * result.box.AP:.1f} | {100 * result.box.AP50:.1f} |" in markdown
    table_rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    for entry in load_published():
        assert any(row.startswith(f"| {entry.method} |") for row in table_rows)
    assert table_rows[-1].startswith("| ours |")
    assert f"| {100 * result.mask.AP:.1f} |" in table_rows[-1]
    console = result.format().splitlines()
    assert console[-1].split() == ["mask", *(f"{100 * v:.1f}" for v in result.mask.stats[:6])]


def test_published_entries_and_table() -> None:
    published = load_published()
    methods = [p.method for p in published]
    assert len(set(methods)) == len(methods) >= 6
    released = next(p for p in published if "released" in p.method)
    ours = PublishedResult("ours", "", "", APTriple(0.5, None, 0.25), APTriple(None, None, None), "test")
    table = comparison_table(ours, published)
    row = next(line for line in table.splitlines() if line.startswith(f"| {released.method} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    expected = [f"{100 * v:.1f}" for t in (released.box, released.mask) for v in (t.AP, t.AP50, t.AP75)]
    assert cells[3:9] == expected
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[-1].split("|")[4:10] == [" 50.0 ", " – ", " 25.0 ", " – ", " – ", " – "]
    assert f"- {released.method}: {released.note}" in table


def test_published_loader_rejects_bad_values(tmp_path: Path) -> None:
    entry = {"method": "m", "training_data": "t", "backbone": "b", "source": "s", "note": "",
             "box": {"AP": 63.8, "AP50": None, "AP75": None}, "mask": {"AP": None, "AP50": None, "AP75": None}}
    with pytest.raises(FashionparseError, match=r"\[0\]\.box\.AP"):
        load_published(_write_json(tmp_path / "p.json", [entry]))


class _ReplayModel(torch.nn.Module):
    """Stands in for Mask R-CNN: returns the prepared output of the image whose id is coded in pixel (0, 0, 0)."""

    def __init__(self, outputs: dict[int, dict]) -> None:
        super().__init__()
        self.outputs = outputs
        self.batch_sizes: list[int] = []

    def forward(self, images: list[torch.Tensor]) -> list[dict]:
        assert not self.training and not torch.is_grad_enabled()
        self.batch_sizes.append(len(images))
        return [self.outputs[round(float(image[0, 0, 0]) * 100)] for image in images]


def test_evaluate_model_end_to_end(tmp_path: Path, scenario: dict) -> None:
    dataset = []
    for image_id in PREDICTIONS:
        image = torch.zeros(3, *SIZES[image_id])
        image[0, 0, 0] = image_id / 100
        dataset.append((image, {"image_id": torch.tensor(image_id)}))
    model = _ReplayModel({i: _output(d, *SIZES[i]) for i, d in PREDICTIONS.items()})
    result = evaluate_model(model, dataset, scenario["gt"], "cpu", tmp_path / "eval", batch_size=2, progress=False)
    assert model.batch_sizes == [2, 1]
    assert result.box.stats == evaluate_results(scenario["gt"], scenario["bbox"], scenario["segm"]).box.stats
    assert json.loads((tmp_path / "eval" / "bbox_results.json").read_text()) == scenario["bbox"]


def test_run_inference_with_torchvision_mask_rcnn() -> None:
    """The real torchvision output format (untrained weights, no score threshold) converts cleanly."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=14, min_size=96, max_size=128,
                                  box_score_thresh=0.0, box_detections_per_img=5)
    dataset = [(torch.rand(3, 40, 56), {"image_id": 7})]
    bbox, segm = run_inference(model, dataset, "cpu", progress=False)
    assert len(bbox) == len(segm) > 0
    assert all(r["image_id"] == 7 and 1 <= r["category_id"] <= 13 for r in bbox)
    assert all(r["segmentation"]["size"] == [40, 56] for r in segm)
