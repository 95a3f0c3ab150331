"""Augmentation geometry: rotated polygons vs rotated masks, tight boxes, landmarks that follow the image, flips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torchvision import tv_tensors

from fashionparse.categories import BY_ID, CATEGORIES, TOTAL_LANDMARKS
from fashionparse.config import DataConfig
from fashionparse.data.augment import (
    HorizontalFlip,
    RandomRotateScale,
    build_train_transforms,
    landmark_flip_permutation,
    warp,
)
from fashionparse.data.dataset import CocoInstanceDataset
from fashionparse.errors import AnnotationError

H, W = 150, 190
# a non-convex hexagon well inside the canvas, and a small square near the corner that zooming pushes out
HEXAGON = [40.3, 30.2, 120.6, 42.1, 140.2, 90.4, 100.5, 118.7, 62.2, 80.1, 35.4, 104.9]
CORNER = [1.0, 1.0, 7.0, 1.0, 7.0, 7.0, 1.0, 7.0]


def _raster(poly: list[float]) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([poly], H, W)))


def _rotate_polygon(poly: list[float], angle: float, scale: float) -> list[float]:
    """Analytic rotation (clockwise on screen, y pointing down) and zoom about the canvas centre (W/2, H/2)."""
    t = math.radians(angle)
    out = []
    for x, y in zip(poly[0::2], poly[1::2]):
        dx, dy = x - W / 2, y - H / 2
        out += [W / 2 + scale * (dx * math.cos(t) - dy * math.sin(t)),
                H / 2 + scale * (dx * math.sin(t) + dy * math.cos(t))]
    return out


def _sample(polys: list[list[float]], labels: list[int], image: torch.Tensor | None = None):
    masks = torch.from_numpy(np.stack([_raster(p) for p in polys]))
    boxes = [mask_utils.toBbox(mask_utils.encode(np.asfortranarray(m.numpy()))) for m in masks]
    target = {
        "boxes": tv_tensors.BoundingBoxes([[x, y, x + w, y + h] for x, y, w, h in boxes], format="XYXY",
                                          canvas_size=(H, W)),
        "labels": torch.tensor(labels),
        "masks": tv_tensors.Mask(masks),
        "area": torch.zeros(len(labels)),
        "iscrowd": torch.zeros(len(labels), dtype=torch.int64),
        "image_id": 7,
        "keypoints": tv_tensors.KeyPoints(torch.zeros(len(labels), TOTAL_LANDMARKS, 2), canvas_size=(H, W)),
        "keypoints_visibility": torch.zeros(len(labels), TOTAL_LANDMARKS, dtype=torch.int64),
    }
    image = torch.rand(3, H, W) if image is None else image
    return tv_tensors.Image(image), target


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _tight_xyxy(mask: torch.Tensor) -> list[float]:
    """Reference box: pycocotools' toBbox of the mask, as XYXY."""
    x, y, w, h = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask.numpy().astype(np.uint8))))
    return [x, y, x + w, y + h]


@pytest.mark.parametrize("angle,scale", [(25.0, 1.0), (-25.0, 1.0), (13.0, 1.15), (-7.0, 0.85)])
def test_warped_mask_matches_rasterized_warped_polygon(angle, scale):
    image, target = _sample([HEXAGON], [3])
    _, out = warp(image, target, angle, scale)
    expected = _raster(_rotate_polygon(HEXAGON, angle, scale))
    assert _iou(out["masks"][0].numpy().astype(bool), expected.astype(bool)) >= 0.98
    assert out["boxes"].tolist() == [_tight_xyxy(out["masks"][0])]


def test_boxes_are_tight_and_vanished_instances_are_counted():
    image, target = _sample([HEXAGON, CORNER, [150, 20, 185, 20, 185, 140, 150, 140]], [1, 6, 8])
    _, out = warp(image, target, angle=20.0, scale=1.2)
    assert out["labels"].tolist() == [1, 8]  # the corner square left the canvas
    assert out["dropped_instances"] == 1
    assert len(out["masks"]) == len(out["boxes"]) == len(out["area"]) == len(out["keypoints"]) == 2
    for mask, box, area in zip(out["masks"], out["boxes"].tolist(), out["area"].tolist()):
        assert box == _tight_xyxy(mask)
        assert area == pytest.approx((box[2] - box[0]) * (box[3] - box[1]))
    # the rotated box is not the rotated corners' box: it hugs the mask
    corners = torch.tensor(_rotate_polygon([40.3, 30.2, 140.2, 30.2, 140.2, 118.7, 40.3, 118.7], 20.0, 1.2))
    assert out["boxes"][0, 2] - out["boxes"][0, 0] < corners[0::2].max() - corners[0::2].min() - 5


