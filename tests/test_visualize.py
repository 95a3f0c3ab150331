"""Overlay drawing: category colours, mask blending touches exactly the masked pixels, shapes, saving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fashionparse import visualize
from fashionparse.categories import CATEGORIES
from fashionparse.errors import FashionparseError
from fashionparse.visualize import (
    CATEGORY_COLORS,
    FALLBACK_COLOR,
    GAP_COLOR,
    draw_ground_truth_vs_prediction,
    draw_instances,
    save_image,
)

H, W = 60, 80


def _instances() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two overlapping rectangles (labels 1 and 8) with matching bool masks [2, H, W]."""
    boxes = torch.tensor([[5.0, 10.0, 40.0, 50.0], [30.0, 20.0, 70.0, 55.0]])
    masks = torch.zeros(2, H, W, dtype=torch.bool)
    masks[0, 10:50, 5:40] = True
    masks[1, 20:55, 30:70] = True
    return boxes, torch.tensor([1, 8]), masks


def test_one_distinct_colour_per_category() -> None:
    assert sorted(CATEGORY_COLORS) == [c.id for c in CATEGORIES]
    colours = list(CATEGORY_COLORS.values())
    assert len(set(colours)) == len(colours) == 13
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in colours)


def test_mask_changes_exactly_the_masked_pixels() -> None:
    image = torch.full((3, H, W), 100, dtype=torch.uint8)
    boxes, labels, masks = _instances()
    alpha = 0.3
    out = draw_instances(image, boxes, labels, masks, alpha=alpha, show_boxes=False, show_labels=False)
    assert out.shape == image.shape and out.dtype == torch.uint8
    changed = (out != image).any(dim=0)
    assert torch.equal(changed, masks.any(dim=0))
    # where only one mask covers a pixel: the alpha blend of the image with the category colour
    only_first = masks[0] & ~masks[1]
    colour = torch.tensor(CATEGORY_COLORS[1], dtype=torch.float64)
    expected = 100 * (1 - alpha) + colour * alpha
    assert (out[:, only_first].double() - expected[:, None]).abs().max() <= 1.0
    # the overlap is the second (smaller) mask blended over the first, not blacked out
    overlap = masks[0] & masks[1]
    assert (out[:, overlap] > 0).all()


def test_boxes_and_labels_draw_outside_masks() -> None:
    image = torch.zeros(3, H, W, dtype=torch.uint8)
    boxes, labels, _ = _instances()
    with_boxes = draw_instances(image, boxes, labels, show_labels=False)
    assert torch.equal(with_boxes[:, 10, 5:40], torch.tensor(CATEGORY_COLORS[1], dtype=torch.uint8)[:, None]
                       .expand(3, 35))  # top edge of box 0
    assert (with_boxes[:, 30, 15] == 0).all()  # interior untouched without masks
    with_text = draw_instances(image, boxes, labels, scores=torch.tensor([0.9, 0.4]), show_boxes=False)
    assert (with_text != 0).any() and with_text.shape == image.shape


def test_no_instances_and_float_input() -> None:
    image = torch.rand(3, H, W)
    empty = draw_instances(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64),
                           torch.zeros(0, H, W, dtype=torch.bool), torch.zeros(0))
    assert empty.dtype == torch.uint8
    assert (empty.double() - image.double() * 255).abs().max() <= 1.0


def _edge(image: torch.Tensor, y: int, x1: int, x2: int) -> set[tuple[int, ...]]:
    """The colours along row ``y`` from ``x1`` to ``x2`` (exclusive)."""
    return {tuple(image[:, y, x].tolist()) for x in range(x1, x2)}


def test_labels_outside_df2_get_the_fallback_colour_and_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    image = torch.zeros(3, H, W, dtype=torch.uint8)
    boxes, _, masks = _instances()
    labels = torch.tensor([44, 1])  # 44: a COCO id (e.g. a pretraining checkpoint), no DF2 colour
    out = draw_instances(image, boxes, labels, masks, scores=torch.tensor([0.9, 0.4]), names=["bottle", "person"])
    assert out.shape == image.shape and (out != 0).any()  # drawn, not refused
    boxed = draw_instances(image, boxes, labels, show_labels=False)
    assert _edge(boxed, 10, 5, 41) == {FALLBACK_COLOR} and _edge(boxed, 20, 45, 70) == {CATEGORY_COLORS[1]}
    texts: list[tuple[str, tuple[int, int, int]]] = []
    monkeypatch.setattr(visualize, "_draw_text_boxes",
                        lambda img, items, font: texts.extend((t, c) for t, _, c in items) or img)
    draw_instances(image, boxes, labels, scores=torch.tensor([0.9, 0.4]), names=["bottle", "person"])
    assert texts == [("bottle 0.90", FALLBACK_COLOR), ("person 0.40", CATEGORY_COLORS[1])]
    texts.clear()
    draw_instances(image, boxes, labels)  # no names given: DF2's name where there is one
    assert texts == [("category 44", FALLBACK_COLOR), ("short sleeve top", CATEGORY_COLORS[1])]


def test_ground_truth_vs_prediction_layout() -> None:
    image = torch.full((3, H, W), 50, dtype=torch.uint8)
    boxes, labels, masks = _instances()
    gt = {"boxes": boxes, "labels": labels, "masks": masks.to(torch.uint8)}
    prediction = {"boxes": boxes, "labels": labels, "scores": torch.tensor([0.9, 0.2]),
                  "masks": masks[:, None].float() * 0.8}
    gap = 6
    out = draw_ground_truth_vs_prediction(image, gt, prediction, score_threshold=0.5, gap=gap)
    assert out.shape == (3, H, 2 * W + gap) and out.dtype == torch.uint8
    spacer = torch.tensor(GAP_COLOR, dtype=torch.uint8)[:, None, None]
    assert (out[:, :, W:W + gap] == spacer).all()
    left, right = out[:, :, :W], out[:, :, W + gap:]
    # below the titles: the GT panel shows both masks, the prediction panel only the kept one
    probe = (slice(None), 52, 50)  # inside mask 1 only, below the text rows
    assert not torch.equal(left[probe], image[probe]) and torch.equal(right[probe], image[probe])


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_save_image(tmp_path: Path, suffix: str) -> None:
    image = torch.randint(0, 256, (3, H, W), dtype=torch.uint8)
    path = tmp_path / f"overlay{suffix}"
    save_image(image, path)
    loaded = np.asarray(Image.open(path).convert("RGB"))
    assert loaded.shape == (H, W, 3)
    if suffix == ".png":
        np.testing.assert_array_equal(loaded, image.permute(1, 2, 0).numpy())
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    with pytest.raises(FashionparseError, match="unsupported"):
        save_image(image, tmp_path / "overlay.gif")
