"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CPU demo parser (SE-ResNet-18-FPN, 256 px) with random weights, saved as a real checkpoint.

    Box score floor 0, so that the untrained model still returns instances (scores about 0.1).
    """
    from fashionparse.config import load_config
    from fashionparse.engine.checkpoint import save_checkpoint
    from fashionparse.model import build_model

    cfg = load_config(Path(__file__).parents[1] / "configs" / "demo_cpu.yaml", ["model.box_score_thresh=0.0"])
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
