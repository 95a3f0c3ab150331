"""Dataset statistics: hand-counted split, same numbers from the converted COCO file, table and plot."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from df2_fixtures import make_annotation, make_item, write_split
from PIL import Image

from fashionparse.data.convert import convert_split
from fashionparse.data.stats import compute_stats, format_stats, plot_category_counts, stats_from_images
from fashionparse.errors import AnnotationError


def _box(side: int) -> tuple[int, int, int, int]:
    return (1, 1, 1 + side, 1 + side)


@pytest.fixture
def split(tmp_path: Path) -> Path:
    """4 images, 6 good items + 1 bad one; bbox sides 10, 40, 100, 32, 96, 31 (areas straddle 32^2, 96^2)."""
    bad = make_item(2, _box(5))
    bad["scale"] = 7
    annos = {
        1: make_annotation(make_item(1, _box(10), scale=1), make_item(9, _box(40), occlusion=2), source="shop"),
        2: make_annotation(make_item(1, _box(100), scale=3, zoom_in=3), source="user"),
        3: make_annotation(make_item(8, _box(32), viewpoint=3), make_item(8, _box(96), viewpoint=1),
                           make_item(13, _box(31), occlusion=3), source="user"),
        4: make_annotation(bad, source="shop"),
    }
    return write_split(tmp_path / "split", annos, size=(128, 128))


def test_split_counts_by_hand(split: Path) -> None:
    s = compute_stats(split, workers=1, progress=False)
    assert (s.num_images, s.num_items, s.skipped_images, s.skipped_items) == (4, 6, 0, 1)
    assert s.per_category == {1: 2, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0, 8: 2, 9: 1, 10: 0, 11: 0, 12: 0, 13: 1}
    assert s.per_source == {"shop": 2, "user": 4}
    assert s.per_attribute == {
        "scale": {1: 1, 2: 4, 3: 1},
        "occlusion": {1: 4, 2: 1, 3: 1},
        "zoom_in": {1: 5, 2: 0, 3: 1},
        "viewpoint": {1: 1, 2: 4, 3: 1},
    }
    assert s.items_per_image == {0: 1, 1: 1, 2: 1, 3: 1}
    # areas 100, 961 small; 1024 (= 32^2), 1600 medium; 9216 (= 96^2), 10000 large
    assert s.box_size == {"small": 2, "medium": 2, "large": 2}
    # sqrt areas sorted 10, 31, 32, 40, 96, 100; linear interpolation at p * 5
    assert s.sqrt_area_quantiles == pytest.approx(
        {0.0: 10, 0.05: 10 + 0.25 * 21, 0.25: 31.25, 0.5: 36, 0.75: 82, 0.95: 99, 1.0: 100})


def test_coco_file_gives_same_stats(split: Path, tmp_path: Path) -> None:
    out = tmp_path / "coco.json"
    convert_split(split, out, workers=1, progress=False)
    from_dir = compute_stats(split, workers=2, progress=False)
    from_coco = compute_stats(out)
    assert from_coco.origin == str(out)
    assert replace(from_coco, origin="", skipped_items=1) == replace(from_dir, origin="")


def test_coco_without_extra_fields(split: Path, tmp_path: Path) -> None:
    out = tmp_path / "coco.json"
    convert_split(split, out, workers=1, progress=False)
    coco = json.loads(out.read_text())
    for ann in coco["annotations"]:
        for key in ("source", "scale", "occlusion", "zoom_in", "viewpoint"):
            del ann[key]
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(coco))
    s = compute_stats(plain)
    assert s.per_attribute == {} and s.per_source == {}
    assert s.per_category[8] == 2 and s.box_size == {"small": 2, "medium": 2, "large": 2}
    text = format_stats(s)
    assert text.count("n/a (not recorded in this input)") == 5  # 4 attributes + source


def test_format_table_and_second_column(split: Path) -> None:
    s = compute_stats(split, workers=1, progress=False)
    text = format_stats(s)
    lines = text.splitlines()
    assert lines[0] == f"DF2 statistics of {split}: 4 images, 6 items (1.50 per image)"
    assert "skipped (invalid, crowd or degenerate box): 0 images, 1 items" in lines
    assert next(ln for ln in lines if "short sleeve top" in ln).split() == ["1", "short", "sleeve", "top", "2", "33.3%"]
    assert [ln.split()[-2:] for ln in lines if ln.strip().startswith("large  >= 96^2")] == [["2", "33.3%"]]

    effective = stats_from_images("sampled", [[]])  # an empty second distribution
    effective.per_category = {1: 4.5, 8: 1.5}
    both = format_stats(s, effective)
    header = next(ln for ln in both.splitlines() if ln.startswith("items per category"))
    assert header.split()[-4:] == ["items", "share", "effective", "share"]
    row = next(ln for ln in both.splitlines() if "short sleeve top" in ln)
    assert row.split()[-4:] == ["2", "33.3%", "4.5", "75.0%"]


def test_plot_written_atomically(split: Path, tmp_path: Path) -> None:
    s = compute_stats(split, workers=1, progress=False)
    png = tmp_path / "plots" / "cats.png"
    png.parent.mkdir()
    png.write_bytes(b"old")
    plot_category_counts(s, png)
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200
    assert [p.name for p in png.parent.iterdir()] == ["cats.png"]  # no temp file left behind


def test_bad_inputs_raise(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="not found"):
        compute_stats(tmp_path / "nope")
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(AnnotationError, match="unreadable JSON"):
        compute_stats(broken)
    no_anns = tmp_path / "no_anns.json"
    no_anns.write_text('{"images": []}')
    with pytest.raises(AnnotationError, match="annotations"):
        compute_stats(no_anns)
    orphan = tmp_path / "orphan.json"
    anns = [{"image_id": i, "category_id": 1, "bbox": [0, 0, 2, 2]} for i in (1, 9)]  # image 9 is not listed
    orphan.write_text(json.dumps({"images": [{"id": 1, "width": 4, "height": 4}], "annotations": anns}))
    with pytest.raises(AnnotationError, match=r"annotations\[1\]"):
        compute_stats(orphan)
    no_size = tmp_path / "no_size.json"
    no_size.write_text(json.dumps({"images": [{"id": 1}], "annotations": anns[:1]}))
    with pytest.raises(AnnotationError, match=r"images\[0\]: every image needs an integer 'id', a 'width'"):
        compute_stats(no_size)
    text_id = tmp_path / "text_id.json"
    images = [{"id": 1, "width": 4, "height": 4}, {"id": "b", "width": 4, "height": 4}]
    text_id.write_text(json.dumps({"images": images, "annotations": []}))
    with pytest.raises(AnnotationError, match=r"images\[1\]"):
        compute_stats(text_id)
    twice = tmp_path / "twice.json"
    images = [{"id": i, "width": 4, "height": 4} for i in (1, 2, 1)]
    twice.write_text(json.dumps({"images": images, "annotations": anns[:1]}))
    with pytest.raises(AnnotationError, match=r"twice.json: images\[2\].id: id 1 is also images\[0\]'s"):
        compute_stats(twice)


def test_coco_counts_the_training_items(tmp_path: Path) -> None:
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 50, "height": 50} for i in (1, 2)]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [0, 0, 20, 20], "iscrowd": 1},  # crowd
            {"id": 3, "image_id": 2, "category_id": 9, "bbox": [60, 0, 10, 10]},  # box outside the 50x50 image
            {"id": 4, "image_id": 2, "category_id": 8, "bbox": [5, 5, 40, 40]}]
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": []}))
    s = compute_stats(path)
    assert (s.num_images, s.num_items, s.skipped_items) == (2, 2, 2)
    assert {c: n for c, n in s.per_category.items() if n} == {1: 1, 8: 1}
    assert "skipped (invalid, crowd or degenerate box): 0 images, 2 items" in format_stats(s).splitlines()
