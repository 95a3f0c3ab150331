"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def synthetic_coco(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Factory: ``make(name, images, seed, size)`` writes a balanced synthetic DF2 split to ``root/split`` and
    its COCO conversion to ``root/gt.json``, and returns ``root``."""
    from fashionparse.data.convert import convert_split
    from fashionparse.data.synth import generate_split

    def make(name: str, images: int, seed: int, size: int) -> Path:
        root = tmp_path_factory.mktemp(name)
        generate_split(root / "split", images, seed=seed, balanced=True, image_size=size, progress=False)
        convert_split(root / "split", root / "gt.json", strict=True, workers=1, progress=False)
        return root

    return make


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CPU demo parser (SE-ResNet-18-FPN) at 256 px with random weights, saved as a real checkpoint.

    Box score floor 0, so that the untrained model still returns instances (scores about 0.1). The input
    size is pinned because the ONNX tests' hand-made letterbox cases are drawn for 256 px.
    """
    from fashionparse.config import load_config
    from fashionparse.engine.checkpoint import save_checkpoint
    from fashionparse.model import build_model

    cfg = load_config(Path(__file__).parents[1] / "configs" / "demo_cpu.yaml",
                      ["model.box_score_thresh=0.0", "model.min_size=[256]", "model.max_size=256"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    path = tmp_path_factory.mktemp("tiny_checkpoint") / "tiny.pth"
    save_checkpoint(path, {"model": model.state_dict(), "config": cfg.to_dict()})
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_checkpoint`` exported to ONNX at its own input size (256)."""
    from fashionparse.serving.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("tiny_onnx") / "tiny.onnx"
    export_onnx(tiny_checkpoint, path)
    return path
