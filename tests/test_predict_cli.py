"""``predict`` over a folder mixing good, corrupt and non-image files: what is written, what is reported,
the exit status (0 all parsed, 1 some inputs missing/unreadable, FashionparseError when nothing to do)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from image_fixtures import broken_png, photo
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from fashionparse.categories import coco_categories
from fashionparse.errors import FashionparseError
from fashionparse.serving import load_predictor
from fashionparse.serving.commands import predict
from fashionparse.serving.predict import assign_image_ids, collect_inputs

torch.set_num_threads(1)

THRESHOLD = "0.05"
DF2_EXAMPLES = Path("/work/shared/fixtures/deepfashion2_official")  # DF2's official submission examples


@pytest.fixture()
def mixed_folder(tmp_path: Path) -> Path:
    """000007.jpg and 000012.png decode; 000020.jpg is truncated; 000031.png has a damaged chunk (PIL raises
    SyntaxError, not OSError); notes.txt is no image."""
    folder = tmp_path / "photos"
    folder.mkdir()
    photo(160, 240, seed=1).save(folder / "000007.jpg", quality=95)
    photo(200, 128, seed=2).save(folder / "000012.png")
    whole = (folder / "000007.jpg").read_bytes()
    (folder / "000020.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "000031.png").write_bytes(broken_png())
    (folder / "notes.txt").write_text("not a picture\n")
    return folder


def test_mixed_folder_writes_the_good_reports_the_bad_and_exits_1(tiny_checkpoint: Path, mixed_folder: Path,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "out"
    missing = str(tmp_path / "absent" / "*.jpg")
    result = CliRunner().invoke(predict, [str(tiny_checkpoint), str(mixed_folder), missing, "--out", str(out),
                                          "--score-threshold", THRESHOLD, "--batch-size", "2", "--device", "cpu"])
    assert result.exit_code == 1, result.output
    assert "parsed 2 images" in result.stdout and "3 unreadable, 1 missing" in result.stdout
    for name in ("000020.jpg", "000031.png", "notes.txt"):
        assert f"unreadable: {mixed_folder / name}" in result.stderr
    assert f"missing: {missing}: matched no files" in result.stderr

    summary = json.loads((out / "summary.json").read_text())
    assert (summary["parsed"], summary["unreadable"], summary["missing"]) == (2, 3, 1)
    assert sorted(Path(p["path"]).name for p in summary["problems"] if p["kind"] == "unreadable") == [
        "000020.jpg", "000031.png", "notes.txt"]

    images = json.loads((out / "images.json").read_text())
    assert [(i["id"], Path(i["file_name"]).name) for i in images] == [(7, "000007.jpg"), (12, "000012.png")]
    for entry in images:  # one overlay per parsed image, at the image's size
        with Image.open(out / entry["overlay"]) as overlay:
            assert overlay.size == (entry["width"], entry["height"])
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["000007.jpg", "000012.jpg"]


def test_submission_files_load_in_pycocotools_and_match_the_api(tiny_checkpoint: Path, mixed_folder: Path,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "out"
    CliRunner().invoke(predict, [str(tiny_checkpoint), str(mixed_folder), "--out", str(out), "--score-threshold",
                                 THRESHOLD, "--no-overlays"])
    images = json.loads((out / "images.json").read_text())
    gt = COCO()
    gt.dataset = {"images": [{k: i[k] for k in ("id", "file_name", "width", "height")} for i in images],
                  "annotations": [], "categories": coco_categories()}
    gt.createIndex()
    bbox = gt.loadRes(str(out / "bbox_results.json"))
    segm = gt.loadRes(str(out / "segm_results.json"))
    assert not (out / "overlays").exists()

    if DF2_EXAMPLES.is_dir():  # same fields and JSON types as DF2's own example submission files
        for kind in ("bbox", "segm"):
            ours = json.loads((out / f"{kind}_results.json").read_text())[0]
            official = json.loads((DF2_EXAMPLES / f"example_{kind}_results.json").read_text())[0]
            assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in official.items()}
            if kind == "segm":
                assert set(ours["segmentation"]) == set(official["segmentation"]) == {"size", "counts"}

    parser = load_predictor(tiny_checkpoint, device="cpu", score_threshold=float(THRESHOLD))
    for entry in images:
        expected = parser.predict(entry["file_name"])
        boxes = bbox.loadAnns(bbox.getAnnIds(imgIds=[entry["id"]]))
        masks = segm.loadAnns(segm.getAnnIds(imgIds=[entry["id"]]))
        assert len(boxes) == len(masks) == len(expected) == entry["instances"] > 0
        for inst, b, m in zip(expected, boxes, masks):
            x1, y1, x2, y2 = inst.box
            np.testing.assert_allclose(b["bbox"], [x1, y1, x2 - x1, y2 - y1], rtol=1e-5, atol=1e-4)
            assert b["category_id"] == m["category_id"] == inst.category_id
            assert m["segmentation"]["size"] == [entry["height"], entry["width"]]
            np.testing.assert_array_equal(mask_utils.decode(m["segmentation"]).astype(bool), inst.mask)


def test_all_good_inputs_exit_0(tiny_checkpoint: Path, mixed_folder: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(predict, [str(tiny_checkpoint), str(mixed_folder / "000007.jpg"),
                                          str(mixed_folder / "00001*.png"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["parsed"] == 2


def test_no_input_file_at_all_is_an_error(tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(predict, [str(tiny_checkpoint), str(tmp_path / "nothing.jpg"),
                                          "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, FashionparseError)  # the CLI prints it and exits 2
    assert "no input files" in str(result.exception) and "nothing.jpg" in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_inputs_are_expanded_once_each_in_order(mixed_folder: Path) -> None:
    files, problems = collect_inputs([mixed_folder / "000012.png", mixed_folder, str(mixed_folder / "*.jpg")])
    assert [f.name for f in files] == ["000012.png", "000007.jpg", "000020.jpg", "000031.png", "notes.txt"]
    assert problems == []


def test_image_ids_follow_df2_file_numbers_when_they_can() -> None:
    assert assign_image_ids([Path("a/000123.jpg"), Path("b/000004.png")]) == [123, 4]
    assert assign_image_ids([Path("a/000123.jpg"), Path("b/000123.png")]) == [123, 124]  # repeated number
    assert assign_image_ids([Path("shirt.jpg"), Path("000004.png"), Path("dress.jpg")]) == [5, 4, 6]
    assert assign_image_ids([Path("shirt.jpg"), Path("dress.jpg")]) == [1, 2]


def test_parser_threshold_is_the_model_floor_and_keeps_the_results_above_it(tiny_checkpoint: Path) -> None:
    """Dropping low scores inside the model (before mask pasting) equals filtering an unthresholded run."""
    from fashionparse.api import Parser

    image = np.random.default_rng(0).integers(0, 256, (200, 240, 3), dtype=np.uint8)
    everything = Parser.from_checkpoint(tiny_checkpoint, device="cpu", score_threshold=0.0).predict(image)
    scores = sorted(inst.score for inst in everything)
    threshold = (scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2  # between two scores: no ties
    parser = Parser.from_checkpoint(tiny_checkpoint, device="cpu", score_threshold=threshold)
    assert parser.model.roi_heads.score_thresh == threshold
    kept = parser.predict(image)
    expected = [inst for inst in everything if inst.score >= threshold]
    assert 0 < len(kept) == len(expected) < len(everything)
    for a, b in zip(kept, expected):
        assert (a.category_id, a.score, a.box) == (b.category_id, b.score, b.box)
        assert np.array_equal(a.mask, b.mask)


def test_category_names_follow_the_model_class_count(tiny_checkpoint: Path) -> None:
    from fashionparse.api import Parser

    parser = Parser.from_checkpoint(tiny_checkpoint, device="cpu")
    assert parser.category_name(1) == "short sleeve top" and parser.category_name(13) == "sling dress"
    parser.cfg.model.num_classes = 91  # a COCO-pretraining model: labels are COCO ids, not DF2's
    assert parser.category_name(1) == "category 1"


def test_overlay_of_a_non_df2_model_draws_its_own_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """A COCO-pretrained parser (num_classes 91) returns labels like 44 and names them ``category N``."""
    from fashionparse import visualize
    from fashionparse.api import Instance
    from fashionparse.serving.records import draw_overlay

    mask = np.zeros((48, 64), dtype=bool)
    mask[10:30, 5:40] = True
    instances = [Instance(44, "category 44", 0.8, (5.0, 10.0, 40.0, 30.0), mask, []),
                 Instance(1, "category 1", 0.6, (5.0, 10.0, 40.0, 30.0), mask, [])]
    texts: list[str] = []
    drawn = visualize._draw_text_boxes
    monkeypatch.setattr(visualize, "_draw_text_boxes",
                        lambda img, items, font: texts.extend(t for t, _, _ in items) or drawn(img, items, font))
    overlay = draw_overlay(photo(48, 64, seed=3), instances)
    assert overlay.shape == (3, 48, 64) and overlay.dtype == torch.uint8
    assert texts == ["category 44 0.80", "category 1 0.60"]  # not "short sleeve top" for label 1