def _marked_sample(points: list[tuple[int, int]]):
    """One instance (the hexagon); landmark k sits on the centre of a 5x5 block painted into image channel k."""
    image = torch.zeros(3, H, W)
    for k, (i, j) in enumerate(points):
        image[k, j - 2:j + 3, i - 2:i + 3] = 1.0
    img, target = _sample([HEXAGON], [1], image)
    slots = [0, 6, 12]  # short sleeve top: centre of neck, a left/right pair member, another
    for k, (i, j) in enumerate(points):
        target["keypoints"][0, slots[k]] = torch.tensor([i + 0.5, j + 0.5])  # pixel centres on the edge plane
        target["keypoints_visibility"][0, slots[k]] = 2
    return img, target, slots


def _centroid(channel: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    return torch.stack([(xs * channel).sum(), (ys * channel).sum()]) / channel.sum()


@pytest.mark.parametrize("angle,scale", [(25.0, 1.0), (-18.0, 1.2), (0.0, 0.8)])
def test_landmarks_follow_the_image_under_warp(angle, scale):
    image, target, slots = _marked_sample([(60, 50), (110, 70), (80, 100)])
    out_image, out = warp(image, target, angle, scale)
    for k, slot in enumerate(slots):
        assert torch.allclose(out["keypoints"][0, slot], _centroid(out_image[k]), atol=0.3)
        assert out["keypoints_visibility"][0, slot] == 2


def test_landmarks_follow_the_image_under_flip_and_swap_sides():
    image, target, slots = _marked_sample([(60, 50), (110, 70), (80, 100)])
    perm = landmark_flip_permutation("df2")
    out_image, out = HorizontalFlip(1.0, perm)(image, target)
    assert torch.equal(out_image, image.flip(-1))
    for k, slot in enumerate(slots):  # what was in slot s is now in its mirror slot perm[s]
        assert torch.allclose(out["keypoints"][0, perm[slot]], _centroid(out_image[k]), atol=1e-4)
        assert out["keypoints_visibility"][0, perm[slot]] == 2
    assert out["keypoints_visibility"].sum() == 6  # nothing else became labelled
    assert torch.equal(out["masks"], target["masks"].flip(-1))


def test_landmarks_leaving_the_canvas_become_unlabelled():
    image, target, slots = _marked_sample([(60, 50), (110, 70), (80, 100)])
    target["keypoints"][0, 3] = torch.tensor([2.5, 2.5])  # near the corner: zooming in pushes it out
    target["keypoints_visibility"][0, 3] = 1
    _, out = warp(image, target, 0.0, 1.25)
    assert out["dropped_landmarks"] == 1
    assert out["keypoints_visibility"][0, 3] == 0 and out["keypoints"][0, 3].tolist() == [0.0, 0.0]
    assert (out["keypoints_visibility"][0, slots] == 2).all()


@pytest.mark.parametrize("order", ["df2", "synthetic"])
def test_flip_twice_is_identity_including_landmark_order(order):
    torch.manual_seed(0)
    image, target = _sample([HEXAGON, [150, 20, 185, 20, 185, 140, 150, 140]], [4, 11])
    for n, c in enumerate([BY_ID[4], BY_ID[11]]):
        target["keypoints"][n, list(c.slots)] = torch.rand(c.num_landmarks, 2) * torch.tensor([W, H])
        target["keypoints_visibility"][n, list(c.slots)] = torch.randint(1, 3, (c.num_landmarks,))
    flip = HorizontalFlip(1.0, landmark_flip_permutation(order))
    once_image, once = flip(image, target)
    assert not torch.equal(once["keypoints"], target["keypoints"])
    twice_image, twice = flip(once_image, once)
    assert torch.equal(twice_image, image)
    for key in ("boxes", "masks", "keypoints_visibility", "labels"):
        assert torch.equal(twice[key], target[key]), key
    assert torch.allclose(twice["keypoints"], target["keypoints"], atol=1e-4)


@pytest.mark.parametrize("order", ["df2", "synthetic"])
def test_flip_permutation_is_an_involution_within_each_category(order):
    perm = landmark_flip_permutation(order)
    assert torch.equal(perm[perm], torch.arange(TOTAL_LANDMARKS))
    for c in CATEGORIES:
        inside = perm[c.slot_start:c.slot_start + c.num_landmarks]
        assert ((inside >= c.slot_start) & (inside < c.slot_start + c.num_landmarks)).all()
        assert (inside != torch.arange(c.slot_start, c.slot_start + c.num_landmarks)).sum() >= 4


def test_df2_flip_pairs_from_the_published_table():
    perm = landmark_flip_permutation("df2")
    skirt, sst = BY_ID[9].slot_start, BY_ID[1].slot_start
    # skirt: waist ends 1<->3, hem chain 4<->8 and 5<->7; 2 (waist centre) and 6 (hem centre) stay
    assert [int(perm[skirt + i]) - skirt + 1 for i in range(8)] == [3, 2, 1, 8, 7, 6, 5, 4]
    assert int(perm[sst + 0]) == sst and int(perm[sst + 1]) == sst + 5 and int(perm[sst + 15]) == sst + 15


def test_photometric_steps_touch_only_the_image():
    data = DataConfig(hflip_prob=0.0, color_jitter=0.4, noise_std=0.05, noise_prob=1.0)
    image, target = _sample([HEXAGON], [2])
    target["keypoints"][0, 30] = torch.tensor([50.0, 60.0])
    target["keypoints_visibility"][0, 30] = 2
    torch.manual_seed(3)
    out_image, out = build_train_transforms(data)(image, target)
    assert not torch.allclose(out_image, image) and out_image.min() >= 0 and out_image.max() <= 1
    for key in ("boxes", "masks", "keypoints", "keypoints_visibility", "labels"):
        assert torch.equal(out[key], target[key]), key


def test_rotation_draws_and_rare_only_gating():
    rotate = RandomRotateScale(25.0, 0.5, 0.1)
    torch.manual_seed(0)
    draws = [rotate.draw({"labels": torch.tensor([1])}) for _ in range(400)]
    angles = np.array([a for a, _ in draws])
    scales = np.array([s for _, s in draws])
    assert np.abs(angles).max() <= 25 and 0.4 < (angles != 0).mean() < 0.6 and np.abs(angles).max() > 20
    assert scales.min() >= 0.9 and scales.max() <= 1.1 and scales.std() > 0.04
    rare_only = RandomRotateScale(25.0, 1.0, 0.0, rotate_labels=frozenset({6}))
    assert all(rare_only.draw({"labels": torch.tensor([1, 2])})[0] == 0 for _ in range(20))
    assert all(rare_only.draw({"labels": torch.tensor([1, 6])})[0] != 0 for _ in range(20))


def test_rare_class_pipeline_leaves_common_images_alone():
    data = DataConfig(hflip_prob=0.0, rotation_deg=25, rotation_prob=1.0, noise_std=0.1, noise_prob=1.0,
                      repeat_rank=1, rare_class_aug_only=True)
    pipeline = build_train_transforms(data, rare_categories={6})
    common, rare = _sample([HEXAGON], [1]), _sample([HEXAGON], [6])
    for seed in range(3):
        torch.manual_seed(seed)
        out_image, out = pipeline(*common)
        assert torch.equal(out_image, common[0]) and torch.equal(out["masks"], common[1]["masks"])
        rare_image, rare_out = pipeline(*rare)
        assert not torch.allclose(rare_image, rare[0]) and not torch.equal(rare_out["masks"], rare[1]["masks"])


# --------------------------------------------------------------------------------------------------------
# the dataset's landmarks and the whole pipeline through it


def _df2_file(tmp_path, keypoints):
    Image.new("RGB", (W, H), (90, 120, 30)).save(tmp_path / "a.png")
    xs, ys = HEXAGON[0::2], HEXAGON[1::2]
    ann = {"id": 1, "image_id": 1, "category_id": 9, "segmentation": [HEXAGON], "iscrowd": 0,
           "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)], "area": 1.0, "keypoints": keypoints}
    cats = [{"id": c.id, "name": c.coco_name, "keypoints": [str(i) for i in range(1, 295)]} for c in CATEGORIES]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
                                "annotations": [ann], "categories": cats}))
    return path


