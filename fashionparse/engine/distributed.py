"""Distributed data parallel training under ``torchrun``: process group, DDP wrapping, collectives.

``torchrun`` starts one process per GPU and describes the job in the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); :func:`init_distributed` joins that group (NCCL on GPUs,
gloo on CPUs). Without those variables everything here degrades to a single process: the collectives
return their input and :func:`wrap_ddp` returns the model unchanged.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from fashionparse.errors import ConfigError
from fashionparse.utils.device import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job; ``owns_group``: :func:`init_distributed` created the group."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            raise ConfigError(f"{name} is not set; launch distributed training with torchrun", field=name)
        return default
    try:
        return int(raw)
    except ValueError as e:
        raise ConfigError(f"expected an integer, got {raw!r}", field=name) from e


def init_distributed(device_spec: str = "auto") -> DistContext:
    """Join the process group described by torchrun's environment, or stay a single process.

    An already initialised group (e.g. by a test harness) is used as it is. On CUDA every process takes the
    GPU ``LOCAL_RANK`` of its node, whatever index ``device_spec`` names.
    """
    joined = dist.is_available() and dist.is_initialized()
    world = dist.get_world_size() if joined else _env_int("WORLD_SIZE", 1)
    device = resolve_device(device_spec)
    if world <= 1:
        return DistContext(device)
    local_rank = _env_int("LOCAL_RANK", 0)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices",
                              field="LOCAL_RANK")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not joined:
        rank = _env_int("RANK")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://",
                                rank=rank, world_size=world)
    return DistContext(device, dist.get_rank(), world, local_rank, owns_group=not joined)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group if :func:`init_distributed` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def silence_non_main(ctx: DistContext) -> None:
    """Make ranks other than 0 print nothing but errors for the rest of the process (torchrun gives every
    rank its own process): stdout goes to the null device, logging below ERROR and warnings are off.
    Exceptions and explicit writes to stderr still show."""
    if ctx.is_main:
        return
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")


def wrap_ddp(model: torch.nn.Module, ctx: DistContext, find_unused_parameters: bool = False) -> torch.nn.Module:
    """``model`` in :class:`DistributedDataParallel` (one device per process), or itself in a single process.

    DDP registers the parameters that require gradients when it is built, so a change of the trainable
    set (a new training stage) needs a new wrapper: drop the old one first (:func:`release_ddp`).
    """
    if not ctx.distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused_parameters)


def release_ddp() -> None:
    """Collect dropped DDP wrappers now: their gradient hooks stay on the parameters until they are freed."""
    gc.collect()


def reduce_mean(ctx: DistContext, values: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Mean over all processes of scalar tensors (e.g. the loss terms), as floats; one all-reduce."""
    stacked = torch.stack([v.detach().float() for v in values.values()])
    if ctx.distributed:
        dist.all_reduce(stacked)
        stacked /= ctx.world_size
    return dict(zip(values.keys(), stacked.tolist()))


def max_across(ctx: DistContext, value: float) -> float:
    """The largest ``value`` of all processes (so that wall-clock decisions agree)."""
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order, on every process."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def gather_objects(ctx: DistContext, obj: Any) -> list[Any] | None:
    """Every process's ``obj`` in rank order on rank 0 only (None elsewhere): large results, such as the
    validation detections, are held once instead of on every rank."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def scaled_lr(base_lr: float, total_batch: int, reference_batch: int | None) -> float:
    """Linear scaling rule (Goyal et al. 2017): ``base_lr * total_batch / reference_batch``; ``base_lr`` when
    ``reference_batch`` is None. ``total_batch`` = images per step over all processes."""
    if reference_batch is None:
        return base_lr
    return base_lr * total_batch / reference_batch


def shard(n: int, ctx: DistContext) -> list[int]:
    """This process's disjoint share of ``range(n)`` (every ``world_size``-th index from ``rank``)."""
    return list(range(ctx.rank, n, ctx.world_size))
