"""Analysis: subset AP against pycocotools and hand-computed cases, TIDE errors on hand-made cases, confusion
matrix, galleries, the report and comparison pages and their CLI commands."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from analysis_fixtures import (
    GOOD_DETECTIONS,
    H,
    W,
    WEAK_DETECTIONS,
    detection_records,
    gt_dataset,
    make_run,
    make_validation_set,
)
from fashionparse.analysis.commands import compare, report
from fashionparse.analysis.errors import ERROR_KINDS, confusion_analysis, match_boxes, tide_errors
from fashionparse.analysis.galleries import (
    OverlayRenderer,
    condition_galleries,
    condition_images,
    failure_galleries,
    pair_results,
    worst_gallery,
)
from fashionparse.analysis.report import build_report, compare_runs
from fashionparse.analysis.run import load_run
from fashionparse.analysis.subsets import (
    SOURCES,
    SUBSETS,
    SubsetCOCOeval,
    Subset,
    ap_triple,
    evaluate_subsets,
    load_published_subsets,
)
from fashionparse.categories import coco_categories
from fashionparse.data.dataset import CocoInstanceDataset
from fashionparse.engine.evaluate import evaluate_results
from fashionparse.engine.published import load_published
from fashionparse.errors import ConfigError, FashionparseError
from fashionparse.visualize import CATEGORY_COLORS

torch.set_num_threads(1)  # overlays are small; more threads only contend with other work on 2 cores


# --------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------

def _coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = copy.deepcopy(dataset)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _dataset(items: list[tuple[int, int, tuple[int, int, int, int], dict]]) -> dict:
    """GT of (image id, category, xyxy box, extra fields) on images of the fixtures' size."""
    images = [{"id": i, "file_name": f"{i:06d}.png", "height": H, "width": W} for i in sorted({it[0] for it in items})]
    annotations = [{"id": n + 1, "image_id": image_id, "category_id": category, "iscrowd": 0,
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                    "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]], **extra}
                   for n, (image_id, category, (x1, y1, x2, y2), extra) in enumerate(items)]
    return {"images": images, "annotations": annotations, "categories": coco_categories()}


def _stock_precision(dataset: dict, results: list[dict], iou_type: str) -> np.ndarray:
    """pycocotools as DF2 runs it: precision [T, R, K] at area 'all', maxDets 100."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = _coco(dataset)
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), iou_type)
        ev.params.imgIds = sorted(gt.getImgIds())
        ev.evaluate()
        ev.accumulate()
    return ev.eval["precision"][:, :, :, 0, -1]


# Subset case: two short sleeve tops, A slightly occluded, B heavily occluded; detections by score: one on
# no item, one poorly placed inside B (IoU 0.25), one exactly on B, one exactly on A.
SUBSET_GT = [(1, 1, (0, 0, 20, 20), {"occlusion": 1}), (1, 1, (40, 40, 60, 60), {"occlusion": 3})]
SUBSET_DETS = {1: [(1, 0.95, (75, 75, 95, 95)), (1, 0.93, (45, 45, 55, 55)), (1, 0.92, (40, 40, 60, 60)),
                   (1, 0.90, (0, 0, 20, 20))]}


# --------------------------------------------------------------------------------------------------------
# AP by subset
# --------------------------------------------------------------------------------------------------------

def test_subset_ignores_items_outside_it_hand_case() -> None:
    dataset = _dataset(SUBSET_GT)
    bbox, segm = detection_records(SUBSET_DETS)
    result = evaluate_subsets(_coco(dataset), bbox, segm,
                              subsets=[Subset("occlusion", 1), Subset("occlusion", 3), Subset("overall")],
                              progress=False)
    slight, heavy, overall = result.rows
    # slight: FP, FP, (detection on the ignored B: neither), TP -> precision 1/3 at full recall, every IoU.
    # heavy: FP, FP, TP, (detection on the ignored A) -> 1/3. overall: FP, FP, TP, TP -> 1/2.
    for row, expected in ((slight, 1 / 3), (heavy, 1 / 3), (overall, 1 / 2)):
        for triple in (row.box, row.mask):
            assert triple.AP == pytest.approx(expected) and triple.AP50 == pytest.approx(expected)
            assert triple.AP75 == pytest.approx(expected)
    assert (slight.num_gt, heavy.num_gt, overall.num_gt) == (1, 1, 2)

    # Independent reference: ignoring B equals deleting B and the one detection matched to it.
    without_b = {**dataset, "annotations": dataset["annotations"][:1]}
    reference = _stock_precision(without_b, [r for i, r in enumerate(bbox) if i != 2], "bbox")
    ours = SubsetCOCOeval(_coco(dataset), _coco(dataset).loadRes(copy.deepcopy(bbox)), "bbox")
    np.testing.assert_array_equal(ours.precision(Subset("occlusion", 1).contains), reference)

    # Why not iscrowd: as a crowd, B would swallow the poorly placed detection too (1/2 instead of 1/3).
    crowd = copy.deepcopy(dataset)
    crowd["annotations"][1]["iscrowd"] = 1
    assert _stock_precision(crowd, bbox, "bbox")[0, -1, 0] == pytest.approx(1 / 2)


def test_overall_subset_equals_stock_pycocotools(tmp_path: Path) -> None:
    dataset = gt_dataset()
    bbox, segm = detection_records(GOOD_DETECTIONS)
    for results, iou_type in ((bbox, "bbox"), (segm, "segm")):
        gt = _coco(dataset)
        with contextlib.redirect_stdout(io.StringIO()):
            ours = SubsetCOCOeval(gt, gt.loadRes(copy.deepcopy(results)), iou_type)
        np.testing.assert_array_equal(ours.precision(None), _stock_precision(dataset, results, iou_type))
    result = evaluate_subsets(_coco(dataset), bbox, segm, progress=False)
    stock = evaluate_results(_coco(dataset), bbox, segm)
    overall = result.rows[-1]
    assert overall.subset.label == "overall"
    assert (overall.box.AP, overall.box.AP50, overall.box.AP75) == (stock.box.AP, stock.box.AP50, stock.box.AP75)
    assert (overall.mask.AP, overall.mask.AP50, overall.mask.AP75) == (stock.mask.AP, stock.mask.AP50,
                                                                       stock.mask.AP75)
    assert result.precision["box"].shape == (10, 101, 13)


def test_source_rows_are_the_stock_evaluation_of_that_source_s_images() -> None:
    """``source`` belongs to the image: a detection on no garment in a user image is no false positive of the
    shop row. Reference: pycocotools with ``params.imgIds`` restricted to the source's images."""
    dataset = gt_dataset()
    bbox, segm = detection_records({**GOOD_DETECTIONS, 3: [*GOOD_DETECTIONS.get(3, []), (1, 0.99, (0, 0, 9, 9))]})
    result = evaluate_subsets(_coco(dataset), bbox, segm, progress=False)
    for source in SOURCES:
        images = sorted({a["image_id"] for a in dataset["annotations"] if a["source"] == source})
        row = next(r for r in result.rows if r.subset == Subset("source", source))
        for records, iou_type, triple in ((bbox, "bbox", row.box), (segm, "segm", row.mask)):
            with contextlib.redirect_stdout(io.StringIO()):
                gt = _coco(dataset)
                ev = COCOeval(gt, gt.loadRes(copy.deepcopy(records)), iou_type)
                ev.params.imgIds = images
                ev.evaluate()
                ev.accumulate()
            assert triple == ap_triple(ev.eval["precision"][:, :, :, 0, -1])


def test_subset_rows_counts_and_unassigned_items() -> None:
    dataset = gt_dataset()
    del dataset["annotations"][0]["viewpoint"]
    dataset["annotations"][1]["scale"] = 7
    bbox, segm = detection_records(GOOD_DETECTIONS)
    result = evaluate_subsets(_coco(dataset), bbox, segm, progress=False)
    assert [r.subset for r in result.rows] == list(SUBSETS)
    assert [r.subset.label for r in result.rows][:3] == ["scale small", "scale moderate", "scale large"]
    total = len(dataset["annotations"])
    by_attribute: dict[str, int] = {}
    for row in result.rows[:-1]:
        by_attribute[row.subset.attribute] = by_attribute.get(row.subset.attribute, 0) + row.num_gt
    assert result.unassigned == {"scale": 1, "occlusion": 0, "zoom_in": 0, "viewpoint": 1, "source": 0}
    assert {a: n + result.unassigned[a] for a, n in by_attribute.items()} == dict.fromkeys(by_attribute, total)
    heavy = next(r for r in result.rows if r.subset == Subset("occlusion", 3))
    assert heavy.published_box.AP == 0.372 and heavy.published_mask.AP75 == 0.444
    assert next(r for r in result.rows if r.subset == Subset("source", "user")).published_box is None


def test_published_subsets_agree_with_published_results(tmp_path: Path) -> None:
    published = load_published_subsets()
    paper = next(r for r in load_published() if r.method == "Match R-CNN (paper)")
    assert published.rows[("overall", None)] == (paper.box, paper.mask)
    assert len(published.rows) == 13 and not any(a == "source" for a, _ in published.rows)
    raw = json.loads((Path(__file__).parents[1] / "fashionparse/data/published_subsets.json").read_text())
    del raw["subsets"][2]["mask"]
    published_path = tmp_path / "published.json"
    published_path.write_text(json.dumps(raw))
    with pytest.raises(FashionparseError, match=r"subsets\[2\]\.mask"):
        load_published_subsets(published_path)


# --------------------------------------------------------------------------------------------------------
# TIDE
# --------------------------------------------------------------------------------------------------------

# Items: a short sleeve top, a long sleeve top and a small short sleeve outwear nobody detects.
TIDE_GT = [(1, 1, (10, 10, 40, 40), {}), (1, 2, (50, 50, 80, 80), {}), (1, 3, (10, 60, 30, 80), {})]
TIDE_DETS = {1: [
    (1, 0.9, (10, 10, 40, 40)),   # 0 true positive
    (1, 0.8, (11, 11, 41, 41)),   # 1 duplicate of the top
    (4, 0.7, (50, 50, 80, 80)),   # 2 classification: long sleeve outwear on the long sleeve top
    (2, 0.6, (65, 50, 95, 80)),   # 3 localization: IoU 450 / 1350 with its item
    (5, 0.5, (100, 5, 110, 15)),  # 4 background
    (6, 0.4, (55, 60, 85, 90)),   # 5 both: a sling, IoU 500 / 1300 with the long sleeve top
]}


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_tide_error_kinds_hand_case(iou_type: str) -> None:
    bbox, segm = detection_records(TIDE_DETS)
    summary = tide_errors(_coco(_dataset(TIDE_GT)), bbox if iou_type == "bbox" else segm, iou_type)
    assert summary.counts == dict.fromkeys(ERROR_KINDS, 1)
    by_kind = {case.kind: case for case in summary.cases}
    assert {k: by_kind[k].detection for k in ERROR_KINDS} == {
        "duplicate": 1, "classification": 2, "localization": 3, "background": 4, "both": 5, "missed": None}
    assert (by_kind["classification"].gt_ann_id, by_kind["classification"].gt_category_id) == (2, 2)
    assert by_kind["localization"].iou == pytest.approx(450 / 1350)
    assert (by_kind["missed"].gt_ann_id, by_kind["missed"].category_id) == (3, 3)


def test_tide_delta_ap_hand_case() -> None:
    # One category, two items; by score: a background detection, a hit on A, a poorly placed one on B.
    dataset = _dataset([(1, 1, (0, 0, 20, 20), {}), (1, 1, (40, 40, 60, 60), {})])
    bbox, _ = detection_records({1: [(1, 0.9, (90, 70, 110, 90)), (1, 0.8, (0, 0, 20, 20)),
                                     (1, 0.7, (50, 40, 70, 60))]})
    summary = tide_errors(_coco(dataset), bbox, "bbox")
    original = 0.5 * 51 / 101        # precision 1/2 up to recall 1/2 on COCO's 101 recall points
    assert summary.ap50 == pytest.approx(original)
    assert summary.delta_ap["localization"] == pytest.approx(2 / 3 - original)   # FP, TP, TP
    assert summary.delta_ap["background"] == pytest.approx(51 / 101 - original)  # TP, FP
    assert summary.delta_ap["missed"] == 0 and summary.counts["missed"] == 0     # B is the localization's
    assert _stock_precision(dataset, bbox, "bbox")[0, :, 0].mean() == pytest.approx(original)


def test_tide_without_detections_counts_every_item_missed() -> None:
    summary = tide_errors(_coco(_dataset(TIDE_GT)), [], "segm")
    assert summary.ap50 == 0 and summary.counts == {**dict.fromkeys(ERROR_KINDS, 0), "missed": 3}
    assert [c.gt_ann_id for c in summary.cases] == [1, 2, 3] and set(summary.delta_ap.values()) == {0.0}


def test_tide_leaves_matplotlib_style_alone() -> None:
    before = dict(matplotlib.rcParams)
    bbox, _ = detection_records(TIDE_DETS)
    tide_errors(_coco(_dataset(TIDE_GT)), bbox, "bbox")
    assert dict(matplotlib.rcParams) == before


# --------------------------------------------------------------------------------------------------------
# Confusion matrix and worst images
# --------------------------------------------------------------------------------------------------------

def test_match_boxes_greedy_by_score() -> None:
    gt = np.array([[0, 0, 10, 10], [4, 0, 10, 10]], dtype=float)
    # IoUs: C (.7) -> .667/.667; B (.8) -> .818 with item 0, .538 with item 1; A (.9) -> .538, .818.
    dets = np.array([[2, 0, 10, 10], [1, 0, 10, 10], [3, 0, 10, 10]], dtype=float)
    scores = np.array([0.7, 0.8, 0.9])
    assert match_boxes(dets, scores, gt, 0.5).tolist() == [-1, 0, 1]
    assert match_boxes(dets, scores, gt, 0.85).tolist() == [-1, -1, -1]
    assert match_boxes(dets[:0], scores[:0], gt).tolist() == []
    assert match_boxes(dets, scores, gt[:0]).tolist() == [-1, -1, -1]


def test_confusion_matrix_and_worst_images() -> None:
    bbox, _ = detection_records(GOOD_DETECTIONS)
    result = confusion_analysis(_coco(gt_dataset()), bbox, score_threshold=0.5)
    expected = np.zeros((13, 13), dtype=np.int64)
    for item, detected in ((1, 1), (8, 8), (9, 9), (7, 7), (2, 1), (11, 10)):
        expected[item - 1, detected - 1] += 1
    np.testing.assert_array_equal(result.matrix, expected)
    assert np.flatnonzero(result.missed).tolist() == [0] and result.missed[0] == 1
    assert {c + 1: int(n) for c, n in enumerate(result.background) if n} == {1: 1, 5: 1, 11: 1}
    assert result.top_confusions() == [(2, 1, 1, 1.0), (11, 10, 1, 1.0)]
    worst = {c: [(e.image_id, e.missed, e.false_positives) for e in v] for c, v in result.worst.items()}
    assert worst == {1: [(1, 0, 1), (2, 0, 1), (4, 1, 0)], 2: [(2, 1, 0)], 5: [(4, 0, 1)], 10: [(3, 0, 1)],
                     11: [(3, 1, 1)]}
    strict = confusion_analysis(_coco(gt_dataset()), bbox, score_threshold=0.7)
    assert strict.background[0] == 0 and strict.background[10] == 0  # the 0.55 and 0.6 detections are out


# --------------------------------------------------------------------------------------------------------
# Galleries
# --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def validation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_validation_set(tmp_path_factory.mktemp("validation"))


def test_pair_results_rejects_misaligned_records() -> None:
    bbox, segm = detection_records(GOOD_DETECTIONS)
    assert pair_results(bbox, [])[0] == (bbox[0], None)
    with pytest.raises(FashionparseError, match=r"segm results\[1\]"):
        pair_results(bbox, [segm[0], segm[2], segm[1], *segm[3:]])
    with pytest.raises(FashionparseError, match="same order"):
        pair_results(bbox, segm[:-1])


def test_overlay_puts_masks_in_category_colours(validation: tuple[Path, Path]) -> None:
    gt_json, image_dir = validation
    bbox, segm = detection_records(GOOD_DETECTIONS)
    renderer = OverlayRenderer(CocoInstanceDataset(image_dir, gt_json), bbox, segm)
    canvas = renderer.render(4)
    assert canvas.shape == (3, H, 2 * W + 8)
    left, right = canvas[:, :, :W], canvas[:, :, W + 8:]

    def blended(category: int) -> list[float]:  # 50 % of the category colour over the grey image
        return [0.5 * 128 + 0.5 * c for c in CATEGORY_COLORS[category]]
    for panel in (left, right):  # shorts (60, 50)-(110, 90): in the GT and detected
        assert np.allclose(panel[:, 75, 85].float(), blended(7), atol=1.5)
    assert np.allclose(left[:, 42, 40].float(), blended(1), atol=1.5)  # the missed short sleeve top
    assert right[:, 42, 40].tolist() == [128, 128, 128]


def test_condition_images_ranking(validation: tuple[Path, Path]) -> None:
    coco = _coco(gt_dataset())
    assert [r[0] for r in condition_images(coco, Subset("source", "user"), 3)] == [2, 3]
    assert condition_images(coco, Subset("occlusion", 1), 3) == [(3, 1, 1), (1, 1, 2), (2, 1, 2)]
    assert condition_images(coco, Subset("scale", 1), 3) == [(4, 1, 2)]


def test_failure_worst_and_condition_galleries(tmp_path: Path, validation: tuple[Path, Path]) -> None:
    gt_json, image_dir = validation
    bbox, segm = detection_records(GOOD_DETECTIONS)
    renderer = OverlayRenderer(CocoInstanceDataset(image_dir, gt_json), bbox, segm, max_width=200)
    galleries = {g.title: g for g in failure_galleries(renderer, tide_errors(_coco(gt_dataset()), bbox), 3)}
    assert list(galleries) == list(ERROR_KINDS)
    assert [e.image_id for e in galleries["classification"].entries] == [2, 3]  # scores 0.80, 0.70
    assert [e.image_id for e in galleries["missed"].entries] == [4]
    assert not galleries["both"].entries and galleries["both"].note == "no error of this kind"
    with Image.open(io.BytesIO(galleries["missed"].entries[0].jpeg)) as picture:
        assert picture.format == "JPEG" and picture.width == 200
    confusion = confusion_analysis(_coco(gt_dataset()), bbox)
    assert [e.image_id for e in worst_gallery(renderer, confusion).entries] == [1, 2, 4, 3, 3]  # categories 1 2 5 10 11

    # an unreadable image is left out and counted
    broken = tmp_path / "image"
    shutil.copytree(image_dir, broken)
    (broken / "000003.png").unlink()
    renderer = OverlayRenderer(CocoInstanceDataset(broken, gt_json), bbox, segm)
    (zoom_large,) = condition_galleries(renderer, [Subset("zoom_in", 3)])
    assert not zoom_large.entries and zoom_large.note.startswith("1 image(s) left out")


# --------------------------------------------------------------------------------------------------------
# Run folders, report, comparison, CLI
# --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    gt_json, image_dir = make_validation_set(root)
    return {"se": make_run(root, "se", GOOD_DETECTIONS, gt_json, image_dir),
            "none": make_run(root, "none", WEAK_DETECTIONS, gt_json, image_dir, attention="none", history=False),
            "root": root}


def test_load_run_reads_folder_and_reports_problems(runs: dict[str, Path], tmp_path: Path) -> None:
    run = load_run(runs["se"])
    assert run.iterations == 38 and len(run.history) == 20 and run.history_skipped == 1
    assert run.config.model.attention == "se" and len(run.bbox_results) == len(run.segm_results) == 9
    with pytest.raises(FashionparseError, match="run folder not found"):
        load_run(tmp_path / "nothing")
    broken = tmp_path / "broken"
    shutil.copytree(runs["se"], broken)
    text = (broken / "config.yaml").read_text()
    (broken / "config.yaml").write_text(re.sub(r"val_annotations: .*", "val_annotations: ''", text))
    with pytest.raises(ConfigError, match="data.val_annotations"):
        load_run(broken)
    (broken / "eval" / "segm_results.json").unlink()
    with pytest.raises(FashionparseError, match="segm_results.json: file not found"):
        load_run(broken, gt=runs["root"] / "validation.json")


def _img_sources(page: str) -> list[str]:
    return re.findall(r'<img[^>]* src="([^"]+)"', page)


def test_build_report_writes_self_contained_page(runs: dict[str, Path]) -> None:
    path = build_report(runs["se"], progress=False)
    assert path == runs["se"] / "report" / "index.html"
    page = path.read_text()
    for anchor in ("results", "training", "categories", "subsets", "errors", "confusion", "worst", "galleries"):
        assert f'<section id="{anchor}">' in page
    sources = _img_sources(page)
    assert len(sources) >= 5 + 14 + 5  # curves, 2 PR, heatmap + condition galleries + failures
    assert all(s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for s in sources)
    assert not re.search(r'(src|href)="(https?:)?//', page)
    analysis = json.loads((path.parent / "analysis.json").read_text())
    assert analysis["inputs"] == load_run(runs["se"]).digests()
    metrics = json.loads((runs["se"] / "eval" / "metrics.json").read_text())
    overall = analysis["subsets"]["rows"][-1]
    assert overall["label"] == "overall" and overall["box"]["AP"] == metrics["box"]["metrics"]["AP"]
    assert analysis["tide"]["box"]["counts"]["missed"] == 1
    assert "1 unreadable line(s) of metrics.jsonl left out" in page


def test_compare_marks_best_and_reuses_analysis(runs: dict[str, Path], tmp_path: Path) -> None:
    cached = runs["se"] / "report" / "analysis.json"
    if not cached.is_file():
        build_report(runs["se"], progress=False)
    marked = json.loads(cached.read_text())
    marked["marker"] = True
    cached.write_text(json.dumps(marked))
    page = compare_runs([runs["se"], runs["none"]], tmp_path / "cmp", progress=False).read_text()
    assert json.loads(cached.read_text()).get("marker")  # unchanged inputs: reused
    assert (runs["none"] / "report" / "analysis.json").is_file()  # missing: built
    row = re.search(r"<tr><td>box AP</td>(.*?)</tr>", page).group(1)
    se_ap = json.loads((runs["se"] / "eval" / "metrics.json").read_text())["box"]["metrics"]["AP"]
    assert row.startswith(f'<td class="num best">{100 * se_ap:.1f}</td><td class="num">')
    assert "model.attention" in page and all(s.startswith("data:image/png") for s in _img_sources(page))

    with (runs["se"] / "eval" / "bbox_results.json").open("a") as f:
        f.write("\n")  # same detections, new digest: the analysis is rebuilt
    compare_runs([runs["se"], runs["none"]], tmp_path / "cmp", progress=False)
    assert "marker" not in json.loads(cached.read_text())


def test_cli_commands(runs: dict[str, Path], tmp_path: Path) -> None:
    result = CliRunner().invoke(report, [str(runs["none"]), "--out", str(tmp_path / "r"), "--gallery-size", "1"])
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'r' / 'index.html'}" in result.output
    assert "No training log" in (tmp_path / "r" / "index.html").read_text()
    result = CliRunner().invoke(compare, [str(runs["se"]), str(runs["none"]), "--out", str(tmp_path / "c")])
    assert result.exit_code == 0 and (tmp_path / "c" / "index.html").is_file()
    assert CliRunner().invoke(compare, ["--out", str(tmp_path / "c")]).exit_code != 0


@pytest.mark.parametrize("size", ["-1", "0"])  # -1 sliced ranked[:-1]; 0 emptied some galleries, not others
def test_report_refuses_a_gallery_size_below_1(tmp_path: Path, size: str) -> None:
    result = CliRunner().invoke(report, [str(tmp_path), "--gallery-size", size])
    assert result.exit_code == 2
    assert "--gallery-size" in result.output and f"{size} is not in the range x>=1" in result.output
    assert not (tmp_path / "report").exists()


def test_report_names_the_results_file_of_a_bad_record(runs: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(runs["se"], broken)
    path = broken / "eval" / "segm_results.json"
    records = json.loads(path.read_text())
    del records[2]["segmentation"]
    path.write_text(json.dumps(records))
    with pytest.raises(FashionparseError) as info:
        build_report(broken, progress=False)
    assert str(info.value) == f"{path}: segm results[2].segmentation: missing field"
