"""Load weights from local files only: ImageNet backbone state dicts and whole detector checkpoints.

Nothing is fetched from a hub and nothing in a file is executed: ``.pth`` files are read with
``torch.load(weights_only=True)`` (:func:`~fashionparse.engine.checkpoint.torch_load`, shared with the training
checkpoints), ``.safetensors`` with safetensors. Every tensor of the file is either
loaded or listed as skipped with a reason, and every model tensor the file does not provide is listed
as newly initialised (:class:`LoadReport`). Shape mismatches are errors, except for the class-specific
predictor layers of a detector checkpoint trained on a different class count, which keep their fresh
initialisation (matterport's "exclude the weights of the fully connected layers").
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file as load_safetensors
from torch import nn

from fashionparse.engine.checkpoint import torch_load
from fashionparse.errors import CheckpointError

StateDict = dict[str, torch.Tensor]
SkipRule = Callable[[str, torch.Tensor, 'torch.Tensor | None'], 'str | None']

CLASSIFIER_PREFIXES = ("fc.", "last_linear.", "classifier.", "head.fc.")
CLASS_SPECIFIC_PREFIXES = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.")
WRAPPER_KEYS = ("model", "state_dict")
BN_COUNTER = "num_batches_tracked"
MAX_GROUPS_SHOWN = 8


@dataclass
class LoadReport:
    """What a load did: ``loaded`` tensor names, ``skipped`` (file tensor, reason) pairs and
    ``newly_initialized`` (model tensor, reason) pairs."""

    source: str
    target: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    newly_initialized: list[tuple[str, str]] = field(default_factory=list)

    def format(self) -> str:
        """Counts, then per reason the tensor groups (block indices folded to ``*``)."""
        total = len(self.loaded) + len(self.skipped)
        lines = [f"{self.source}: loaded {len(self.loaded)}/{total} tensors into the {self.target}"]
        for title, items in (("skipped", self.skipped), ("newly initialized", self.newly_initialized)):
            by_reason: dict[str, list[str]] = defaultdict(list)
            for name, reason in items:
                by_reason[reason].append(name)
            for reason, names in by_reason.items():
                groups = _groups(names)
                shown = ", ".join(groups[:MAX_GROUPS_SHOWN]) + (", ..." if len(groups) > MAX_GROUPS_SHOWN else "")
                lines.append(f"  {title} {len(names)} ({reason}): {shown}")
        return "\n".join(lines)


def _groups(names: list[str]) -> list[str]:
    """Module paths of tensor names with numeric indices folded: ``layer1.0.se.fc1.weight`` -> ``layer*.*.se.fc1``."""
    out: dict[str, None] = {}
    for name in names:
        module = name.rsplit(".", 1)[0] if "." in name else name
        out[re.sub(r"(?<=\.)\d+(?=\.|$)|(?<=layer)\d+", "*", module)] = None
    return list(out)


# ----------------------------------------------------------------------------------------------------
# reading


def _unwrap(obj: object, path: str) -> StateDict:
    """The state dict inside a loaded object: a bare ``{name: tensor}`` or one under "model"/"state_dict";
    a DDP ``module.`` prefix is stripped."""
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError("not a checkpoint: holds no state dict of tensors", path=path)
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"not a state dict: entry {bad[0]!r} is not a named tensor", path=path)
    if all(k.startswith("module.") for k in obj):
        return {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def read_state_dict(path: str | Path) -> StateDict:
    """Read a ``.safetensors`` or torch checkpoint file on the CPU without executing anything in it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint file not found", path=path)
    if path.suffix == ".safetensors":
        try:
            return _unwrap(load_safetensors(str(path), device="cpu"), str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"not a readable safetensors file ({e})", path=path) from e
    return _unwrap(torch_load(path), str(path))


# ----------------------------------------------------------------------------------------------------
# loading


def _load_matching(module: nn.Module, source: StateDict, origin: str, target: str, skip_reason: SkipRule) -> LoadReport:
    """Load the tensors of ``source`` whose names and shapes match ``module``.

    ``skip_reason(name, file_tensor, model_tensor_or_None)`` returns why a file tensor is not loaded, or
    None to load it; a shape mismatch it does not excuse is a CheckpointError.
    """
    own = module.state_dict()
    report = LoadReport(source=origin, target=target)
    chosen: StateDict = {}
    for name, tensor in source.items():
        mine = own.get(name)
        reason = skip_reason(name, tensor, mine)
        if reason is not None:
            report.skipped.append((name, reason))
        elif mine is None:
            report.skipped.append((name, "not in the model"))
        elif mine.shape != tensor.shape:
            raise CheckpointError(
                f"tensor {name} has shape {tuple(tensor.shape)}, the model needs {tuple(mine.shape)}", path=origin
            )
        else:
            chosen[name] = tensor
    if not chosen:
        raise CheckpointError(f"no tensor matches the {target} (a checkpoint of another model?)", path=origin)
    module.load_state_dict(chosen, strict=False)
    report.loaded = list(chosen)
    skipped_names = {n for n, _ in report.skipped}
    report.newly_initialized = [
        (n, "class count differs" if n in skipped_names else "not in the checkpoint") for n in own if n not in chosen
    ]
    return report


def _backbone_skip(name: str, tensor: torch.Tensor, mine: torch.Tensor | None) -> str | None:
    if name.startswith(CLASSIFIER_PREFIXES):
        return "classifier head"
    if mine is None and name.endswith(BN_COUNTER):
        return "BatchNorm step counter, unused by this norm"
    return None


def _detector_skip(name: str, tensor: torch.Tensor, mine: torch.Tensor | None) -> str | None:
    if mine is not None and mine.shape != tensor.shape and name.startswith(CLASS_SPECIFIC_PREFIXES):
        return "class count differs"
    return None


def load_backbone_weights(model: nn.Module, path: str | Path) -> LoadReport:
    """Load a timm/ImageNet state dict file into the backbone body (``model.backbone.body``, or ``model.body``
    for a bare backbone); the classifier (``fc``/``last_linear``) is skipped."""
    backbone = getattr(model, "backbone", model)
    return _load_matching(backbone.body, read_state_dict(path), str(path), "backbone body", _backbone_skip)


def load_detector_weights(model: nn.Module, source: str | Path | Mapping) -> LoadReport:
    """Load a whole detector checkpoint (file path, bare state dict, or ``{"model": state_dict, ...}``).

    When the class count differs, ``roi_heads.box_predictor.*`` and ``roi_heads.mask_predictor.mask_fcn_logits.*``
    keep the model's fresh initialisation; every other tensor must match in shape.
    """
    if isinstance(source, Mapping):
        state, origin = _unwrap(source, "<state dict>"), "<state dict>"
    else:
        state, origin = read_state_dict(source), str(source)
    return _load_matching(model, state, origin, "detector", _detector_skip)
