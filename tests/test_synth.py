"""The synthetic DF2 generator: determinism, schema, geometry-derived attributes, distributions, pairs."""

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from fashionparse.categories import BY_ID, CATEGORIES
import shapely

from fashionparse.data.synth import FLIP_PERM, LANDMARK_NAMES, generate_split, plan_split, render_image, render

from fashionparse.data.synth.annotate import OCCLUSION_THRESHOLDS, SCALE_THRESHOLDS, annotate, segmentation
from fashionparse.data.synth.writer import compose_annotated
from fashionparse.data.synth.body import SIDES, sample_pose
from fashionparse.data.synth.garments import build_garment, sample_cut
from fashionparse.data.synth.geometry import to_geometry
from fashionparse.data.synth.scene import compose_scene, image_rng
from fashionparse.errors import ConfigError

SIZE = 160
ATTRS = ("scale", "occlusion", "zoom_in", "viewpoint")


def _items(ann: dict) -> list[dict]:
    return [ann[f"item{i}"] for i in range(1, sum(k.startswith("item") for k in ann) + 1)]


def _mask(polys: list[list[int]], size: int) -> np.ndarray:
    """Visible mask of one item, rasterized by pycocotools; (size, size) bool."""
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, size, size))).astype(bool)


def _annotations(n: int, seed: int, balanced: bool = False, size: int = SIZE) -> list[dict]:
    """Annotations of ``n`` planned images without painting them (fast)."""
    return [compose_annotated(p, size, image_rng(p))[1].data
            for p in plan_split(n, seed, balanced=balanced)]


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[Path, dict[int, dict]]:
    root = tmp_path_factory.mktemp("synth")
    summary = generate_split(root, 40, seed=3, image_size=SIZE, workers=2, progress=False)
    assert summary.num_images == 40
    annos = {int(p.stem): json.loads(p.read_text()) for p in sorted((root / "annos").glob("*.json"))}
    assert summary.num_items == sum(len(_items(a)) for a in annos.values())
    return root, annos


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_whatever_the_workers(tmp_path):
    generate_split(tmp_path / "a", 10, seed=5, image_size=SIZE, workers=1, progress=False)
    generate_split(tmp_path / "b", 10, seed=5, image_size=SIZE, workers=2, progress=False)
    generate_split(tmp_path / "c", 10, seed=6, image_size=SIZE, workers=1, progress=False)
    a, b, c = (_digests(tmp_path / k) for k in "abc")
    assert len(a) == 20 and a == b
    assert a.keys() == c.keys()
    assert sum(a[k] != c[k] for k in a) >= 18  # a different seed changes (nearly) every file


def test_file_names_start_id_and_image_size(tmp_path):
    generate_split(tmp_path, 3, seed=0, image_size=96, start_id=500, progress=False)
    assert sorted(p.name for p in (tmp_path / "image").iterdir()) == ["000500.jpg", "000501.jpg", "000502.jpg"]
    assert sorted(p.name for p in (tmp_path / "annos").iterdir()) == ["000500.json", "000501.json", "000502.json"]
    with Image.open(tmp_path / "image" / "000501.jpg") as im:
        assert im.size == (96, 96) and im.mode == "RGB"
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_folder_holding_a_split_is_refused_unless_overwritten(tmp_path):
    generate_split(tmp_path, 3, seed=0, image_size=96, progress=False)
    before = _digests(tmp_path)
    with pytest.raises(ConfigError, match=f"^{tmp_path}: already holds 6 split files"):
        generate_split(tmp_path, 2, seed=1, image_size=80, progress=False)
    assert _digests(tmp_path) == before
    generate_split(tmp_path, 2, seed=1, image_size=80, progress=False, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "image").iterdir()) == ["000001.jpg", "000002.jpg"]
    assert len(list((tmp_path / "annos").iterdir())) == 2  # the third image of the old split is gone
    with Image.open(tmp_path / "image" / "000001.jpg") as im:
        assert im.size == (80, 80)