def test_dataset_loads_landmarks_of_the_category_slots(tmp_path):
    values = [0.0] * (3 * TOTAL_LANDMARKS)
    skirt = BY_ID[9].slot_start
    values[3 * skirt:3 * skirt + 3] = [40.0, 31.0, 2.0]
    values[3 * (skirt + 4):3 * (skirt + 4) + 3] = [100.0, 118.0, 1.0]
    values[0:3] = [5.0, 5.0, 2.0]  # a short sleeve top slot on a skirt: ignored and counted
    ds = CocoInstanceDataset(tmp_path, _df2_file(tmp_path, values))
    assert ds.with_landmarks and ds.skipped.counts == {
        "annotations with landmark values outside their category's slots (ignored)": 1}
    _, target = ds[0]
    assert isinstance(target["keypoints"], tv_tensors.KeyPoints) and target["keypoints"].shape == (1, 294, 2)
    assert target["keypoints"][0, skirt].tolist() == [40.0, 31.0]
    assert target["keypoints_visibility"][0].nonzero().flatten().tolist() == [skirt, skirt + 4]
    assert target["keypoints_visibility"][0, skirt + 4] == 1
    with pytest.raises(AnnotationError, match="annotation 1.keypoints: expected 882 values, got 24"):
        CocoInstanceDataset(tmp_path, _df2_file(tmp_path, values[:24]))


