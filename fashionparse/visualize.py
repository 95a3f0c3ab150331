"""Overlay drawing for DF2 instances: masks, boxes and "name score" labels in a fixed colour per category.

Labels of other models (e.g. COCO ids from the pretraining config) are drawn too: in ``FALLBACK_COLOR``
beyond DF2's 13 ids, and under the names the caller passes (``names``; default DF2's name or ``category N``).

Primitives (``draw_masks``, ``draw_boxes``, ``draw_labels``, ``draw_title``) each add one layer to a
uint8 image tensor [3, H, W]; ``draw_instances`` and ``draw_ground_truth_vs_prediction`` compose them.
Masks and boxes use ``torchvision.utils``; text uses PIL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.transforms.v2.functional import to_dtype
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from fashionparse.categories import label_name
from fashionparse.errors import FashionparseError
from fashionparse.utils.io import atomic_write_with

RGB = tuple[int, int, int]

# Kelly's colours of maximum contrast (white, black and the two greys left out), one per category id.
CATEGORY_COLORS: dict[int, RGB] = {
    1: (255, 179, 0), 2: (128, 62, 117), 3: (255, 104, 0), 4: (166, 189, 215), 5: (193, 0, 32),
    6: (206, 162, 98), 7: (0, 125, 52), 8: (246, 118, 142), 9: (0, 83, 138), 10: (255, 122, 92),
    11: (83, 55, 122), 12: (255, 142, 0), 13: (179, 40, 81),
}
FALLBACK_COLOR: RGB = (128, 128, 128)  # ids without a DF2 colour; Kelly's set leaves grey out
GAP_COLOR: RGB = (255, 255, 255)
_SAVE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def as_uint8_image(image: torch.Tensor) -> torch.Tensor:
    """[3, H, W] uint8 as is, float in 0..1 scaled to uint8; anything else is an error."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an RGB image tensor [3, H, W], got shape {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        return image
    if image.is_floating_point():
        return to_dtype(image, torch.uint8, scale=True)
    raise ValueError(f"expected a uint8 or float image, got {image.dtype}")


def _colors(labels: torch.Tensor) -> list[RGB]:
    return [CATEGORY_COLORS.get(int(label), FALLBACK_COLOR) for label in labels]


