"""Training checkpoints: written atomically, read without executing code (``weights_only=True``).

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts:
``{"format", "model", "optimizer", "scheduler", "scaler", "stage", "iteration", "samples", "world_size",
"batch_size", "config", "rng", "dropped"}`` (``samples``: global samples consumed; ``rng``: one :func:`rng_state`
per process of the run that wrote it; ``dropped``: ground truth the augmentation removed so far, by kind).
"""

from __future__ import annotations

import pickle
import random
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from fashionparse.config import ModelConfig
from fashionparse.errors import CheckpointError
from fashionparse.utils.io import atomic_write_with

FORMAT = "fashionparse-checkpoint/1"
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
_UNPICKLER_ERROR = re.compile(r"WeightsUnpickler error:\s*(.+)")
MAX_REASON_CHARS = 200


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


def _one_line(text: str) -> str:
    """``text``'s first non-empty line, cut to :data:`MAX_REASON_CHARS`."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= MAX_REASON_CHARS else line[:MAX_REASON_CHARS] + "..."


def torch_load(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` on the CPU, every failure one CheckpointError line naming ``path``.

    The one reader of ``.pth`` files (training checkpoints and weight files alike), so that all of them refuse
    the same files with the same words. A pickle that names a Python global (a class or function, which
    loading would have to run) is "refused"; anything else unreadable is "not a PyTorch checkpoint". torch's
    advice to retry with ``weights_only=False``, i.e. to run the file's code, is never passed on.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint ({e.strerror or type(e).__name__})", path=path) from e
    except Exception as e:  # garbage makes the unpickler fail in many ways (KeyError, IndexError, EOFError ...)
        reason = str(e)
        if isinstance(e, pickle.UnpicklingError):  # torch's text: advice first, the unpickler's error after it
            code = _UNSUPPORTED_GLOBAL.search(reason)
            if code:
                raise CheckpointError(f"refused: not a plain-tensor checkpoint, it holds Python objects other "
                                      f"than tensors (references {code.group(1)})", path=path) from e
            detail = _UNPICKLER_ERROR.search(reason)
            reason = detail.group(1) if detail else ""
        reason = _one_line(reason)
        raise CheckpointError(f"not a PyTorch checkpoint ({': '.join(filter(None, (type(e).__name__, reason)))})",
                              path=path) from e


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely; refuse missing, corrupt, tampered or foreign files with one clear line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint file not found", path=path)
    state = torch_load(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"not a fashionparse checkpoint (expected format {FORMAT!r})", path=path,
                              field="format")
    for key in ("model", "config"):
        if not isinstance(state.get(key), dict):
            raise CheckpointError("missing or malformed", path=path, field=key)
    return state


def from_checkpoint(model_cfg: ModelConfig) -> ModelConfig:
    """``model_cfg`` for a model whose every tensor comes from a checkpoint: without the initial-weight files
    (``weights``, ``backbone_weights``) it was trained from, which need not exist any more."""
    return replace(model_cfg, weights=None, backbone_weights=None)


def load_model_state(model: torch.nn.Module, state: dict[str, Any], path: str | Path, described_by: str) -> None:
    """Load checkpoint ``state``'s ``model`` tensors into ``model`` (strict); tensors that do not fit the model
    ``described_by`` (e.g. "its config") are one CheckpointError line, not torch's report of every tensor."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        problems = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()]  # line 0: "Error(s) in loading"
        more = f"; and {len(problems) - 1} more problems" if len(problems) > 1 else ""
        raise CheckpointError(f"weights do not fit the model {described_by} describes "
                              f"({_one_line(problems[0] if problems else str(e)).rstrip('.')}{more})",
                              path=path, field="model") from e
