"""onnxruntime inference of a fashionparse ONNX export behind :class:`fashionparse.api.Parser`'s interface.

The export takes one fixed-size square image ``[3, S, S]`` (float RGB in 0..1) and returns torchvision's
Mask R-CNN outputs for it. Any photo is letterboxed onto that canvas: resized (bilinear, as torchvision's
detection transform) so that its long side is ``S``, then padded bottom/right with the model's mean colour,
which normalises to exactly 0 -- the value torchvision itself pads batches with. Outputs are mapped back to
the photo. An ``S x S`` photo therefore sees exactly the eager PyTorch pipeline; other shapes run at long
side ``S`` whereas eager PyTorch runs at short side ``min_size`` (the price of a fixed-size graph).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.ops import clip_boxes_to_image, remove_small_boxes

from fashionparse.api import Parser
from fashionparse.config import Config, from_dict
from fashionparse.errors import CheckpointError, FashionparseError
from fashionparse.model import image_normalization
from fashionparse.utils.device import resolve_device

FORMAT = "fashionparse-onnx/1"
META_FORMAT = "fashionparse.format"
META_CONFIG = "fashionparse.config"
META_SIZE = "fashionparse.input_size"
INPUT_NAME = "image"
OUTPUT_NAMES = ("boxes", "labels", "scores", "masks")
MIN_BOX_SIDE = 1e-2  # torchvision's RoIHeads.postprocess_detections drops smaller boxes


def letterbox(image: torch.Tensor, size: int, fill: Sequence[float]) -> tuple[torch.Tensor, tuple[int, int]]:
    """Fit ``image`` float[3, H, W] into a ``size x size`` canvas filled with ``fill`` (one value per channel).

    Returns the canvas float[3, size, size] and the resized image's ``(height, width)`` at its top-left.
    """
    height, width = image.shape[-2:]
    scale = size / max(height, width)
    inner = (min(size, round(height * scale)), min(size, round(width * scale)))
    if inner != (height, width):
        image = F.interpolate(image[None], size=inner, mode="bilinear", align_corners=False)[0]
    canvas = torch.tensor(fill, dtype=image.dtype)[:, None, None].repeat(1, size, size)
    canvas[:, : inner[0], : inner[1]] = image
    return canvas, inner


def unletterbox(output: dict[str, torch.Tensor], inner: tuple[int, int],
                original: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Map canvas detections back to the photo, as torchvision's postprocessing does for eager models: boxes
    rescaled per axis, clipped to the photo, degenerate ones (all in the padding) removed; mask probabilities
    [N, 1, S, S] cropped to the resized photo and resized to [N, 1, H, W]."""
    (inner_h, inner_w), (height, width) = inner, original
    boxes = output["boxes"] * torch.tensor([width / inner_w, height / inner_h] * 2)
    boxes = clip_boxes_to_image(boxes, (height, width))
    keep = remove_small_boxes(boxes, MIN_BOX_SIDE)
    masks = output["masks"][keep, :, :inner_h, :inner_w]
    if len(masks) and (inner_h, inner_w) != (height, width):
        masks = F.interpolate(masks, size=(height, width), mode="bilinear", align_corners=False)
    elif not len(masks):
        masks = masks.new_zeros(0, 1, height, width)
    return {**{k: v[keep] for k, v in output.items()}, "boxes": boxes[keep], "masks": masks}


class OnnxMaskRCNN:
    """torchvision Mask R-CNN's inference contract (``list[float[3, H, W]]`` in, ``list[dict]`` out, original
    coordinates) on an onnxruntime session of a fixed-size export.

    Detections below ``min_score`` are dropped before their masks are resized to the photo (the costly step).
    """

    def __init__(self, session, input_size: int, fill: Sequence[float], min_score: float = 0.0) -> None:
        self.session = session
        self.input_size = input_size
        self.fill = tuple(fill)
        self.min_score = min_score

    def __call__(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        return [self._one(image.cpu()) for image in images]

    def _one(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        canvas, inner = letterbox(image, self.input_size, self.fill)
        arrays = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: canvas.numpy()})
        output = {name: torch.from_numpy(array) for name, array in zip(OUTPUT_NAMES, arrays)}
        keep = output["scores"] >= self.min_score
        return unletterbox({k: v[keep] for k, v in output.items()}, inner, tuple(image.shape[-2:]))


def _providers(device: str) -> list[str]:
    """onnxruntime execution providers for a device spec: CUDA first where asked for (or ``auto``) and present."""
    import onnxruntime as ort

    wants_cuda = resolve_device(device).type == "cuda"
    if wants_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(model: str | Path | bytes, device: str = "auto", threads: int | None = None):
    """An onnxruntime ``InferenceSession`` (quiet logging); a file that is not ONNX is a ``CheckpointError``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # dynamic detection counts make ORT warn on every run otherwise
    # Idle worker threads would busy-wait after each run, taking the cores from the Python work around
    # inference (decoding, polygons, JSON) and from other processes on a shared CPU.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=_providers(device))
    except Exception as e:  # onnxruntime's pybind errors (InvalidProtobuf, Fail, ...) derive from Exception only
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"not a loadable ONNX model ({first})",
                              path=None if isinstance(model, bytes) else model) from e


def read_metadata(session, path: str | Path) -> tuple[Config, int]:
    """The training config and the square input size stored in a fashionparse export; refuse other models."""
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get(META_FORMAT) != FORMAT:
        raise CheckpointError(f"not a fashionparse ONNX export (expected metadata {META_FORMAT}={FORMAT!r}; "
                              "make one with `fashionparse export`)", path=path, field=META_FORMAT)
    try:
        cfg = from_dict(json.loads(meta[META_CONFIG]), src=str(path))
        size = int(meta[META_SIZE])
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"malformed fashionparse metadata ({e})", path=path, field="metadata") from e
    inputs = session.get_inputs()
    if len(inputs) != 1 or list(inputs[0].shape) != [3, size, size]:
        shapes = [i.shape for i in inputs]
        raise CheckpointError(f"expects one input [3, {size}, {size}], the graph has {shapes}", path=path,
                              field="input")
    return cfg, size


class OnnxParser(Parser):
    """:class:`~fashionparse.api.Parser` on onnxruntime: ``predict``/``predict_batch`` return the same
    :class:`~fashionparse.api.Instance` lists. Build it with :meth:`from_file`."""

    backend = "onnxruntime"

    def __init__(self, runner: OnnxMaskRCNN, cfg: Config, score_threshold: float = 0.5) -> None:
        # Parser.__init__ expects a torch module; the runner only shares its call contract.
        self.model = runner
        self.cfg = cfg
        self.device = torch.device("cpu")  # onnxruntime takes host arrays, whatever its execution provider
        self.execution_provider = runner.session.get_providers()[0]
        self.score_threshold = score_threshold

    @property
    def score_threshold(self) -> float:
        return self.model.min_score

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        self.model.min_score = value

    @classmethod
    def from_file(cls, path: str | Path, device: str = "auto", score_threshold: float = 0.5,
                  threads: int | None = None) -> OnnxParser:
        """Open a ``fashionparse export`` file; anything else is refused with a ``CheckpointError``."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError("ONNX file not found", path=path)
        session = open_session(path, device, threads)
        cfg, size = read_metadata(session, path)
        mean, _ = image_normalization(cfg.model)
        return cls(OnnxMaskRCNN(session, size, mean), cfg, score_threshold)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", score_threshold: float = 0.5) -> Parser:
        raise FashionparseError("OnnxParser reads ONNX exports; use Parser.from_checkpoint or load_predictor",
                                path=path)
