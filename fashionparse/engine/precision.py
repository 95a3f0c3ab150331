"""Mixed precision and memory format for training and benchmarks (``train.amp``, ``train.channels_last``).

``bf16`` autocast needs no loss scaling (bfloat16 has float32's exponent range); ``fp16`` autocast pairs
with a :class:`torch.amp.GradScaler`, which scales the loss so small gradients survive in float16 and
skips the steps whose gradients overflowed. Losses and the optimizer stay in float32 either way.
"""

from __future__ import annotations

import contextlib

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``amp`` (``none``, ``bf16`` or ``fp16``) on ``device``'s type."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """A loss scaler that is active for ``fp16`` only (disabled, every call is a pass-through)."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def use_channels_last(model: torch.nn.Module, device: torch.device, channels_last: bool) -> bool:
    """Convert ``model``'s 4-d weights to NHWC when asked and on CUDA (cuDNN then keeps the activations NHWC,
    the layout of its fastest mixed-precision convolutions); True when converted. The CPU is left as is."""
    if not channels_last or device.type != "cuda":
        return False
    model.to(memory_format=torch.channels_last)
    return True


def backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                      clip_grad_norm: float | None) -> None:
    """One optimizer step from ``loss``: backward (scaled for fp16), optional global-norm clipping of the
    unscaled gradients, then the step (skipped by the scaler on overflow)."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_grad_norm:  # None or 0: no clipping
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip_grad_norm)
    scaler.step(optimizer)
    scaler.update()
