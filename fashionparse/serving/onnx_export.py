"""Export a trained parser to ONNX (batch 1, fixed square input) and check it against eager PyTorch.

torchvision documents Mask R-CNN as exportable for a fixed batch size and image size through the TorchScript
exporter (``dynamo=False``; the dynamo exporter fails on detection models, pytorch/vision#9306, #9462).
The graph gets a fixed ``[3, S, S]`` input and dynamic detection counts; the model's resize is set to the
identity for that canvas (``OnnxParser`` letterboxes photos onto it). The file carries the training config
and ``S`` as metadata, and is written only after onnxruntime reproduced PyTorch on a check image.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torchvision.ops import box_iou
from torchvision.transforms.v2.functional import pil_to_tensor, to_dtype

from fashionparse.api import load_model
from fashionparse.data.images import load_rgb
from fashionparse.errors import ConfigError, FashionparseError
from fashionparse.serving.onnx_predictor import (
    FORMAT,
    INPUT_NAME,
    META_CONFIG,
    META_FORMAT,
    META_SIZE,
    OUTPUT_NAMES,
    letterbox,
    open_session,
)
from fashionparse.utils.io import atomic_write_with, ensure_writable_dir

MIN_OPSET = 11  # torchvision's RoIAlign symbolic (aligned=False, as MultiScaleRoIAlign uses)
MAX_BOX_DIFF = 1.0  # pixels
MIN_MASK_IOU = 0.99


@dataclass(frozen=True)
class ParityReport:
    """Eager PyTorch vs onnxruntime on one image: detections matched by label and best box IoU."""

    detections: int  # PyTorch's
    onnx_detections: int
    matched: int
    max_box_diff: float  # pixels, over matched pairs
    min_mask_iou: float  # over matched pairs (1.0 when there is none)

    @property
    def ok(self) -> bool:
        return (self.detections == self.onnx_detections == self.matched and self.max_box_diff <= MAX_BOX_DIFF
                and self.min_mask_iou >= MIN_MASK_IOU)

    def format(self) -> str:
        text = (f"{self.matched}/{self.detections} PyTorch detections matched by {self.onnx_detections} ONNX ones, "
                f"max box difference {self.max_box_diff:.3g} px, min mask IoU {self.min_mask_iou:.4f}")
        if self.detections == 0:
            text += " (nothing was compared: check with a photo of garments, --check-image)"
        return text


@dataclass(frozen=True)
class ExportReport:
    path: Path
    input_size: int
    opset: int
    seconds: float
    size_mb: float
    parity: ParityReport

    def format(self) -> str:
        return (f"wrote {self.path} ({self.size_mb:.1f} MB, input [3, {self.input_size}, {self.input_size}], "
                f"opset {self.opset}) in {self.seconds:.1f} s\nonnxruntime vs PyTorch: {self.parity.format()}")


def compare_outputs(reference: dict[str, torch.Tensor], candidate: dict[str, torch.Tensor],
                    mask_threshold: float = 0.5) -> ParityReport:
    """Match each reference detection (``boxes`` [N, 4] xyxy, ``labels`` [N], ``masks`` [N, 1, H, W]
    probabilities) to the unused candidate of the same label with the highest box IoU, then measure the
    largest box-coordinate difference and the smallest binary-mask IoU over the matched pairs."""
    ious = box_iou(reference["boxes"], candidate["boxes"])
    ious[reference["labels"][:, None] != candidate["labels"][None, :]] = -1.0
    pairs = []
    for i in range(len(ious)):
        j = int(ious[i].argmax()) if ious.shape[1] else -1
        if j >= 0 and ious[i, j] > 0:
            pairs.append((i, j))
            ious[:, j] = -1.0
    box_diff, mask_iou = 0.0, 1.0
    for i, j in pairs:
        box_diff = max(box_diff, float((reference["boxes"][i] - candidate["boxes"][j]).abs().max()))
        a, b = reference["masks"][i, 0] > mask_threshold, candidate["masks"][j, 0] > mask_threshold
        union = int((a | b).sum())
        mask_iou = min(mask_iou, int((a & b).sum()) / union if union else 1.0)
    return ParityReport(len(reference["boxes"]), len(candidate["boxes"]), len(pairs), box_diff, mask_iou)


def _random_image(size: int, seed: int) -> torch.Tensor:
    """A smooth random picture float[3, size, size] (noise on a 1/16 grid, upsampled): closer to a photo's
    statistics than pixel noise, which pushes a trained network far outside its input range."""
    coarse = torch.rand(1, 3, max(2, size // 16), max(2, size // 16), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[0]


def _example_images(size: int, path: str | Path | None,
                    fill: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Two different ``[3, size, size]`` images: one to trace the graph with, one to check it on.

    The trace must look like real input: traced on pixel noise (few RPN proposals survive NMS), a graph has
    been seen to mis-pair boxes and scores on photos. With a photo: the photo, then its mirror image (both
    letterboxed as ``OnnxParser`` does); without: two smooth random images.
    """
    if path is None:
        return _random_image(size, seed=0), _random_image(size, seed=1)
    image = to_dtype(pil_to_tensor(load_rgb(path)), torch.float32, scale=True)
    return letterbox(image, size, fill)[0], letterbox(image.flip(-1), size, fill)[0]


def export_onnx(checkpoint: str | Path, out_path: str | Path, *, size: int | None = None, opset: int = 17,
                check_image: str | Path | None = None) -> ExportReport:
    """Export ``checkpoint`` to ``out_path`` for ``[3, size, size]`` inputs (default: the model's test
    ``min_size``), check it with onnxruntime against PyTorch and write it atomically only if boxes agree
    within 1 px and masks with IoU >= 0.99. ``check_image``, a photo with garments, is traced with and its
    mirror image checked on (default: two fixed smooth random images; a photo makes both more telling)."""
    start = time.perf_counter()
    out_path = Path(out_path)
    if opset < MIN_OPSET:
        raise ConfigError(f"must be >= {MIN_OPSET}, got {opset}", field="opset")
    if out_path.is_dir():
        raise FashionparseError("is a folder; name the .onnx file to write", path=out_path)
    ensure_writable_dir(out_path.parent)
    model, cfg = load_model(checkpoint, "cpu")
    size = size or cfg.model.min_size[-1]
    if size < 32:
        raise ConfigError(f"must be >= 32 pixels, got {size}", field="size")
    model.transform.min_size, model.transform.max_size = (size,), size  # identity resize on the canvas
    trace_image, image = _example_images(size, check_image, tuple(model.transform.image_mean))

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings on torchvision's shape arithmetic are expected
        torch.onnx.export(model, ([trace_image],), buffer, opset_version=opset, dynamo=False,
                          input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          dynamic_axes={name: {0: "detections"} for name in OUTPUT_NAMES})
    proto = onnx.load_from_string(buffer.getvalue())
    metadata = {META_FORMAT: FORMAT, META_CONFIG: json.dumps(cfg.to_dict()), META_SIZE: str(size)}
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()

    with torch.inference_mode():
        reference = model([image])[0]
    arrays = open_session(data, device="cpu").run(list(OUTPUT_NAMES), {INPUT_NAME: image.numpy()})
    parity = compare_outputs(reference, {k: torch.from_numpy(v) for k, v in zip(OUTPUT_NAMES, arrays)})
    if not parity.ok:
        raise FashionparseError(f"onnxruntime does not reproduce PyTorch: {parity.format()}; nothing written",
                                path=out_path)
    atomic_write_with(out_path, lambda f: f.write(data))
    return ExportReport(out_path, size, opset, time.perf_counter() - start, len(data) / 2**20, parity)
