"""The training loop: staged SGD with warm-up and clipping, atomic checkpoints, exact resume.

Iteration-based (detectron2-style). Stages follow matterport's recipe (heads, then 4+, then all): each
stage freezes what it does not train and starts a fresh optimizer at its own learning rate.

The same loop runs in one process or in every process of a ``torchrun`` job (``docs/distributed.md``):
each process trains ``solver.batch_size`` images per step under DistributedDataParallel, takes its own
share of one global sample stream, and rank 0 alone logs, checkpoints and scores the evaluation.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from fashionparse.config import Config, ModelConfig, StageConfig, dump_config
from fashionparse.data.augment import build_train_transforms
from fashionparse.data.balance import balance_plan
from fashionparse.data.dataset import CocoInstanceDataset, collate
from fashionparse.data.sampler import DistributedBatchSampler, RepeatFactorTrainingSampler, orientation_groups
from fashionparse.engine.checkpoint import (
    from_checkpoint,
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from fashionparse.engine.distributed import (
    DistContext,
    all_gather_objects,
    barrier,
    gather_objects,
    init_distributed,
    max_across,
    reduce_mean,
    release_ddp,
    scaled_lr,
    shard,
    shutdown,
    silence_non_main,
    wrap_ddp,
)
from fashionparse.engine.precision import autocast, backward_and_step, grad_scaler, use_channels_last
from fashionparse.engine.pretrain import WEIGHTS_NAME as PRETRAINED_BODY
from fashionparse.engine.pretrain import pretrain_backbone
from fashionparse.errors import CheckpointError, ConfigError, FashionparseError
from fashionparse.model import build_model, set_trainable
from fashionparse.utils.io import atomic_write_text

LAST = "checkpoint_last.pth"
FINAL = "model_final.pth"
# what resuming reads from checkpoint_last.pth besides the model ("samples" and "scaler" may be absent in older files)
RESUME_FIELDS = ("iteration", "stage", "optimizer", "scheduler", "rng")
# ground truth the augmentation removes (fashionparse.data.augment.warp): instances whose mask left the image,
# labelled landmarks that left it; counted per target, summed over training
DROPPED = ("dropped_instances", "dropped_landmarks")


class TrainingDiverged(FashionparseError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    output_dir: Path
    model: torch.nn.Module
    iterations: int  # the schedule position reached (a time budget may skip part of the first stages)
    final_checkpoint: Path
    stopped_early: bool
    metrics: Any = None  # EvalResult when evaluation ran (on rank 0 only in a distributed run)
    steps: int = 0  # optimizer steps this call actually ran
    dropped: dict[str, int] = field(default_factory=dict)  # DROPPED totals over the whole training, all processes


def stage_at(stages: list[StageConfig], iteration: int) -> tuple[int, int]:
    """(stage index, first global iteration of that stage) for the iteration about to run."""
    start = 0
    for i, st in enumerate(stages):
        if iteration < start + st.iterations:
            return i, start
        start += st.iterations
    return len(stages) - 1, start - stages[-1].iterations


def budget_skip(stages: list[StageConfig], iteration: int, elapsed_s: float, budget_s: float | None) -> int:
    """Where to continue under a wall-clock budget: the start of the last stage once the budget minus
    that stage's share (its fraction of all iterations) is spent, so that a short budget still ends with
    the final low-lr stage; otherwise ``iteration`` unchanged."""
    total = sum(st.iterations for st in stages)
    last_start = total - stages[-1].iterations
    if budget_s is None or len(stages) < 2 or iteration >= last_start:
        return iteration
    return last_start if elapsed_s > budget_s * last_start / total else iteration


def warmup_factor(iteration: int, warmup_iters: int, factor: float) -> float:
    """Linear warm-up from ``factor`` to 1 over the first ``warmup_iters`` global iterations."""
    if iteration >= warmup_iters:
        return 1.0
    alpha = iteration / warmup_iters
    return factor * (1 - alpha) + alpha


def stage_lr(cfg: Config, stage: StageConfig, world_size: int) -> float:
    """The stage's learning rate for ``world_size`` processes under the linear scaling rule
    (``solver.reference_batch_size``; unscaled when it is null)."""
    return scaled_lr(stage.lr, cfg.solver.batch_size * world_size, cfg.solver.reference_batch_size)


def make_optimizer(model: torch.nn.Module, cfg: Config, lr: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    s = cfg.solver
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=s.momentum, weight_decay=s.weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=s.weight_decay)


def build_train_loader(cfg: Config, dataset: CocoInstanceDataset, ctx: DistContext, start_batch: int) -> DataLoader:
    """This process's share of the class-balanced training stream: per-class cap, repeat-factor sampling,
    batches of one orientation (``data.aspect_ratio_grouping``), global batch ``j`` to rank ``j % world``,
    starting after ``start_batch`` global batches; the augmentation pipeline (rotation and noise optionally
    only for images holding a rare class). Without cap and threshold every repeat factor is 1 and the stream
    is plain seeded shuffling."""
    plan = balance_plan(dataset.image_labels(), cfg.data)
    tqdm.write(plan.format())
    dataset.transforms = build_train_transforms(cfg.data, plan.rare_categories)
    groups = None
    if cfg.data.aspect_ratio_grouping:
        groups = orientation_groups([dataset.get_height_and_width(i) for i in range(len(dataset))])
    batches = DistributedBatchSampler(
        lambda start: RepeatFactorTrainingSampler(plan.repeat_factors, seed=cfg.train.seed, start=start),
        cfg.solver.batch_size, group_ids=groups, window=cfg.data.group_window, rank=ctx.rank,
        world_size=ctx.world_size, start_batch=start_batch)
    workers = cfg.data.num_workers
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=cfg.data.pin_memory and ctx.device.type == "cuda",
        persistent_workers=workers > 0,  # the stream is endless: one iterator, workers live for the whole run
        generator=torch.Generator().manual_seed(cfg.train.seed),
    )


def _to_device(images, targets, device: torch.device):
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
               for t in targets]
    return images, targets


class _Logger:
    """JSONL metrics file plus TensorBoard scalars."""

    def __init__(self, out: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.jsonl = (out / "metrics.jsonl").open("a")
        self.tb = SummaryWriter(str(out / "tb"))

    def log(self, iteration: int, values: dict[str, float]) -> None:
        self.jsonl.write(json.dumps({"iteration": iteration, **values}) + "\n")
        self.jsonl.flush()
        for k, v in values.items():
            self.tb.add_scalar(k, v, iteration)

    def close(self) -> None:
        self.jsonl.close()
        self.tb.close()


def _rank_seed(seed: int, rank: int, samples: int) -> int:
    """Torch seed of ``rank`` for a run starting at ``samples`` consumed global samples."""
    return int(np.random.SeedSequence([seed, rank, samples]).generate_state(1)[0])


def _restore_rng(state: dict[str, Any], ctx: DistContext, seed: int, samples: int) -> None:
    """Continue every process's RNG (proposal sampling, multi-scale choice) from the checkpoint when it was
    written at this world size; otherwise seed each rank afresh (resuming is then exact in data, not in RNG)."""
    saved = state["rng"]
    states = saved if isinstance(saved, list) else [saved]  # single-process checkpoints hold one state
    if len(states) == ctx.world_size:
        set_rng_state(states[ctx.rank])
        return
    tqdm.write(f"checkpoint holds the RNG states of {len(states)} process(es), this run has {ctx.world_size}: "
               "reseeding every process")
    torch.manual_seed(_rank_seed(seed, ctx.rank, samples))


def _restore_schedule(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR,
                      state: dict[str, Any], lr: float, checkpoint: Path) -> None:
    """Load a stage's optimizer and schedule, then put them on ``lr``, which differs from the checkpoint's
    when the world size changed under the linear scaling rule (identical otherwise)."""
    try:
        optimizer.load_state_dict(state["optimizer"])
    except ValueError as e:  # torch: parameter groups of other sizes (a stage that trains other layers)
        raise CheckpointError(f"does not fit this stage's trainable parameters ({e})", path=checkpoint,
                              field="optimizer") from e
    scheduler.load_state_dict(state["scheduler"])
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    scheduler.base_lrs = [lr] * len(optimizer.param_groups)
    for group in optimizer.param_groups:
        group["initial_lr"] = lr
        group["lr"] = lr * factor


def _enter_stage(model: torch.nn.Module, cfg: Config, ctx: DistContext, idx: int, stage_start: int,
                 iteration: int, state: dict[str, Any] | None, checkpoint: Path):
    """Freeze what stage ``idx`` does not train, build its optimizer and warm-up schedule (restored from
    ``state``, read from ``checkpoint``, when it was written inside this stage) and wrap the model for this
    trainable set."""
    stage = cfg.solver.stages[idx]
    set_trainable(model, stage.trainable)
    lr = stage_lr(cfg, stage, ctx.world_size)
    optimizer = make_optimizer(model, cfg, lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda i, s0=stage_start: warmup_factor(s0 + i, cfg.solver.warmup_iters, cfg.solver.warmup_factor),
    )
    if state is not None and state["stage"] == idx:
        _restore_schedule(optimizer, scheduler, state, lr, checkpoint)
    else:  # resumed from a checkpoint of an earlier stage: catch the schedule up
        for _ in range(iteration - stage_start):
            scheduler.step()
    return wrap_ddp(model, ctx, cfg.train.find_unused_parameters), optimizer, scheduler


def _step(net: torch.nn.Module, batch, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, cfg: Config,
          ctx: DistContext, iteration: int, checkpoint: Path) -> tuple[dict[str, float], dict[str, int]]:
    """One optimizer step on this process's ``batch``; returns the loss terms and ``loss`` averaged over all
    processes, and the :data:`DROPPED` counts of the batches of all processes summed. A non-finite mean loss
    raises :class:`TrainingDiverged` on every rank alike, before the step."""
    net.train()
    images, targets = _to_device(*batch, ctx.device)
    with autocast(ctx.device, cfg.train.amp):
        losses = net(images, targets)
    loss = sum(losses.values())
    counts = {k: torch.tensor(float(sum(t.get(k, 0) for t in targets)), device=ctx.device) for k in DROPPED}
    values = reduce_mean(ctx, {**losses, "loss": loss, **counts})  # one all-reduce for both
    dropped = {k: round(values.pop(k) * ctx.world_size) for k in DROPPED}  # mean x processes = sum
    if not math.isfinite(values["loss"]):
        parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items() if k != "loss")
        kept = (f"kept the last good checkpoint {checkpoint}" if checkpoint.is_file()
                else "no checkpoint was written yet")
        raise TrainingDiverged(
            f"loss became {values['loss']} at iteration {iteration} ({parts}); {kept}; lower the learning rate "
            f"or check the data", path=checkpoint.parent)
    backward_and_step(loss, optimizer, scaler, cfg.solver.clip_grad_norm)
    return values, dropped


def _prepare_model(cfg: Config, ctx: DistContext, model_cfg: ModelConfig) -> torch.nn.Module:
    """The model ``model_cfg`` describes (``cfg.model`` with the run's initial weights) on this process's device:
    SyncBatchNorm in a distributed run with ``train.sync_bn``, NHWC weights with ``train.channels_last`` on
    CUDA."""
    model = build_model(model_cfg)
    if cfg.train.sync_bn:
        if not ctx.distributed:
            tqdm.write("train.sync_bn: a single process has nothing to synchronize; plain BatchNorm")
        elif ctx.device.type != "cuda":
            raise ConfigError("SyncBatchNorm runs on CUDA devices only", field="train.sync_bn")
        else:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(ctx.device)
    if cfg.train.channels_last and not use_channels_last(model, ctx.device, True):
        tqdm.write(f"train.channels_last applies on CUDA only; left off on {ctx.device}")
    return model


def train(cfg: Config, *, resume: bool = False, progress: bool = True,
          deadline: float | None = None) -> TrainResult:
    """Train ``cfg`` into ``cfg.train.output_dir``; with ``resume`` continue from its last checkpoint.

    Under ``torchrun`` every process calls this: it joins the process group from the environment and leaves
    it at the end; ranks other than 0 print nothing but errors and return ``metrics=None``. ``deadline``
    (a ``time.monotonic()`` value, e.g. the end of the demo's whole-run limit) tightens
    ``train.time_budget_s`` to the time left when the detector's loop starts, pretraining included.
    """
    ctx = init_distributed(cfg.train.device)
    silence_non_main(ctx)
    try:
        return _train(cfg, ctx, resume=resume, progress=progress and ctx.is_main, deadline=deadline)
    finally:
        shutdown(ctx)


def detector_budget(budget_s: float | None, deadline: float | None, now: float) -> float | None:
    """The detector loop's wall-clock budget starting at ``now``: ``budget_s`` tightened to what is left
    before ``deadline`` (both optional; ``None``: unlimited)."""
    if deadline is None:
        return budget_s
    return deadline - now if budget_s is None else min(budget_s, deadline - now)


def _train(cfg: Config, ctx: DistContext, *, resume: bool, progress: bool, deadline: float | None) -> TrainResult:
    out = Path(cfg.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = ctx.device
    torch.manual_seed(cfg.train.seed)
    if not cfg.data.train_annotations:
        raise ConfigError("no training annotations given", field="data.train_annotations")
    dataset = CocoInstanceDataset(cfg.data.train_images, cfg.data.train_annotations,
                                  mask_format=cfg.model.mask_format, minimask_shape=tuple(cfg.model.minimask_shape))
    if dataset.skipped.counts:
        tqdm.write(f"training data: {dataset.skipped.format()}")
    labels = dataset.coco.getCatIds()
    if labels and max(labels) >= cfg.model.num_classes:  # torchvision's labels are 1..num_classes-1
        raise ConfigError(f"{cfg.model.num_classes} classes (background included) cannot hold the training data's "
                          f"category id {max(labels)}", path=cfg.data.train_annotations, field="model.num_classes")
    if cfg.train.eval_at_end and cfg.data.val_annotations:  # a GT the final evaluation would refuse fails now;
        from fashionparse.engine.evaluate import load_ground_truth  # every rank checks, so none waits on another

        load_ground_truth(cfg.data.val_annotations, df2_categories=False)
    model_cfg = cfg.model
    if resume:  # every tensor comes from the checkpoint: no initial-weight file is read (nor needed)
        model_cfg = from_checkpoint(cfg.model)
    elif cfg.pretrain.iterations:
        pretrained = out / "pretrain" / PRETRAINED_BODY
        if ctx.is_main:
            tqdm.write(pretrain_backbone(cfg, pretrained.parent, progress).format())
        barrier(ctx)
        model_cfg = replace(cfg.model, backbone_weights=str(pretrained))
    if model_cfg.norm == "frozen_bn" and not (resume or model_cfg.backbone_weights or model_cfg.weights):
        tqdm.write("model.norm frozen_bn without backbone_weights, weights or pretraining: the body's BN stays the "
                   "identity")
    model = _prepare_model(cfg, ctx, model_cfg)

    iteration, samples, state = 0, 0, None  # samples: global samples consumed, over all processes
    dropped = dict.fromkeys(DROPPED, 0)
    if resume:
        state = load_checkpoint(out / LAST)
        missing = [k for k in RESUME_FIELDS if k not in state]
        if missing:
            also = f" (and {', '.join(missing[1:])})" if missing[1:] else ""
            raise CheckpointError(f"missing{also}: resuming needs a {LAST} that training wrote (not e.g. a {FINAL})",
                                  path=out / LAST, field=missing[0])
        load_model_state(model, state, out / LAST, "this run's config")
        dropped.update(state.get("dropped", {}))  # older checkpoints did not count
        iteration = int(state["iteration"])
        samples = int(state.get("samples", iteration * cfg.solver.batch_size))  # older: single-process files
        tqdm.write(f"resumed from {out / LAST} at iteration {iteration} ({samples} samples, written by "
                   f"{state.get('world_size', 1)} process(es); now {ctx.world_size})")
    if ctx.is_main:
        atomic_write_text(out / "config.yaml", dump_config(cfg))

    stages = cfg.solver.stages
    total = sum(st.iterations for st in stages)
    if state is not None and iteration >= total:
        where = "the end" if iteration == total else "past the end"
        tqdm.write(f"{out / LAST} is at iteration {iteration}, {where} of this config's schedule ({total} iterations "
                   "in solver.stages): nothing left to train; lengthen solver.stages to train on")
    total_batch = cfg.solver.batch_size * ctx.world_size
    start_batch = -(-samples // cfg.solver.batch_size)
    if start_batch * cfg.solver.batch_size != samples:
        tqdm.write(f"resuming with batch size {cfg.solver.batch_size}: skipping "
                   f"{start_batch * cfg.solver.batch_size - samples} samples to a whole batch")
    logger = _Logger(out) if ctx.is_main else None
    loader_iter = iter(build_train_loader(cfg, dataset, ctx, start_batch))
    # after the loader exists: nothing else may draw from the RNG
    if state is not None:
        _restore_rng(state, ctx, cfg.train.seed, samples)
    elif ctx.rank:  # rank 0 keeps the single-process stream
        torch.manual_seed(_rank_seed(cfg.train.seed, ctx.rank, 0))
    scaler = grad_scaler(device, cfg.train.amp)
    if state is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    started = time.monotonic()
    budget = detector_budget(cfg.train.time_budget_s, deadline, started)
    if budget is not None and budget != cfg.train.time_budget_s:
        tqdm.write(f"time budget: {budget:.0f} s left for the detector before the deadline")
    stopped_early, steps = False, 0
    bar = tqdm(total=total, initial=iteration, desc="train", disable=not progress, dynamic_ncols=True)
    net = optimizer = scheduler = None
    stage_idx = -1
    try:
        while iteration < total:
            idx, stage_start = stage_at(stages, iteration)
            if idx != stage_idx:
                net = None
                release_ddp()  # the previous stage's DDP hooks must be gone before new ones are registered
                stage_idx = idx
                net, optimizer, scheduler = _enter_stage(model, cfg, ctx, idx, stage_start, iteration, state,
                                                         out / LAST)
                state = None
                bar.set_description(f"train [{stages[idx].trainable}]")
            values, step_dropped = _step(net, next(loader_iter), optimizer, scaler, cfg, ctx, iteration, out / LAST)
            for k, n in step_dropped.items():
                dropped[k] += n
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            iteration += 1
            steps += 1
            samples += total_batch
            bar.update(1)
            elapsed = time.monotonic() - started
            if budget is not None:
                elapsed = max_across(ctx, elapsed)  # all ranks take the same budget decisions
            skip_to = budget_skip(stages, iteration, elapsed, budget)
            if skip_to > iteration:
                tqdm.write(f"time budget: moving on to the last stage at iteration {iteration}")
                bar.update(skip_to - iteration)
                iteration = skip_to
            if logger is not None and (iteration % cfg.train.log_period == 0 or iteration == total):
                logger.log(iteration, {**values, "lr": lr, "stage": stage_idx, **dropped})
                bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{lr:.2e}")
            budget_spent = budget is not None and elapsed > budget
            if iteration % cfg.train.checkpoint_period == 0 or iteration == total or budget_spent:
                _save_last(out, ctx, cfg, model, optimizer, scheduler, scaler, stage_idx, iteration, samples, dropped)
            if budget_spent and iteration < total:
                tqdm.write(f"time budget of {budget:.0f} s spent at iteration {iteration}")
                stopped_early = True
                break
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    if any(dropped.values()):
        tqdm.write(f"training augmentation: {dropped['dropped_instances']} instances and "
                   f"{dropped['dropped_landmarks']} labelled landmarks left the image (rotation or zoom) and were "
                   "dropped from their targets")
    if ctx.is_main:
        save_checkpoint(out / FINAL, {"model": model.state_dict(), "config": cfg.to_dict(), "iteration": iteration})
    metrics = None
    if cfg.train.eval_at_end and cfg.data.val_annotations:
        metrics = evaluate_config(model, cfg, device, out / "eval", progress=progress, ctx=ctx)
    barrier(ctx)  # the final files exist before any process returns
    return TrainResult(out, model, iteration, out / FINAL, stopped_early, metrics, steps, dropped)


def _save_last(out: Path, ctx: DistContext, cfg: Config, model: torch.nn.Module, optimizer, scheduler, scaler,
               stage_idx: int, iteration: int, samples: int, dropped: dict[str, int]) -> None:
    """Collective: gather every process's RNG state, then rank 0 writes ``checkpoint_last.pth``.

    ``samples`` counts the global samples consumed, so a run at another world size continues the same
    stream; ``rng`` lists one state per rank; ``dropped`` the :data:`DROPPED` totals so far, which a resumed
    run continues."""
    rng = all_gather_objects(ctx, rng_state())
    if not ctx.is_main:
        return
    save_checkpoint(out / LAST, {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(), "stage": stage_idx, "iteration": iteration, "samples": samples,
        "world_size": ctx.world_size, "batch_size": cfg.solver.batch_size, "config": cfg.to_dict(), "rng": rng,
        "dropped": dict(dropped),
    })


def evaluate_config(model: torch.nn.Module, cfg: Config, device: torch.device, out_dir: Path,
                    progress: bool = True, ctx: DistContext | None = None):
    """Evaluate ``model`` on the validation split named in ``cfg`` and write the tables to ``out_dir``.

    In a distributed run every process infers a disjoint shard of the images; rank 0 gathers the records,
    scores them once and writes the files, and returns the result (the other ranks return None).
    """
    from fashionparse.engine.evaluate import evaluate_results, load_ground_truth, run_inference, write_eval_outputs

    ctx = ctx or DistContext(device)
    val = CocoInstanceDataset(cfg.data.val_images, cfg.data.val_annotations, with_masks=False)
    # rank 0 fails on a bad ground truth before any process spends time on inference
    gt = load_ground_truth(cfg.data.val_annotations, df2_categories=False) if ctx.is_main else None
    records = run_inference(model, Subset(val, shard(len(val), ctx)), device, progress=progress)
    parts = gather_objects(ctx, records)
    if parts is None:
        return None
    bbox = [r for part_bbox, _ in parts for r in part_bbox]
    segm = [r for _, part_segm in parts for r in part_segm]
    result = evaluate_results(gt, bbox, segm)
    write_eval_outputs(result, out_dir, bbox, segm)
    return result
