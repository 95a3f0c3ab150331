"""GPU throughput of the parser: training and inference images/s at DF2 resolution, fp32 against bf16.

SE-ResNet-101-FPN (the DF2 recipe, ``configs/se_resnet101_fpn_deepfashion2.yaml``: legacy SENet layout, frozen
BN) and ResNet-101-FPN (the same with a plain timm ResNet-101), random weights, at max_size 1333. Synthetic
images are made in memory: short side 800, long side 1000..1333, one orientation per batch as aspect-ratio
grouping gives, three garments each (boxes, box-shaped masks, labels). Each row runs the training step of
``fashionparse train`` (autocast, grad scaler, clipping, SGD; all layers trainable) and the inference of the
evaluation (``box_score_thresh`` 0, 100 detections, masks pasted at full resolution), each for ``--seconds``
after ``--warmup`` iterations, with CUDA synchronisation around the timed part. Rows: fp32; bf16 autocast;
bf16 autocast with channels_last weights (CUDA only). A batch that does not fit is halved until it does.

Random frozen BN is the identity, and 33 residual units at identity scale overflow in fp32 (NaN boxes would
shrink the RoI work), so the last norm of every residual branch is zeroed, as a zero-init network starts;
the arithmetic per image is unchanged.

    .venv/bin/python benchmarks/gpu_throughput.py [--seconds 6] [--train-batch 8] [--infer-batch 8]
    .venv/bin/python benchmarks/gpu_throughput.py --smoke      # CPU, 128-160 px, depth 18, 1 iteration
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from fashionparse.config import load_config
from fashionparse.engine.precision import autocast, backward_and_step, grad_scaler, use_channels_last
from fashionparse.model import build_model, set_trainable

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "se_resnet101_fpn_deepfashion2.yaml"
MODELS = {
    "SE-ResNet-101-FPN": [],
    "ResNet-101-FPN": ["model.layout=resnet", "model.attention=none"],
}
# --smoke: the same pipeline on a small body (depth 18, narrow heads) so that the CPU finishes in about a minute
SMOKE_MODEL = ["model.layout=resnet", "model.depth=18", "model.width=16", "model.fpn_channels=32",
               "model.representation_size=64", "model.mask_head_channels=16", "model.mask_head_layers=1",
               "model.rpn_pre_nms_top_n_train=200", "model.rpn_post_nms_top_n_train=100",
               "model.rpn_pre_nms_top_n_test=100", "model.rpn_post_nms_top_n_test=50",
               "model.box_batch_size_per_image=32", "model.box_detections_per_img=20"]
ROWS = (("fp32", "none", False), ("bf16", "bf16", False), ("bf16+channels_last", "bf16", True))
TARGET = "target (issue 8): >= 20 training images/s with mixed precision on one H100"


@dataclass
class Measure:
    images_per_s: float
    batch: int
    iterations: int


def synthetic_batch(batch: int, short: int, long_max: int, seed: int, device: torch.device):
    """``batch`` images (float [3, H, W] in 0..1, one orientation, H = ``short`` or W = ``short``) with targets."""
    g = torch.Generator().manual_seed(seed)
    long = int(torch.randint(max(short, int(long_max * 0.75)), long_max + 1, (1,), generator=g))
    h, w = (short, long) if seed % 2 == 0 else (long, short)
    images, targets = [], []
    for _ in range(batch):
        images.append(torch.rand(3, h, w, generator=g).to(device))
        xy = torch.rand(3, 2, generator=g) * torch.tensor([w * 0.5, h * 0.5])
        wh = (0.2 + 0.3 * torch.rand(3, 2, generator=g)) * torch.tensor([w, h])
        boxes = torch.cat([xy, xy + wh], dim=1).round()
        masks = torch.zeros(3, h, w, dtype=torch.uint8)
        for m, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
            m[y1:y2, x1:x2] = 1
        targets.append({"boxes": boxes.to(device), "labels": torch.randint(1, 14, (3,), generator=g).to(device),
                        "masks": masks.to(device)})
    return images, targets


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], None], batch: int, device: torch.device, warmup: int, seconds: float,
          min_iters: int) -> Measure:
    """Images/s of ``step`` (one batch) over at least ``seconds`` and ``min_iters`` after ``warmup`` steps."""
    for _ in range(warmup):
        step()
    sync(device)
    start, n = time.perf_counter(), 0
    while n < min_iters or time.perf_counter() - start < seconds:
        step()
        n += 1
        sync(device)
    return Measure(batch * n / (time.perf_counter() - start), batch, n)


def fitting(measure: Callable[[int], Measure], batch: int, device: torch.device) -> Measure | None:
    """``measure(batch)``, halving the batch on CUDA out-of-memory; None when even 1 does not fit."""
    while batch >= 1:
        try:
            return measure(batch)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            batch //= 2
    return None


def damp_residual_branches(model: torch.nn.Module) -> None:
    """Zero the last norm of every residual branch (``bn3`` in timm's and the legacy SENet's bottlenecks)."""
    for module in model.backbone.body.modules():
        bn3 = getattr(module, "bn3", None)
        if bn3 is not None:
            bn3.weight.zero_()


def bench_model(overrides: list[str], args, device: torch.device, deadline: float):
    """Rows ``(precision, train Measure, inference Measure, peak GiB)`` of one model; a row after ``deadline``
    (``time.perf_counter()``) is skipped, with ``None`` measures."""
    cfg = load_config(RECIPE, [*overrides, *(SMOKE_MODEL if args.smoke else []), "model.weights=null",
                               f"model.max_size={args.long}", f"model.min_size=[{args.short}]"])
    model = build_model(cfg.model).to(device)
    damp_residual_branches(model)
    set_trainable(model, "all")
    rows = []
    for label, amp, channels_last in ROWS:
        if channels_last and device.type != "cuda":
            continue  # channels_last is a CUDA layout
        if time.perf_counter() > deadline:
            rows.append((label, None, None, None))
            continue
        use_channels_last(model, device, channels_last)
        scaler = grad_scaler(device, amp)

        def train_at(batch: int) -> Measure:
            optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
            data = [synthetic_batch(batch, args.short, args.long, seed, device) for seed in range(2)]
            calls = {"n": 0}

            def step() -> None:
                images, targets = data[calls["n"] % 2]
                calls["n"] += 1
                with autocast(device, amp):
                    losses = model(images, targets)
                backward_and_step(sum(losses.values()), optimizer, scaler, cfg.solver.clip_grad_norm)

            model.train()
            try:
                return timed(step, batch, device, args.warmup, args.seconds, args.min_iters)
            finally:
                optimizer.zero_grad(set_to_none=True)

        def infer_at(batch: int) -> Measure:
            data = [synthetic_batch(batch, args.short, args.long, seed, device)[0] for seed in range(2)]
            calls = {"n": 0}

            def step() -> None:
                images = data[calls["n"] % 2]
                calls["n"] += 1
                with torch.inference_mode(), autocast(device, amp):
                    model(images)

            model.eval()
            return timed(step, batch, device, args.warmup, args.seconds, args.min_iters)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        measured = fitting(train_at, args.train_batch, device), fitting(infer_at, args.infer_batch, device)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        rows.append((label, *measured, peak))
    return rows


def cell(m: Measure | None) -> str:
    """Images/s and batch of a measurement; OOM when not even batch 1 fitted."""
    return f"{'OOM':>11} {'-':>5}" if m is None else f"{m.images_per_s:>11.2f} {m.batch:>5}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny images, 1 iteration: check the script")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--min-iters", type=int, default=3)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--infer-batch", type=int, default=8)
    parser.add_argument("--short", type=int, default=800, help="short image side (DF2 recipe: 800)")
    parser.add_argument("--long", type=int, default=1333, help="longest image side (max_size)")
    parser.add_argument("--budget-s", type=float, default=240.0, help="no new row starts after this many seconds")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.warmup, args.min_iters = 0.0, 1, 1
        args.train_batch, args.infer_batch, args.short, args.long = 1, 1, 128, 160
        torch.set_num_threads(2)
    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    logging.disable(logging.WARNING)  # "frozen_bn without weights": intended here
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; images: short side {args.short}, long side up to {args.long} "
          f"px; {args.seconds:g} s per measurement after {args.warmup} warm-up iterations"
          + ("; SMOKE: depth-18 bodies, numbers mean nothing" if args.smoke else ""))
    started = time.perf_counter()
    header = (f"{'model':<19} {'precision':<19} {'train img/s':>11} {'batch':>5} {'infer img/s':>11} {'batch':>5} "
              f"{'peak GiB':>8}")
    lines = [header, "-" * len(header)]
    for model_name, overrides in MODELS.items():
        if args.smoke:
            model_name = model_name.replace("101", "18")
        for label, tr, inf, peak in bench_model(overrides, args, device, started + args.budget_s):
            if peak is None and tr is None and inf is None:  # an OOM row still has its peak memory
                lines.append(f"{model_name:<19} {label:<19} skipped: --budget-s spent")
            else:
                lines.append(f"{model_name:<19} {label:<19} {cell(tr)} {cell(inf)} "
                             f"{'-' if peak is None else f'{peak:.1f}':>8}")
            print(lines[-1], flush=True)
    print("\n" + "\n".join(lines))
    print(f"{TARGET}\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