def _font(height: int, width: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Default PIL font scaled with the image (about 1/40 of its geometric mean side, at least 10 px)."""
    return ImageFont.load_default(size=max(10, round((height * width) ** 0.5 / 40)))


def _text_color(background: RGB) -> RGB:
    """Black on light backgrounds, white on dark ones (Rec. 601 luma)."""
    luma = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def draw_masks(image: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """Blend bool masks [N, H, W] into a uint8 image [3, H, W] in their category colours.

    Larger masks are drawn first so smaller items stay visible; where masks overlap the later one is blended
    over the earlier result (torchvision blacks overlaps out when given all masks at once). Pixels outside
    every mask are returned unchanged.
    """
    out = image
    order = torch.argsort(masks.flatten(1).sum(1), descending=True, stable=True)
    colors = _colors(labels)
    for i in order.tolist():
        mask = masks[i]
        out = torch.where(mask, draw_segmentation_masks(out, mask, alpha=alpha, colors=colors[i]), out)
    return out


def draw_boxes(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, width: int = 2) -> torch.Tensor:
    """Outline xyxy boxes [N, 4] in their category colours."""
    if len(boxes) == 0:
        return image
    return draw_bounding_boxes(image, boxes, colors=_colors(labels), width=width)


def _draw_text_boxes(image: torch.Tensor, items: Sequence[tuple[str, tuple[float, float], RGB]],
                     font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> torch.Tensor:
    """PIL: each ``(text, (x, y) top-left, background colour)`` as text on a filled rectangle."""
    if not items:
        return image
    canvas = Image.fromarray(image.permute(1, 2, 0).cpu().numpy())
    pen = ImageDraw.Draw(canvas)
    for text, (x, y), background in items:
        left, top, right, bottom = pen.textbbox((x, y), text, font=font)
        pen.rectangle((left - 2, top - 1, right + 2, bottom + 1), fill=background)
        pen.text((x, y), text, fill=_text_color(background), font=font)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).to(image.device)


def _label_texts(labels: torch.Tensor, scores: torch.Tensor | None = None,
                 names: Sequence[str] | None = None) -> list[str]:
    """"name score" per instance, or just the name without scores. ``names`` default: DF2's category name,
    ``category N`` for an id outside DF2's."""
    if names is None:
        names = [label_name(int(label)) for label in labels]
    if scores is None:
        return names
    return [f"{name} {float(score):.2f}" for name, score in zip(names, scores)]


def draw_labels(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                scores: torch.Tensor | None = None, names: Sequence[str] | None = None) -> torch.Tensor:
    """Write "name score" at each box's top-left corner (above the box when there is room)."""
    font = _font(image.shape[1], image.shape[2])
    text_height = font.getbbox("Ag")[3] + 2
    items = []
    for text, box, color in zip(_label_texts(labels, scores, names), boxes.tolist(), _colors(labels)):
        x, y = max(box[0], 0.0), box[1] - text_height
        items.append((text, (x + 2, y if y >= 0 else max(box[1], 0.0) + 2), color))
    return _draw_text_boxes(image, items, font)


def draw_title(image: torch.Tensor, title: str) -> torch.Tensor:
    """Write a title at the top-left corner on a dark background."""
    return _draw_text_boxes(image, [(title, (4.0, 4.0), (40, 40, 40))], _font(*image.shape[1:]))


def draw_instances(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                   masks: torch.Tensor | None = None, scores: torch.Tensor | None = None, alpha: float = 0.5,
                   *, show_boxes: bool = True, show_labels: bool = True,
                   names: Sequence[str] | None = None) -> torch.Tensor:
    """Overlay instances on an image.

    ``image`` uint8 (or float 0..1) [3, H, W]; ``boxes`` float [N, 4] xyxy; ``labels`` int [N] (DF2's 1..13
    get their colours, other ids ``FALLBACK_COLOR``); ``masks`` bool [N, H, W] or None; ``scores`` float [N]
    or None; ``names`` the label text per instance (default: see :func:`_label_texts`). Returns uint8 [3, H, W].
    """
    out = as_uint8_image(image).cpu()
    boxes, labels = boxes.detach().cpu(), labels.detach().cpu()
    if masks is not None and len(masks):
        out = draw_masks(out, masks.detach().cpu().bool(), labels, alpha)
    if show_boxes:
        out = draw_boxes(out, boxes, labels)
    if show_labels:
        out = draw_labels(out, boxes, labels, None if scores is None else scores.detach().cpu(), names)
    return out


def draw_ground_truth_vs_prediction(image: torch.Tensor, gt_target: Mapping[str, torch.Tensor],
                                    prediction: Mapping[str, torch.Tensor], score_threshold: float = 0.5, *,
                                    mask_threshold: float = 0.5, gap: int = 8, alpha: float = 0.5) -> torch.Tensor:
    """Ground truth (left) and predictions with score >= ``score_threshold`` (right), titled, side by side.

    ``gt_target``: torchvision target (``boxes`` xyxy, ``labels``, optional ``masks`` [N, H, W]);
    ``prediction``: Mask R-CNN output (``boxes``, ``labels``, ``scores``, optional ``masks`` [N, 1, H, W]
    probabilities, foreground where ``> mask_threshold``). Returns uint8 [3, H, 2W + gap].
    """
    base = as_uint8_image(image).cpu()
    gt_masks = gt_target.get("masks")
    left = draw_instances(base, gt_target["boxes"], gt_target["labels"],
                          None if gt_masks is None else gt_masks.bool(), alpha=alpha)
    keep = prediction["scores"].detach().cpu() >= score_threshold
    pred_masks = prediction.get("masks")
    right = draw_instances(base, prediction["boxes"].detach().cpu()[keep], prediction["labels"].detach().cpu()[keep],
                           None if pred_masks is None else pred_masks.detach().cpu()[keep][:, 0] > mask_threshold,
                           prediction["scores"].detach().cpu()[keep], alpha=alpha)
    left = draw_title(left, f"ground truth ({len(gt_target['labels'])})")
    right = draw_title(right, f"prediction, score >= {score_threshold:g} ({int(keep.sum())})")
    spacer = torch.tensor(GAP_COLOR, dtype=torch.uint8)[:, None, None].expand(3, base.shape[1], gap)
    return torch.cat([left, spacer, right], dim=2)


def save_image(image: torch.Tensor, path: str | Path) -> None:
    """Atomically save a uint8 [3, H, W] tensor as PNG or JPEG (chosen by the file suffix)."""
    path = Path(path)
    fmt = _SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise FashionparseError(f"unsupported image type {path.suffix!r} (use .png, .jpg or .jpeg)", path=path)
    canvas = Image.fromarray(as_uint8_image(image).detach().cpu().permute(1, 2, 0).numpy())
    atomic_write_with(path, lambda f: canvas.save(f, format=fmt))
