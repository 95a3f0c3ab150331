"""One entry point for inference backends: a training checkpoint (PyTorch) or an ONNX export (onnxruntime)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from fashionparse.api import Instance, Parser

ImageInput = Image.Image | np.ndarray | str | Path


class Predictor(Protocol):
    """What ``predict`` and ``serve`` need: :class:`fashionparse.api.Parser`'s interface."""

    score_threshold: float

    def predict(self, image: ImageInput) -> list[Instance]: ...

    def predict_batch(self, images: list[ImageInput]) -> list[list[Instance]]: ...


def load_predictor(path: str | Path, device: str = "auto", score_threshold: float = 0.5) -> Predictor:
    """A ``.onnx`` file runs on onnxruntime, anything else is read as a training checkpoint (PyTorch).

    Both backends apply ``score_threshold`` inside the model, before masks are pasted (see ``Parser``).
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        from fashionparse.serving.onnx_predictor import OnnxParser

        return OnnxParser.from_file(path, device=device, score_threshold=score_threshold)
    return Parser.from_checkpoint(path, device=device, score_threshold=score_threshold)


def describe_predictor(predictor: Predictor) -> dict[str, str]:
    """``{"backend": "pytorch" | "onnxruntime", "device": ...}`` for health checks and logs."""
    device = getattr(predictor, "execution_provider", None) or str(getattr(predictor, "device", "cpu"))
    return {"backend": getattr(predictor, "backend", "pytorch"), "device": device}
