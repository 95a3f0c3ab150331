"""The COCO instance dataset: targets against pycocotools, EXIF, colour modes, skipped annotations."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from fashionparse.config import DataConfig
from fashionparse.data.augment import build_train_transforms
from fashionparse.data.dataset import CocoInstanceDataset
from fashionparse.errors import AnnotationError


@pytest.fixture(autouse=True)
def _img_dir(tmp_path):
    (tmp_path / "img").mkdir()


def _write(tmp_path, images, annotations):
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": str(i)} for i in range(1, 14)]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(coco))
    return path


def _ann(aid, image_id, poly, cat=1, **extra):
    xs, ys = poly[0::2], poly[1::2]
    bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
    return {"id": aid, "image_id": image_id, "category_id": cat, "segmentation": [poly], "bbox": bbox,
            "area": bbox[2] * bbox[3], "iscrowd": 0, **extra}


def test_targets_match_pycocotools(tmp_path):
    Image.new("L", (40, 30), 128).save(tmp_path / "img" / "a.png")  # grayscale -> RGB
    Image.new("RGBA", (40, 30), (1, 2, 3, 4)).save(tmp_path / "img" / "b.png")  # RGBA -> RGB
    anns = [_ann(1, 1, [2, 3, 20, 3, 20, 25, 2, 25], cat=3), _ann(2, 1, [10, 5, 35, 5, 22, 28], cat=9),
            _ann(3, 2, [5, 5, 6, 5, 6, 5], cat=2),  # zero-height box: degenerate
            {**_ann(4, 2, [1, 1, 9, 1, 9, 9], cat=4), "iscrowd": 1}]
    path = _write(tmp_path, [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
                             {"id": 2, "file_name": "b.png", "width": 40, "height": 30}], anns)
    ds = CocoInstanceDataset(tmp_path / "img", path)
    assert ds.skipped.counts == {"degenerate boxes": 1, "crowd annotations": 1}
    image, target = ds[0]
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32
    assert torch.allclose(image, torch.full_like(image, 128 / 255))
    assert target["labels"].tolist() == [3, 9] and target["image_id"] == 1
    assert target["boxes"].tolist() == [[2, 3, 20, 25], [10, 5, 35, 28]]
    ref = COCO(str(path))
    for mask, ann_id in zip(target["masks"], [1, 2]):
        assert np.array_equal(mask.numpy(), ref.annToMask(ref.anns[ann_id]))
    _, empty = ds[1]
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 30, 40)


def test_flip_moves_masks_and_boxes_together(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "img" / "a.png")
    path = _write(tmp_path, [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
                  [_ann(1, 1, [2, 3, 20, 3, 20, 25, 2, 25])])
    plain = CocoInstanceDataset(tmp_path / "img", path)[0][1]
    flipped_ds = CocoInstanceDataset(tmp_path / "img", path, transforms=build_train_transforms(DataConfig(hflip_prob=1.0)))
    _, flipped = flipped_ds[(0, 123)]
    assert torch.equal(flipped["masks"], plain["masks"].flip(-1))
    assert flipped["boxes"].tolist() == [[40 - 20, 3, 40 - 2, 25]]
    half = CocoInstanceDataset(tmp_path / "img", path, transforms=build_train_transforms(DataConfig(hflip_prob=0.5)))
    assert all(torch.equal(half[(0, s)][1]["masks"], half[(0, s)][1]["masks"]) for s in range(5))


def test_exif_orientation_is_not_applied(tmp_path):
    """Annotations are on the stored pixels, as DF2's official converter records the size (PIL's ``size``)."""
    im = Image.new("RGB", (30, 40))  # stored 30 wide, 40 high; EXIF 6 = rotate 90 -> shown 40x30
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(tmp_path / "img" / "r.jpg", exif=exif)
    path = _write(tmp_path, [{"id": 1, "file_name": "r.jpg", "width": 30, "height": 40}], [])
    image, _ = CocoInstanceDataset(tmp_path / "img", path)[0]
    assert image.shape == (3, 40, 30)
    wrong = _write(tmp_path, [{"id": 1, "file_name": "r.jpg", "width": 40, "height": 30}], [])
    with pytest.raises(AnnotationError, match="r.jpg: width/height: image is 30x40, annotation says 40x30"):
        CocoInstanceDataset(tmp_path / "img", wrong)[0]


def test_corrupt_image_and_missing_files_are_named(tmp_path):
    (tmp_path / "img" / "bad.jpg").write_bytes(b"not a jpeg")
    path = _write(tmp_path, [{"id": 1, "file_name": "bad.jpg", "width": 4, "height": 4}], [])
    with pytest.raises(AnnotationError, match="bad.jpg: image: cannot decode"):
        CocoInstanceDataset(tmp_path / "img", path)[0]
    with pytest.raises(AnnotationError, match="not found"):
        CocoInstanceDataset(tmp_path / "img", tmp_path / "missing.json")


_GOOD_IMAGE = {"id": 1, "file_name": "a.png", "width": 40, "height": 30}
_GOOD_ANN = _ann(1, 1, [2, 3, 20, 3, 20, 25])


def _with(entry: dict, **changes) -> dict:
    return {k: v for k, v in {**entry, **changes}.items() if v is not None}


@pytest.mark.parametrize(("images", "annotations", "mask_format", "message"), [
    ([_with(_GOOD_IMAGE, width=None)], [_GOOD_ANN], "full", "image 1.width: expected a positive integer, got None"),
    ([_with(_GOOD_IMAGE, height="30")], [_GOOD_ANN], "full", "image 1.height: expected a positive integer"),
    ([_with(_GOOD_IMAGE, file_name=None)], [_GOOD_ANN], "full", "image 1.file_name: expected a file name"),
    ([_GOOD_IMAGE], [_with(_GOOD_ANN, image_id=99)], "full", "annotation 1.image_id: no image with id 99"),
    ([_GOOD_IMAGE], [_with(_GOOD_ANN, bbox=None)], "full", r"annotation 1.bbox: expected \[x, y, width, height\]"),
    ([_GOOD_IMAGE], [_with(_GOOD_ANN, bbox=[1, 2, 3])], "full", "annotation 1.bbox: expected"),
    ([_GOOD_IMAGE], [_with(_GOOD_ANN, category_id="1")], "full", "annotation 1.category_id: expected an integer"),
    ([_GOOD_IMAGE], [_with(_GOOD_ANN, segmentation=[[1, 2, 3, 4, 5, 6], ["a"] * 6])], "full",
     "annotation 1.segmentation: segmentation polygon 1 is not a list of numbers"),
    ([_GOOD_IMAGE], [_with(_GOOD_ANN, segmentation={"counts": "abc"})], "full",
     r"annotation 1.segmentation: RLE 'size' must be \[height, width\]"),
    ([_GOOD_IMAGE], [_with(_GOOD_ANN, segmentation={"size": [30, 40], "counts": 7})], "full",
     "annotation 1.segmentation: RLE 'counts' must be a string or a list of integers"),
    # five numbers are malformed, not a short polygon: refused as the DF2 reader refuses them, not dropped
    ([_GOOD_IMAGE], [_with(_GOOD_ANN, segmentation=[[1, 2, 3, 4, 5], [2, 3, 20, 3, 20, 25]])], "polygon",
     "annotation 1.segmentation: segmentation polygon 0 has 5 values; needs an even count >= 6"),
    ([_GOOD_IMAGE, _with(_GOOD_IMAGE, file_name="b.png")], [_GOOD_ANN], "full",
     r"images\[1\].id: id 1 is also images\[0\]'s; ids must be unique"),
    ([_GOOD_IMAGE], [_GOOD_ANN, _with(_GOOD_ANN, bbox=[1, 1, 5, 5])], "full",
     r"annotations\[1\].id: id 1 is also annotations\[0\]'s"),
])
def test_malformed_entries_are_named_when_the_dataset_opens(tmp_path, images, annotations, mask_format, message):
    path = _write(tmp_path, images, annotations)
    with pytest.raises(AnnotationError, match=f"ann.json: {message}"):
        CocoInstanceDataset(tmp_path / "img", path, mask_format=mask_format)


def test_a_file_that_is_not_a_coco_object_is_named(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text("[1, 2]")
    with pytest.raises(AnnotationError, match="ann.json: not a COCO instance file"):
        CocoInstanceDataset(tmp_path / "img", path)
    path.write_text(json.dumps({"images": [], "annotations": [{"image_id": 1}], "categories": []}))
    with pytest.raises(AnnotationError, match="ann.json: not a COCO instance file \\(missing key 'id'\\)"):
        CocoInstanceDataset(tmp_path / "img", path)


@pytest.mark.parametrize("mask_format", ["full", "polygon"])
def test_short_polygons_and_crowd_rle_are_left_out_and_counted(tmp_path, mask_format):
    """A polygon of < 3 points (which DF2's official converter copies through, and which pycocotools would read
    as a box when it has 4 numbers) is left out of its annotation's mask; an annotation with nothing else, and
    a crowd annotation in RLE (as COCO itself has them), are skipped, even where RLE cannot be a target."""
    Image.new("RGB", (40, 30)).save(tmp_path / "img" / "a.png")
    triangle = [2, 3, 20, 3, 20, 25]
    crowd = {**_ann(3, 1, triangle), "segmentation": {"size": [30, 40], "counts": [0, 1200]}, "iscrowd": 1}
    anns = [{**_ann(1, 1, triangle), "segmentation": [[5, 5, 9, 9], triangle]}, _ann(2, 1, [1, 1, 8, 8]), crowd]
    path = _write(tmp_path, [_GOOD_IMAGE], anns)
    ds = CocoInstanceDataset(tmp_path / "img", path, mask_format=mask_format)
    assert ds.skipped.counts == {"polygons of fewer than 3 points (left out of their annotation's mask)": 1,
                                 "annotations without a polygon of 3 or more points": 1, "crowd annotations": 1}
    _, target = ds[0]
    masks = target["masks"] if mask_format == "full" else target["masks"].to_bitmasks()
    expected = COCO(str(path)).annToMask({**anns[0], "segmentation": [triangle]})
    assert target["labels"].tolist() == [1]
    np.testing.assert_array_equal(masks[0].numpy(), expected)