def test_demo_data_is_regenerated_whole_when_its_parameters_or_the_generator_change(tmp_path, monkeypatch):
    from fashionparse.engine import demo

    coco_json = demo.prepare_split(tmp_path, "train", 3, 0, 1, 64, balanced=True)
    marked = {**json.loads(coco_json.read_text()), "marker": True}
    assert len(marked["images"]) == 3
    coco_json.write_text(json.dumps(marked))
    assert "marker" in json.loads(demo.prepare_split(tmp_path, "train", 3, 0, 1, 64, balanced=True).read_text())
    monkeypatch.setattr(demo, "GENERATOR_VERSION", demo.GENERATOR_VERSION + 1)
    assert "marker" not in json.loads(demo.prepare_split(tmp_path, "train", 3, 0, 1, 64, balanced=True).read_text())
    assert json.loads((tmp_path / "train.params.json").read_text())["generator"] == demo.GENERATOR_VERSION
    demo.prepare_split(tmp_path, "train", 2, 0, 1, 64, balanced=True)
    assert len(json.loads(coco_json.read_text())["images"]) == 2  # no image of the old split left in it


@pytest.mark.parametrize("kwargs", [{"num_images": 0}, {"image_size": 16}, {"start_id": 999_999, "num_images": 2},
                                    {"workers": 0}])
def test_bad_arguments_raise_config_error(tmp_path, kwargs):
    args = {"num_images": 2} | kwargs
    with pytest.raises(ConfigError):
        generate_split(tmp_path, args.pop("num_images"), progress=False, **args)


def test_schema(split):
    _, annos = split
    for ann in annos.values():
        assert ann["source"] in ("shop", "user") and type(ann["pair_id"]) is int
        items = _items(ann)
        assert len(items) >= 1 and len(ann) == len(items) + 2  # item1..itemN, consecutive
        for it in items:
            cat = BY_ID[it["category_id"]]
            assert it["category_name"] == cat.name
            assert type(it["style"]) is int and it["style"] >= 0
            assert all(it[a] in (1, 2, 3) for a in ATTRS)
            x1, y1, x2, y2 = it["bounding_box"]
            assert all(type(v) is int for v in it["bounding_box"]) and 0 <= x1 < x2 <= SIZE and 0 <= y1 < y2 <= SIZE
            lm = it["landmarks"]
            assert len(lm) == 3 * cat.num_landmarks and all(type(v) is int for v in lm)
            for x, y, v in zip(lm[0::3], lm[1::3], lm[2::3]):
                assert v in (0, 1, 2)
                assert (x, y) == (0, 0) if v == 0 else (0 <= x < SIZE and 0 <= y < SIZE)
            assert any(v > 0 for v in lm[2::3])
            assert it["segmentation"]
            for poly in it["segmentation"]:
                assert len(poly) % 2 == 0 and len(poly) >= 8 and all(type(v) is int for v in poly)
                assert poly[:2] == poly[-2:]  # closed
                assert min(poly) >= 0 and max(poly) <= SIZE


