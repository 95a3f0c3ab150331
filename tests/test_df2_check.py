"""DF2 reader/validator: good files read field for field, one fixture per validation rule."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from df2_fixtures import (
    EXAMPLE_SIZE, SHORT_SLEEVE_TOP, SKIRT, anno_path, example_annotation, image_path, make_annotation, make_item,
    write_image, write_split,
)

from fashionparse.data.df2 import BOUNDS_TOLERANCE_PX, PROBLEM_KINDS, read_split
from fashionparse.errors import AnnotationError

SIZE = (64, 48)


def read(root: Path, **kw: Any):
    return read_split(root, workers=1, progress=False, **kw)


def test_reads_real_example_field_for_field(tmp_path: Path) -> None:
    root = write_split(tmp_path, {1811: example_annotation()}, size=EXAMPLE_SIZE)
    report = read(root)
    assert report.problems == [] and report.skipped_images == 0 and report.skipped_items == 0
    (rec,) = report.records
    assert (rec.image_id, rec.file_name, rec.width, rec.height) == (1811, "001811.jpg", 640, 480)
    assert (rec.source, rec.pair_id) == ("shop", 1811)
    assert rec.image_path == image_path(root, 1811) and rec.anno_path == anno_path(root, 1811)
    assert [it.key for it in rec.items] == ["item1", "item2"]  # file has item2 first
    for item, raw in zip(rec.items, (SKIRT, SHORT_SLEEVE_TOP)):
        assert item.category_id == raw["category_id"] and item.category_name == raw["category_name"]
        assert item.style == raw["style"]
        assert list(item.bounding_box) == raw["bounding_box"]
        assert list(item.landmarks) == raw["landmarks"]
        assert [list(p) for p in item.segmentation] == raw["segmentation"]
        assert (item.scale, item.occlusion, item.zoom_in, item.viewpoint) == tuple(
            raw[k] for k in ("scale", "occlusion", "zoom_in", "viewpoint"))
    assert "no problems found" in report.summary_table()


def test_unknown_keys_tolerated(tmp_path: Path) -> None:
    item = make_item(7, (5, 5, 30, 30))
    item["colour"] = "red"
    anno = make_annotation(item)
    anno["photographer"] = {"name": "x"}
    report = read(write_split(tmp_path, {1: anno}, size=SIZE))
    assert report.problems == [] and len(report.records[0].items) == 1


def test_exif_orientation_not_applied(tmp_path: Path) -> None:
    root = write_split(tmp_path, {1: make_annotation(make_item(1, (1, 1, 20, 20)))}, with_images=[])
    write_image(image_path(root, 1), (60, 30), exif_orientation=6)  # 6 = rotate 90 on display
    (rec,) = read(root).records
    assert (rec.width, rec.height) == (60, 30)


# --- item rules: (mutation of a valid item, kind, field, message fragment) -----------------------------

def _set(key: str, value: Any) -> Callable[[dict], None]:
    return lambda item: item.__setitem__(key, value)


def _del(key: str) -> Callable[[dict], None]:
    return lambda item: item.__delitem__(key)


W, H = SIZE
ITEM_CASES = [
    ("category_out_of_range", _set("category_id", 14), "bad_category", "category_id", "integer 1..13, got 14"),
    ("category_as_string", _set("category_id", "1"), "bad_category", "category_id", "got '1'"),
    ("category_name_mismatch", _set("category_name", "skirt"), "category_mismatch", "category_name",
     "'skirt' does not match category_id 1 ('short sleeve top')"),
    ("style_negative", _set("style", -1), "bad_style", "style", "integer >= 0, got -1"),
    ("scale_4", _set("scale", 4), "bad_attribute", "scale", "integer 1..3, got 4"),
    ("occlusion_0", _set("occlusion", 0), "bad_attribute", "occlusion", "integer 1..3, got 0"),
    ("zoom_in_string", _set("zoom_in", "1"), "bad_attribute", "zoom_in", "integer 1..3, got '1'"),
    ("viewpoint_float", _set("viewpoint", 2.0), "bad_attribute", "viewpoint", "integer 1..3, got 2.0"),
    ("bbox_3_values", _set("bounding_box", [1, 2, 3]), "bad_bbox", "bounding_box", "4 numbers"),
    ("bbox_zero_width", _set("bounding_box", [10, 5, 10, 20]), "bad_bbox", "bounding_box", "non-positive size 0 x 15"),
    ("bbox_outside", _set("bounding_box", [10, 5, W + 3, 20]), "bbox_outside", "bounding_box",
     f"outside the {W}x{H} image"),
    ("polygon_odd", _set("segmentation", [[1, 1, 10, 1, 10, 10, 1]]), "bad_polygon", "segmentation",
     "polygon 0 has an odd number of coordinates (7)"),
    ("only_polygon_2_points", _set("segmentation", [[1, 1, 10, 10]]), "bad_polygon", "segmentation",
     "polygon 0 has 2 points, needs at least 3"),
    ("polygon_outside", _set("segmentation", [[1, 1, 10, 1, -5, 10]]), "polygon_outside", "segmentation",
     "polygon 0 has point (-5, 10) outside"),
    ("polygon_not_numbers", _set("segmentation", [[1, 1, "a", 1, 5, 5]]), "bad_polygon", "segmentation",
     "flat list of numbers"),
    ("segmentation_empty", _set("segmentation", []), "bad_polygon", "segmentation", "non-empty list"),
    ("landmarks_length", _set("landmarks", [0] * 72), "bad_landmarks", "landmarks",
     "has 72 values, expected 75 (3 x 25 landmarks of 'short sleeve top')"),
    ("landmark_flag", _set("landmarks", [0] * 72 + [5, 5, 3]), "bad_landmarks", "landmarks",
     "visibility flag must be 0, 1 or 2, got 3"),
    ("missing_scale", _del("scale"), "missing_field", "scale", "required field is missing"),
]


@pytest.mark.parametrize("mutate, kind, field, fragment", [c[1:] for c in ITEM_CASES], ids=[c[0] for c in ITEM_CASES])
def test_item_rule_skips_only_that_item(tmp_path: Path, mutate, kind: str, field: str, fragment: str) -> None:
    bad = make_item(1, (10, 5, 40, 30))
    mutate(bad)
    root = write_split(tmp_path, {3: make_annotation(make_item(9, (2, 2, 20, 20)), bad)}, size=SIZE)
    report = read(root)
    (problem,) = report.problems
    assert (problem.kind, problem.item, problem.field) == (kind, "item2", field)
    assert fragment in problem.message
    assert problem.file == str(anno_path(root, 3))
    assert report.skipped_items == 1 and report.skipped_images == 0
    assert [it.key for it in report.records[0].items] == ["item1"]
    with pytest.raises(AnnotationError) as err:
        read(root, strict=True)
    assert str(err.value) == str(problem)
    assert err.value.field == f"item2.{field}" and err.value.path == str(anno_path(root, 3))


def test_polygon_2_points_dropped_item_kept(tmp_path: Path) -> None:
    bad = make_item(1, (10, 5, 40, 30))
    rectangle = bad["segmentation"][0]
    bad["segmentation"] = [rectangle, [1, 1, 10, 10], [12, 6, 30, 6, 30, 20]]
    root = write_split(tmp_path, {3: make_annotation(make_item(9, (2, 2, 20, 20)), bad)}, size=SIZE)
    report = read(root)
    (problem,) = report.problems
    assert (problem.kind, problem.item, problem.field, problem.level) == ("short_polygon", "item2", "segmentation",
                                                                          "part")
    assert problem.message == "polygon 1 has 2 points, needs at least 3; dropped"
    assert report.skipped_items == 0 and report.dropped_polygons == 1
    kept = report.records[0].items[1]
    assert kept.key == "item2" and kept.bounding_box == (10, 5, 40, 30)
    assert [list(p) for p in kept.segmentation] == [[10, 5, 40, 5, 40, 30, 10, 30, 10, 5], [12, 6, 30, 6, 30, 20]]
    assert list(kept.landmarks) == bad["landmarks"]
    table = report.summary_table()
    assert table.splitlines()[0].endswith("2 items kept, 0 skipped; 1 polygons dropped")
    assert next(ln for ln in table.splitlines() if "short_polygon" in ln).split()[:3] == ["1", "short_polygon", "part"]
    with pytest.raises(AnnotationError, match="item2.segmentation: polygon 1 has 2 points"):
        read(root, strict=True)


def test_annotation_without_items_is_an_image_without_garments(tmp_path: Path) -> None:
    anno = make_annotation(make_item(1, (2, 2, 30, 30)))
    del anno["item1"]
    report = read(write_split(tmp_path, {4: anno}, size=SIZE), strict=True)  # the official converter keeps it
    assert report.problems == [] and [len(r.items) for r in report.records] == [0]


def test_item_key_not_item_number(tmp_path: Path) -> None:
    anno = make_annotation(make_item(1, (2, 2, 30, 30)))
    anno["item_2"] = make_item(9, (5, 5, 20, 20))
    anno["itemX"] = make_item(9, (5, 5, 20, 20))
    root = write_split(tmp_path, {4: anno}, size=SIZE)
    report = read(root)
    assert [(p.kind, p.item, p.level) for p in report.problems] == [("bad_item_key", "itemX", "item"),
                                                                     ("bad_item_key", "item_2", "item")]
    assert [it.key for it in report.records[0].items] == ["item1"]
    assert report.skipped_items == 2 and report.skipped_images == 0
    with pytest.raises(AnnotationError) as err:
        read(root, strict=True)
    assert err.value.path == str(anno_path(root, 4)) and err.value.field == "itemX"


def test_item_not_an_object(tmp_path: Path) -> None:
    report = read(write_split(tmp_path, {1: make_annotation(make_item(), [1, 2])}, size=SIZE))
    assert [(p.kind, p.item) for p in report.problems] == [("bad_item", "item2")]
    assert report.skipped_items == 1


def test_bounds_tolerance_edge(tmp_path: Path) -> None:
    tol = BOUNDS_TOLERANCE_PX
    item = make_item(1, (-tol, 0, W + tol, H + tol))
    item["segmentation"] = [[-tol, -tol, W + tol, 0, W, H + tol]]
    report = read(write_split(tmp_path, {1: make_annotation(item)}, size=SIZE))
    assert report.problems == [] and len(report.records[0].items) == 1


# --- image-level rules: each skips the whole image; image 1 is always good ------------------------------

def _good() -> dict:
    return make_annotation(make_item(1, (2, 2, 30, 30)))


def _case_json(text: str) -> Callable[[Path], None]:
    return lambda root: anno_path(root, 2).write_text(text)


def _case_anno(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        anno = _good()
        change(anno)
        anno_path(root, 2).write_text(json.dumps(anno))
    return apply


def _garbage_image(root: Path) -> None:
    image_path(root, 2).write_bytes(b"not an image at all")


def _truncated_image(root: Path) -> None:
    data = image_path(root, 2).read_bytes()
    image_path(root, 2).write_bytes(data[: len(data) // 2])


IMAGE_CASES = [
    ("broken_json", _case_json('{"source": "shop", '), "bad_json", "annos", None, "unreadable JSON"),
    ("json_list", _case_json("[1, 2]"), "bad_json", "annos", None, "must hold a JSON object, got list"),
    ("bad_source", _case_anno(lambda a: a.__setitem__("source", "store")), "bad_source", "annos", "source",
     "must be 'shop' or 'user', got 'store'"),
    ("missing_source", _case_anno(lambda a: a.__delitem__("source")), "missing_field", "annos", "source",
     "required field is missing"),
    ("missing_pair_id", _case_anno(lambda a: a.__delitem__("pair_id")), "missing_field", "annos", "pair_id",
     "required field is missing"),
    ("pair_id_string", _case_anno(lambda a: a.__setitem__("pair_id", "12")), "bad_pair_id", "annos", "pair_id",
     "must be an integer, got '12'"),
    ("missing_image", lambda root: image_path(root, 2).unlink(), "missing_image", "annos", None,
     "no image image/000002.jpg"),
    ("missing_annotation", lambda root: anno_path(root, 2).unlink(), "missing_annotation", "image", None,
     "no annotation annos/000002.json"),
    ("garbage_image", _garbage_image, "bad_image", "image", None, "cannot decode image"),
    ("truncated_image", _truncated_image, "bad_image", "image", None, "cannot decode image"),
]


@pytest.mark.parametrize("setup, kind, folder, field, fragment", [c[1:] for c in IMAGE_CASES],
                         ids=[c[0] for c in IMAGE_CASES])
def test_image_rule_skips_image(tmp_path: Path, setup, kind: str, folder: str, field: str | None,
                                fragment: str) -> None:
    root = write_split(tmp_path, {1: _good(), 2: _good()}, size=SIZE)
    setup(root)
    report = read(root)
    (problem,) = report.problems
    assert (problem.kind, problem.item, problem.field) == (kind, None, field)
    assert fragment in problem.message
    assert Path(problem.file).parent.name == folder and Path(problem.file).stem == "000002"
    assert [r.image_id for r in report.records] == [1]
    assert report.skipped_images == 1
    with pytest.raises(AnnotationError) as err:
        read(root, strict=True)
    assert str(err.value) == str(problem)


@pytest.mark.parametrize("folder, name, kind", [
    ("annos", "notes.txt", "unexpected_file"),
    ("image", "cover.jpg", "bad_file_name"),
    ("annos", "1.json", "duplicate_id"),  # same id as 000001.json
])
def test_stray_files_reported(tmp_path: Path, folder: str, name: str, kind: str) -> None:
    root = write_split(tmp_path, {1: _good()}, size=SIZE)
    (root / folder / name).write_text("{}")
    report = read(root)
    assert [(p.kind, Path(p.file).name) for p in report.problems] == [(kind, name)]
    assert [r.image_id for r in report.records] == [1]
    assert report.ignored_files == 1 and report.skipped_images == 0
    with pytest.raises(AnnotationError, match=name):
        read(root, strict=True)


def test_missing_folder_raises_even_lenient(tmp_path: Path) -> None:
    (tmp_path / "image").mkdir()
    with pytest.raises(AnnotationError, match="annos"):
        read(tmp_path)


def test_problem_line_names_file_item_field(tmp_path: Path) -> None:
    bad = make_item(1)
    bad["bounding_box"] = [10, 5, 10, 20]
    root = write_split(tmp_path, {5: make_annotation(bad)}, size=SIZE)
    (problem,) = read(root).problems
    line = str(problem)
    assert "\n" not in line
    assert line.startswith(f"{anno_path(root, 5)}: item1.bounding_box: has non-positive size")


def test_summary_table_counts_by_kind(tmp_path: Path) -> None:
    bad_box = make_item(1, (10, 5, W + 10, 20))
    annos = {1: make_annotation(bad_box, make_item(2, (1, 1, 9, 9))), 2: make_annotation(bad_box), 3: _good()}
    root = write_split(tmp_path, annos, size=SIZE, with_images=[1, 2])
    report = read(root)
    table = report.summary_table()
    assert table.splitlines()[0] == (f"DF2 split {root}: 2 images kept, 1 skipped; 1 items kept, 2 skipped")
    rows = {line.split()[1]: line.split() for line in table.splitlines()[2:]}
    assert rows["bbox_outside"][:3] == ["2", "bbox_outside", "item"]
    assert rows["missing_image"][:3] == ["1", "missing_image", "image"]
    assert set(rows) <= set(PROBLEM_KINDS)


def test_parallel_equals_serial_and_ordered(tmp_path: Path) -> None:
    ids = [40, 3, 17, 8, 25, 1, 12, 33, 5, 21, 9, 14]
    annos = {i: make_annotation(*[make_item(1 + (i + k) % 13, (k, k, 20 + k, 20 + k)) for k in range(1 + i % 3)],
                                pair_id=i) for i in ids}
    annos[17]["item1"]["scale"] = 9  # one bad item
    annos[25] = "{oops"  # one bad image
    root = write_split(tmp_path, annos, size=SIZE)
    serial = read(root)
    parallel = read_split(root, workers=2, progress=False)
    assert [r.image_id for r in serial.records] == sorted(set(ids) - {25})
    assert parallel.records == serial.records
    assert parallel.problems == serial.problems and len(serial.problems) == 2
    assert (parallel.skipped_items, parallel.skipped_images) == (1, 1)
    with pytest.raises(AnnotationError, match="000017.json: item1.scale"):
        read_split(root, workers=2, progress=False, strict=True)
