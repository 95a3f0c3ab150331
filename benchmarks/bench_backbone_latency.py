"""CPU inference latency of Mask R-CNN with SE-ResNet-FPN vs ResNet-FPN (and of the bodies alone).

Both detectors are built in one process (layout resnet, random init, eval mode) and timed interleaved
(se, none, se, none, ...) after a warm-up, so drift in machine load hits both alike. Frozen BN left at
its identity init lets a random 101-layer body overflow (the plain one returned no boxes), so the BN
statistics are first calibrated on the input (one train-mode pass, as pretrained weights would have)
and then frozen. Random weights give few confident detections, so ``box_score_thresh=0`` and
``box_detections_per_img=100`` make both run the mask head on the same number of boxes (``dets``).

    .venv/bin/python benchmarks/bench_backbone_latency.py [--depth 101] [--size 800] [--runs 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from timm.layers import freeze_batch_norm_2d
from torch import nn
from tqdm import tqdm

from fashionparse.config import ModelConfig
from fashionparse.model import build_model

VARIANTS = ("se", "none")


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated q-th percentile (0..100)."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def time_interleaved(fns: dict[str, Callable[[], object]], warmup: int, runs: int, desc: str) -> dict[str, list[float]]:
    """Milliseconds per call of each fn, calls interleaved across fns."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in tqdm(range(runs), desc=desc):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - t0) * 1000)
    return times


def calibrate_and_freeze_bn(body: nn.Module, batch: torch.Tensor) -> nn.Module:
    """Set each BatchNorm to unit scale and the statistics of ``batch`` (one train pass), then freeze it."""
    for m in body.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            m.momentum = 1.0
    body.train()
    with torch.no_grad():
        body(batch)
    return freeze_batch_norm_2d(body.eval())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=101, choices=(18, 34, 50, 101))
    ap.add_argument("--size", type=int, default=800, help="square input image side (px); min_size is set to it")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    image = torch.rand(3, args.size, args.size)
    models = {}
    for attention in VARIANTS:
        cfg = ModelConfig(depth=args.depth, attention=attention, layout="resnet", norm="bn",
                          min_size=[args.size], box_score_thresh=0.0, box_detections_per_img=100)
        model = build_model(cfg).eval()
        batch = model.transform([image])[0].tensors  # the normalised, padded tensor the body sees
        model.backbone.body = calibrate_and_freeze_bn(model.backbone.body, batch)
        models[attention] = model

    detections: dict[str, int] = {}

    def detect(attention: str) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                detections[attention] = len(models[attention]([image])[0]["boxes"])
        return run

    def body(attention: str) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                models[attention].backbone.body(batch)
        return run

    full = time_interleaved({a: detect(a) for a in VARIANTS}, args.warmup, args.runs, "Mask R-CNN")
    bodies = time_interleaved({a: body(a) for a in VARIANTS}, args.warmup, args.runs, "body")

    print(f"\nCPU {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads, "
          f"image {args.size}x{args.size} (padded {tuple(batch.shape[-2:])}), {args.runs} runs after "
          f"{args.warmup} warm-up, interleaved")
    header = f"{'what':<28}{'params (M)':>11}{'median ms':>11}{'p90 ms':>9}{'overhead':>10}{'dets':>6}"
    print(header)
    print("-" * len(header))
    for label, times, module_of in (
        ("Mask R-CNN", full, lambda a: models[a]),
        ("body only", bodies, lambda a: models[a].backbone.body),
    ):
        base = statistics.median(times["none"])
        for attention in VARIANTS:
            name = f"{label} R{args.depth}" + ("-SE" if attention == "se" else "")
            params = sum(p.numel() for p in module_of(attention).parameters()) / 1e6
            med = statistics.median(times[attention])
            over = f"{100 * (med / base - 1):+.1f}%" if attention != "none" else "-"
            dets = str(detections[attention]) if label == "Mask R-CNN" else ""
            print(f"{name:<28}{params:>11.2f}{med:>11.0f}{percentile(times[attention], 90):>9.0f}{over:>10}{dets:>6}")


if __name__ == "__main__":
    main()
