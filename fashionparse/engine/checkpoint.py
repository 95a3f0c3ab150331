"""Training checkpoints: written atomically, read without executing code (``weights_only=True``).

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts:
``{"format", "model", "optimizer", "scheduler", "scaler", "stage", "iteration", "samples", "world_size",
"batch_size", "config", "rng"}`` (``samples``: global samples consumed; ``rng``: one :func:`rng_state` per
process of the run that wrote it).
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import torch

from fashionparse.errors import CheckpointError
from fashionparse.utils.io import atomic_write_with

FORMAT = "fashionparse-checkpoint/1"


def rng_state() -> dict[str, Any]:
    """The RNG states a resumed run must restore to continue identically (torch CPU/CUDA, Python)."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tagged with the format) atomically: a crash never leaves a half-written file."""
    payload = {"format": FORMAT, **state}
    atomic_write_with(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely; refuse missing, corrupt, tampered or foreign files with one clear line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint file not found", path=path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unpickling failed"
        raise CheckpointError(f"refused: not a plain-tensor checkpoint ({first})", path=path) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"unreadable checkpoint ({type(e).__name__})", path=path) from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"not a fashionparse checkpoint (expected format {FORMAT!r})", path=path,
                              field="format")
    for key in ("model", "config"):
        if not isinstance(state.get(key), dict):
            raise CheckpointError("missing or malformed", path=path, field=key)
    return state
