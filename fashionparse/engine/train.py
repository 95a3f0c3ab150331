"""The training loop: staged SGD with warm-up and clipping, atomic checkpoints, exact resume.

Iteration-based (detectron2-style). Stages follow matterport's recipe (heads, then 4+, then all): each
stage freezes what it does not train and starts a fresh optimizer at its own learning rate.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from fashionparse.config import Config, StageConfig, dump_config
from fashionparse.data.augment import build_train_transforms
from fashionparse.data.balance import balance_plan
from fashionparse.data.dataset import CocoInstanceDataset, collate
from fashionparse.data.sampler import RepeatFactorTrainingSampler
from fashionparse.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from fashionparse.errors import ConfigError, FashionparseError
from fashionparse.model import build_model, set_trainable
from fashionparse.utils.device import resolve_device
from fashionparse.utils.io import atomic_write_text

LAST = "checkpoint_last.pth"
FINAL = "model_final.pth"


class TrainingDiverged(FashionparseError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    output_dir: Path
    model: torch.nn.Module
    iterations: int
    final_checkpoint: Path
    stopped_early: bool
    metrics: Any = None  # EvalResult when evaluation ran


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


def make_optimizer(model: torch.nn.Module, cfg: Config, lr: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    s = cfg.solver
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=s.momentum, weight_decay=s.weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=s.weight_decay)


def build_train_loader(cfg: Config, dataset: CocoInstanceDataset, start_sample: int) -> DataLoader:
    """Class-balanced training stream: per-class cap, repeat-factor sampling, the augmentation pipeline
    (rotation and noise optionally only for images holding a rare class). Without cap and threshold every
    repeat factor is 1 and the stream is plain seeded shuffling."""
    plan = balance_plan(dataset.image_labels(), cfg.data)
    tqdm.write(plan.format())
    dataset.transforms = build_train_transforms(cfg.data, plan.rare_categories)
    workers = cfg.data.num_workers
    return DataLoader(
        dataset,
        batch_size=cfg.solver.batch_size,
        sampler=RepeatFactorTrainingSampler(plan.repeat_factors, seed=cfg.train.seed, start=start_sample),
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=workers > 0,
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


def train(cfg: Config, *, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train ``cfg`` into ``cfg.train.output_dir``; with ``resume`` continue from its last checkpoint."""
    out = Path(cfg.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.train.seed)
    if not cfg.data.train_annotations:
        raise ConfigError("no training annotations given", field="data.train_annotations")
    dataset = CocoInstanceDataset(cfg.data.train_images, cfg.data.train_annotations)
    if dataset.skipped.counts:
        tqdm.write(f"training data: {dataset.skipped.format()}")
    model = build_model(cfg.model).to(device)

    iteration, state = 0, None
    if resume:
        state = load_checkpoint(out / LAST)
        model.load_state_dict(state["model"])
        iteration = int(state["iteration"])
        tqdm.write(f"resumed from {out / LAST} at iteration {iteration}")
    atomic_write_text(out / "config.yaml", dump_config(cfg))

    stages = cfg.solver.stages
    total = sum(st.iterations for st in stages)
    logger = _Logger(out)
    loader_iter = iter(build_train_loader(cfg, dataset, iteration * cfg.solver.batch_size))
    if state is not None:
        set_rng_state(state["rng"])  # after the loader exists: nothing else may draw from the RNG
    started = time.monotonic()
    stopped_early = False
    bar = tqdm(total=total, initial=iteration, desc="train", disable=not progress, dynamic_ncols=True)
    optimizer = scheduler = None
    stage_idx = -1
    try:
        while iteration < total:
            idx, stage_start = stage_at(stages, iteration)
            if idx != stage_idx:
                stage_idx, stage = idx, stages[idx]
                set_trainable(model, stage.trainable)
                optimizer = make_optimizer(model, cfg, stage.lr)
                scheduler = torch.optim.lr_scheduler.LambdaLR(
                    optimizer,
                    lambda i, s0=stage_start: warmup_factor(s0 + i, cfg.solver.warmup_iters,
                                                            cfg.solver.warmup_factor),
                )
                if state is not None and state.get("stage") == idx and "optimizer" in state:
                    optimizer.load_state_dict(state["optimizer"])
                    scheduler.load_state_dict(state["scheduler"])
                else:  # resumed inside a stage without its optimizer state: catch the schedule up
                    for _ in range(iteration - stage_start):
                        scheduler.step()
                state = None
                bar.set_description(f"train [{stage.trainable}]")
            model.train()
            images, targets = _to_device(*next(loader_iter), device)
            losses = model(images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                parts = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
                raise TrainingDiverged(
                    f"loss became {loss.item()} at iteration {iteration} ({parts}); kept the last good "
                    f"checkpoint; lower the learning rate or check the data", path=out / LAST)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.solver.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(
                    [p for g in optimizer.param_groups for p in g["params"]], cfg.solver.clip_grad_norm)
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            iteration += 1
            bar.update(1)
            skip_to = budget_skip(stages, iteration, time.monotonic() - started, cfg.train.time_budget_s)
            if skip_to > iteration:
                tqdm.write(f"time budget: moving on to the last stage at iteration {iteration}")
                bar.update(skip_to - iteration)
                iteration = skip_to
            if iteration % cfg.train.log_period == 0 or iteration == total:
                values = {k: v.item() for k, v in losses.items()}
                values.update(loss=loss.item(), lr=lr, stage=stage_idx)
                logger.log(iteration, values)
                bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{lr:.2e}")
            budget_spent = (cfg.train.time_budget_s is not None
                            and time.monotonic() - started > cfg.train.time_budget_s)
            if iteration % cfg.train.checkpoint_period == 0 or iteration == total or budget_spent:
                save_checkpoint(out / LAST, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "stage": stage_idx, "iteration": iteration,
                    "config": cfg.to_dict(), "rng": rng_state(),
                })
            if budget_spent and iteration < total:
                tqdm.write(f"time budget of {cfg.train.time_budget_s:.0f} s spent at iteration {iteration}")
                stopped_early = True
                break
    finally:
        bar.close()
        logger.close()
    save_checkpoint(out / FINAL, {"model": model.state_dict(), "config": cfg.to_dict(), "iteration": iteration})
    metrics = None
    if cfg.train.eval_at_end and cfg.data.val_annotations:
        metrics = evaluate_config(model, cfg, device, out / "eval", progress=progress)
    return TrainResult(out, model, iteration, out / FINAL, stopped_early, metrics)


def evaluate_config(model: torch.nn.Module, cfg: Config, device: torch.device, out_dir: Path,
                    progress: bool = True):
    """Evaluate ``model`` on the validation split named in ``cfg`` and write the tables to ``out_dir``."""
    from fashionparse.engine.evaluate import evaluate_model

    val = CocoInstanceDataset(cfg.data.val_images, cfg.data.val_annotations, with_masks=False)
    return evaluate_model(model, val, cfg.data.val_annotations, device, out_dir=out_dir, progress=progress)