def test_box_is_the_extent_of_the_rasterized_segmentation(split):
    _, annos = split
    for ann in annos.values():
        for it in _items(ann):
            ys, xs = np.nonzero(_mask(it["segmentation"], SIZE))
            assert it["bounding_box"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_every_polygon_rasterizes_to_a_pixel(split):
    """No written polygon is a sliver that pycocotools rasterizes to nothing."""
    _, annos = split
    for ann in annos.values():
        for it in _items(ann):
            assert all(_mask([poly], SIZE).any() for poly in it["segmentation"])


def test_layer_mask_is_the_pixel_centre_rule():
    """The renderer's scanline fill selects exactly the pixels whose centre shapely finds inside the
    geometry, holes and crop offsets included."""
    holed = shapely.box(10.3, 10.6, 50.2, 40.5).difference(shapely.Point(30, 25).buffer(7.3))
    geoms = [holed] + [layer.geom for plan in plan_split(4, 6)
                       for layer in compose_scene(plan, SIZE, image_rng(plan)).layers]
    for geom in geoms:
        x0, y0, x1, y1 = 7, 3, SIZE - 5, SIZE - 9
        xs, ys = np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5
        np.testing.assert_array_equal(render.layer_mask(geom, x0, y0, x1, y1),
                                      shapely.contains_xy(geom, xs[None, :], ys[:, None]))


def test_painted_pixels_match_the_rasterized_annotations(monkeypatch):
    """Paint every layer of some scenes in a flat colour of its own through the renderer's own mask and
    paste, then compare each item's painted pixels with pycocotools' rasterization of its written
    polygons. Rounding the vertices to integers moves the outline by at most sqrt(2)/2 px, so a pixel may
    disagree only if its centre lies within 0.75 px of the written outline; the others are pixels of
    slivers under 1 px wide that the annotation drops on purpose, and must stay rare."""
    monkeypatch.setattr(render, "texture", lambda look, u, v, rng: np.full(u.shape + (3,), code[0], np.float32))
    monkeypatch.setattr(render, "shading", lambda rng, u, v, cloth: np.ones(u.shape, np.float32))
    monkeypatch.setattr(render, "_paint_details", lambda img, layer, shift: None)
    code, ious, far, total = [0], [], 0, 0
    for plan in plan_split(30, 12):
        scene, ann = compose_annotated(plan, SIZE, image_rng(plan))
        canvas = Image.new("RGB", (SIZE, SIZE), (0, 0, 0))
        for k, layer in enumerate(scene.layers, start=1):
            code[0] = k
            render._paint_layer(canvas, layer, np.random.default_rng(0), shadow=False)
        label = np.asarray(canvas)[..., 0].astype(int) - 1
        areas = [layer.geom.area for layer in scene.layers]
        for it, facts in zip(_items(ann.data), ann.facts):
            painted = label == areas.index(facts.silhouette_area)
            mask = _mask(it["segmentation"], SIZE)
            ious.append((painted & mask).sum() / (painted | mask).sum())
            ys, xs = np.nonzero(painted ^ mask)
            outline = shapely.union_all([shapely.LinearRing(np.reshape(p, (-1, 2))) for p in it["segmentation"]])
            far += int((shapely.distance(outline, shapely.points(xs + 0.5, ys + 0.5)) > 0.75).sum())
            total += int(mask.sum())
    assert far <= 0.001 * total, (far, total)
    assert len(ious) >= 50 and np.median(ious) > 0.97 and min(ious) > 0.75, (np.median(ious), min(ious))


def test_visible_landmarks_lie_on_their_mask(split):
    """A v=2 landmark's pixel is in its item's mask or next to it (written coordinates are rounded)."""
    _, annos = split
    seen = Counter()
    for ann in annos.values():
        for it in _items(ann):
            mask = np.pad(_mask(it["segmentation"], SIZE), 1)
            names = LANDMARK_NAMES[it["category_id"]]
            lm = np.array(it["landmarks"]).reshape(-1, 3)
            for j in np.flatnonzero(lm[:, 2] == 2):
                x, y = lm[j, :2] + 1
                assert mask[y - 1:y + 2, x - 1:x + 2].any(), (it["category_name"], names[j])
                seen[names[j]] += 1
    assert sum(seen.values()) > 200


@pytest.mark.parametrize("view", ["front", "side", "back", "flat"])
def test_neck_back_is_on_the_drawn_back_neckline(view):
    """``neck_back`` is on the outline in back views, where the back neckline is drawn; in other views
    the back neckline is not drawn and the landmark is flagged hidden."""
    rng = np.random.default_rng(5)
    for cid in (1, 2, 3, 4, 5, 10, 11, 12):
        geo = build_garment(cid, sample_cut(rng, cid), sample_pose(rng, flat=view == "flat"), view)
        j = LANDMARK_NAMES[cid].index("neck_back")
        outline = to_geometry(geo.parts).boundary
        if view == "back":
            assert not geo.hidden[j] and outline.distance(shapely.Point(geo.landmarks[j])) < 1e-9
        else:
            assert geo.hidden[j]


def test_scale_follows_the_box_area(split):
    _, annos = split
    levels = Counter()
    for ann in annos.values():
        for it in _items(ann):
            x1, y1, x2, y2 = it["bounding_box"]
            share = (x2 - x1) * (y2 - y1) / SIZE**2
            assert it["scale"] == 1 + sum(share >= t for t in SCALE_THRESHOLDS)
            levels[it["scale"]] += 1
    assert len(levels) == 3


def test_segmentation_cuts_holes_open():
    """A region with a hole becomes hole-free polygons whose rasterization is exactly the region."""
    region = shapely.box(10, 10, 50, 40).difference(shapely.box(20, 20, 30, 30))
    polys, rle = segmentation(region, 60)
    assert len(polys) >= 2 and all(p[:2] == p[-2:] for p in polys)
    expected = np.zeros((60, 60), bool)
    expected[10:40, 10:50] = True
    expected[20:30, 20:30] = False
    np.testing.assert_array_equal(_mask(polys, 60), expected)
    np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), expected)
    # a triangle whose corners are pixel corners covers no pixel centre: left out by its rasterized area
    assert segmentation(shapely.Polygon([(10, 10), (11, 10), (10, 11)]), 60) == ([], None)


