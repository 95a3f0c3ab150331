"""Device selection shared by training, evaluation and inference."""

from __future__ import annotations

import torch

from fashionparse.errors import ConfigError


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; an explicit CUDA request without CUDA is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{spec!r} requested but no CUDA device is available", field="device")
    try:
        return torch.device(spec)
    except RuntimeError as e:
        raise ConfigError(f"{spec!r} is not a device", field="device") from e