def test_full_pipeline_through_the_dataset_is_seeded_and_consistent(tmp_path):
    values = [0.0] * (3 * TOTAL_LANDMARKS)
    skirt = BY_ID[9].slot_start
    values[3 * skirt:3 * skirt + 3] = [40.0, 31.0, 2.0]
    data = DataConfig(rotation_deg=25, rotation_prob=1.0, scale_jitter=0.2, color_jitter=0.3, noise_std=0.03)
    ds = CocoInstanceDataset(tmp_path, _df2_file(tmp_path, values), transforms=build_train_transforms(data))
    for seed in range(4):
        image, target = ds[(0, seed)]
        again, target_again = ds[(0, seed)]
        assert torch.equal(image, again) and torch.equal(target["keypoints"], target_again["keypoints"])
        assert image.dtype == torch.float32 and image.shape == (3, H, W)
        assert target["boxes"].tolist() == [_tight_xyxy(m) for m in target["masks"]]
    assert not torch.equal(ds[(0, 0)][1]["masks"], ds[(0, 1)][1]["masks"])
    state = torch.get_rng_state()
    ds[(0, 7)]
    assert torch.equal(torch.get_rng_state(), state)  # a seeded item leaves the global stream alone


def test_synthetic_flip_keeps_the_garments_right_side_on_the_image_left(synthetic_coco):
    """Semantics, not just an involution: on frontal synthetic garments the ``r_`` landmarks (garment's right)
    lie left of the ``l_`` ones; after a flip with the side swap they still must (a plain mirror would not)."""
    from fashionparse.data.synth import LANDMARK_NAMES

    root = synthetic_coco("flip_data", 10, seed=5, size=128)
    for p in (0.0, 1.0):
        pipeline = build_train_transforms(DataConfig(hflip_prob=p, landmark_order="synthetic"))
        ds = CocoInstanceDataset(root / "split" / "image", root / "gt.json", transforms=pipeline)
        left_of = []
        for i in range(len(ds)):
            _, target = ds[(i, 0)]
            for k, c in enumerate(target["labels"].tolist()):
                slots = list(BY_ID[c].slots)
                x, vis = target["keypoints"][k, slots, 0], target["keypoints_visibility"][k, slots] > 0
                r = [j for j, n in enumerate(LANDMARK_NAMES[c]) if n.startswith("r_") and vis[j]]
                l_ = [j for j, n in enumerate(LANDMARK_NAMES[c]) if n.startswith("l_") and vis[j]]
                if r and l_:
                    left_of.append(bool(x[r].mean() < x[l_].mean()))
        assert len(left_of) >= 8 and np.mean(left_of) >= 0.9, (p, left_of)