def test_items_cut_by_the_border_are_zoomed_in(split):
    _, annos = split
    touching = [it for ann in annos.values() for it in _items(ann)
                if min(it["bounding_box"][:2]) == 0 or max(it["bounding_box"][2:]) == SIZE]
    assert len(touching) >= 5
    assert all(it["zoom_in"] > 1 for it in touching)


def test_occlusion_follows_the_hidden_fraction():
    """Occlusion level = thresholds applied to 1 - visible/silhouette, with the visible area measured
    independently by rasterizing the written polygons."""
    checked, heavy = 0, 0
    for plan in plan_split(60, 8):
        scene = compose_scene(plan, SIZE, image_rng(plan))
        ann = annotate(scene)
        for it, facts in zip(_items(ann.data), ann.facts):
            hidden = 1.0 - _mask(it["segmentation"], SIZE).sum() / facts.silhouette_area
            if min(abs(hidden - t) for t in OCCLUSION_THRESHOLDS) < 0.04:
                continue  # pixel rounding could flip the level
            assert it["occlusion"] == 1 + sum(hidden >= t for t in OCCLUSION_THRESHOLDS)
            checked += 1
            heavy += hidden > 0.5
    assert checked >= 60 and heavy >= 3


def test_visible_landmarks_are_not_under_later_items(split):
    """Items are numbered in drawing order; a v=2 landmark must not sit on a later item's mask."""
    _, annos = split
    visible, violations = 0, 0
    for ann in annos.values():
        items = _items(ann)
        masks = [_mask(it["segmentation"], SIZE) for it in items]
        for i, it in enumerate(items):
            lm = np.array(it["landmarks"]).reshape(-1, 3)
            for x, y, v in lm[lm[:, 2] == 2]:
                visible += 1
                violations += any(m[y, x] for m in masks[i + 1:])
    assert visible > 200 and violations <= 0.02 * visible


def test_viewpoint_flat_only_for_shop_flat_lays(split):
    _, annos = split
    views = Counter((ann["source"], it["viewpoint"]) for ann in annos.values() for it in _items(ann))
    assert views[("user", 1)] == 0
    assert views[("shop", 1)] > 0 and views[("user", 2)] > 0


def test_pairs_link_one_shop_and_user_images_of_the_same_garment():
    anns = _annotations(60, seed=4)
    garments: dict[tuple[int, int], list[tuple[str, int]]] = defaultdict(list)
    for ann in anns:
        for it in _items(ann):
            if it["style"] > 0:
                garments[(ann["pair_id"], it["style"])].append((ann["source"], it["category_id"]))
    assert len(garments) >= 10
    for seen in garments.values():
        sources = [s for s, _ in seen]
        assert len(seen) >= 2 and sources.count("shop") == 1 and sources.count("user") >= 1
        assert len({c for _, c in seen}) == 1


