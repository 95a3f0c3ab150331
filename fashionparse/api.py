"""Python API: load a trained parser from a checkpoint and parse images without the CLI.

    >>> from fashionparse.api import Parser
    >>> parser = Parser.from_checkpoint("runs/demo/model_final.pth")
    >>> for inst in parser.predict("photo.jpg"):
    ...     print(inst.category_name, inst.score, inst.box)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F
from tqdm import tqdm

from fashionparse.categories import NUM_CATEGORIES, label_name
from fashionparse.config import Config, from_dict
from fashionparse.data.images import load_rgb, to_rgb
from fashionparse.data.masks import mask_to_polygons
from fashionparse.engine.checkpoint import from_checkpoint, load_checkpoint, load_model_state
from fashionparse.utils.device import resolve_device
from fashionparse.utils.io import ensure_writable_dir


@dataclass
class Instance:
    """One parsed garment. ``box`` is (x1, y1, x2, y2) in pixels; ``mask`` a bool array [H, W]."""

    category_id: int
    category_name: str
    score: float
    box: tuple[float, float, float, float]
    mask: np.ndarray = field(repr=False)
    polygons: list[list[float]] = field(repr=False)


def load_model(checkpoint: str | Path, device: str | torch.device = "auto") -> tuple[torch.nn.Module, Config]:
    """Rebuild the model described by the checkpoint's own config and load its weights (no code runs)."""
    from fashionparse.model import build_model

    state = load_checkpoint(checkpoint)
    cfg = from_dict(state["config"], src=str(checkpoint))
    cfg.model = from_checkpoint(cfg.model)
    model = build_model(cfg.model)
    load_model_state(model, state, checkpoint, "its config")
    dev = resolve_device(device) if isinstance(device, str) else device
    return model.to(dev).eval(), cfg


class Parser:
    """A trained fashion parser: image in, garment instances out.

    The score threshold is also the model's own score floor (``roi_heads.score_thresh``, set on the model
    it is given), so detections below it are dropped before torchvision pastes their masks at full image
    resolution (N x H x W float32 -- the dominant memory cost on large photos). Results above it are
    unchanged: greedy per-class NMS and the top-k cut never let a lower-scored box remove a higher one.
    """

    def __init__(self, model: torch.nn.Module, cfg: Config, score_threshold: float = 0.5) -> None:
        self.model = model.eval()
        self.cfg = cfg
        self.score_threshold = score_threshold
        self.device = next(model.parameters()).device

    @property
    def score_threshold(self) -> float:
        return self.model.roi_heads.score_thresh

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        self.model.roi_heads.score_thresh = value

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", score_threshold: float = 0.5) -> Parser:
        model, cfg = load_model(path, device)
        return cls(model, cfg, score_threshold)

    @torch.inference_mode()
    def predict(self, image: Image.Image | np.ndarray | str | Path) -> list[Instance]:
        """Parse one image (PIL image, HxWx3 uint8 array, or a path) into instances above the threshold."""
        return self.predict_batch([image])[0]

    @torch.inference_mode()
    def predict_batch(self, images: list[Image.Image | np.ndarray | str | Path]) -> list[list[Instance]]:
        tensors = [self._to_tensor(im).to(self.device) for im in images]
        outputs = self.model(tensors)
        return [self._instances(out) for out in outputs]

    @staticmethod
    def _to_tensor(image: Image.Image | np.ndarray | str | Path) -> torch.Tensor:
        """A file is turned upright by its EXIF orientation; an in-memory image is taken as given."""
        if isinstance(image, (str, Path)):
            rgb = load_rgb(image)
        else:
            rgb = to_rgb(Image.fromarray(image) if isinstance(image, np.ndarray) else image, upright=False)
        return F.to_dtype(F.pil_to_tensor(rgb), torch.float32, scale=True)

    def category_name(self, label: int) -> str:
        """DF2's name for a DF2 parser's label (13 classes + background); ``category N`` for other models,
        e.g. one trained with the COCO pretraining config, whose labels are COCO ids."""
        return label_name(label, df2=self.cfg.model.num_classes == NUM_CATEGORIES + 1)

    def _instances(self, output: dict[str, torch.Tensor]) -> list[Instance]:
        """One model output as instances; the model has already dropped scores below the threshold."""
        boxes = output["boxes"].cpu()
        labels = output["labels"].cpu()
        scores = output["scores"].cpu()
        masks = (output["masks"][:, 0] >= 0.5).cpu().numpy()
        return [
            Instance(
                category_id=int(label),
                category_name=self.category_name(int(label)),
                score=float(score),
                box=tuple(float(v) for v in box),
                mask=mask,
                polygons=mask_to_polygons(mask),
            )
            for box, label, score, mask in zip(boxes, labels, scores, masks)
        ]


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, *, images: str | Path | None = None,
                        out_dir: str | Path = "runs/eval", device: str = "auto"):
    """Evaluate a checkpoint on a DF2 split folder (converted on the fly) or a COCO JSON + image folder.

    Writes the DF2 results tables, the comparison with published methods and the predictions in the
    official submission format to ``out_dir``; returns the ``EvalResult``.
    """
    from fashionparse.data.convert import convert_split
    from fashionparse.data.dataset import CocoInstanceDataset
    from fashionparse.engine.evaluate import evaluate_model, load_ground_truth

    data, out_dir = Path(data), ensure_writable_dir(out_dir)
    if data.is_dir():
        gt_json = out_dir / "ground_truth.json"
        tqdm.write(str(convert_split(data, gt_json)))  # what the conversion skipped, counted
        images = data / "image"
    else:
        gt_json = data
        images = Path(images) if images is not None else data.parent / "image"
    gt = load_ground_truth(gt_json, df2_categories=False)  # an unusable GT fails before the model loads
    model, _ = load_model(checkpoint, device)
    dataset = CocoInstanceDataset(images, gt_json, with_masks=False)
    return evaluate_model(model, dataset, gt, next(model.parameters()).device, out_dir=out_dir)