def test_paired_garment_keeps_its_look(tmp_path):
    """The shop and user images of one pair show the same colours: compare mean colour inside masks."""
    plans = [p for p in plan_split(40, 9) if p.shared]
    by_pair = defaultdict(list)
    for p in plans:
        img, ann = render_image(p, SIZE)
        for it in _items(ann):
            if it["style"] == 1 and it["occlusion"] < 3:
                by_pair[p.pair_id].append(np.asarray(img)[_mask(it["segmentation"], SIZE)].mean(0))
    diffs = [np.abs(c[0] - c[1]).max() for c in by_pair.values() if len(c) >= 2]
    assert len(diffs) >= 5
    assert np.median(diffs) < 40  # same garment: similar colour despite lighting and pose


def _category_counts(anns: list[dict]) -> Counter:
    return Counter(it["category_id"] for ann in anns for it in _items(ann))


def test_balanced_mode_covers_all_categories_evenly():
    """Item shares within 0.6x..1.5x of uniform: the solver's expected shares are 0.96x..1.13x (its floor
    on target weights costs exactness), and 600 images (~1,200 items) add about 10% sampling noise."""
    counts = _category_counts(_annotations(600, seed=1, balanced=True))
    mean = sum(counts.values()) / len(CATEGORIES)
    assert set(counts) == {c.id for c in CATEGORIES}
    assert all(0.6 * mean <= counts[c.id] <= 1.5 * mean for c in CATEGORIES), counts


def test_balanced_mode_builds_groups_around_every_category():
    """Every category is sometimes the shared (style 1) garment and a shop flat-lay, bottoms included:
    ~1,150 pair groups, where a target weight floored at ``MIN_TARGET_SHARE`` (0.3) of uniform gives
    bottoms about 25 each; at least 10% of uniform is required."""
    plans = plan_split(3000, 2, balanced=True)
    shared = Counter(g.category_id for p in plans if p.source == "shop" for style, g in p.shared if style == 1)
    flat = Counter(p.target for p in plans if p.flat)
    assert all(shared[c.id] >= 0.1 * sum(shared.values()) / len(CATEGORIES) for c in CATEGORIES), shared
    assert all(flat[c.id] >= 1 for c in CATEGORIES), flat


def test_default_mode_follows_the_long_tail():
    counts = _category_counts(_annotations(150, seed=1))
    assert counts.most_common(1)[0][0] == 1  # short sleeve top
    assert counts[1] > 5 * max(counts[3], 1) and counts[8] > 3 * max(counts[6], 1)  # vs outwear, sling
    assert counts[8] > counts[11] and counts[2] > counts[13]


@pytest.mark.parametrize("cid", [c.id for c in CATEGORIES])
def test_flip_perm_matches_mirrored_geometry(cid):
    """On a mirror-symmetric figure, mirroring landmark i must land on landmark FLIP_PERM[i]."""
    names = LANDMARK_NAMES[cid]
    perm = np.array(FLIP_PERM[cid])
    assert len(names) == BY_ID[cid].num_landmarks and np.array_equal(perm[perm], np.arange(len(perm)))
    rng = np.random.default_rng(cid)
    pose = sample_pose(rng, flat=False)
    mirror = np.array([-1.0, 1.0])
    pose = type(pose)(**{**pose.__dict__, "arm": np.stack([pose.arm[0], pose.arm[0] * mirror]),
                         "leg": np.stack([pose.leg[0], pose.leg[0] * mirror])})
    assert SIDES == (-1.0, 1.0)
    lm = build_garment(cid, sample_cut(rng, cid), pose, "front").landmarks
    np.testing.assert_allclose(lm[perm] * mirror, lm, atol=1e-9)


def test_written_split_passes_the_strict_df2_reader(split):
    df2 = pytest.importorskip("fashionparse.data.df2")
    root, annos = split
    report = df2.read_split(root, strict=True, workers=1, progress=False)
    assert report.problems == [] and len(report.records) == len(annos)
