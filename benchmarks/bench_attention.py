"""Equal-budget comparison of attention blocks on the synthetic set: ``se`` against ``none`` (and more).

Same data, seed, schedule and iteration count for every variant (no wall-clock budget, so that a slower
block does not get fewer steps); prints box and mask AP side by side and writes a Markdown table.

    python benchmarks/bench_attention.py --iterations 600 --attention se none [--threads 1] [--seed 0]

From scratch by default; ``--pretrain`` first pretrains each variant's body on the garment crops as the
demo does (``pretrain.*`` of ``configs/demo_cpu.yaml``; use the demo's ``--train-images 4000``).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from fashionparse.engine.demo import load_demo_config, prepare_demo_data
from fashionparse.engine.train import train
from fashionparse.utils.io import atomic_write_text

COLUMNS = ("AP", "AP50", "AP75")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention", nargs="+", default=["se", "none"])
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--train-images", type=int, default=600)
    parser.add_argument("--val-images", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--pretrain", action="store_true", help="crop-pretrain each body first, as the demo")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_attention"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = prepare_demo_data(args.out / "data", args.seed, args.train_images, args.val_images)
    rows = []
    for attention in args.attention:
        cfg = load_demo_config([f"model.attention={attention}", f"train.output_dir={args.out / attention}",
                                f"train.seed={args.seed}", "train.checkpoint_period=100000", *data],
                               args.iterations, pretrain=args.pretrain)
        started = time.monotonic()
        result = train(cfg)
        minutes = (time.monotonic() - started) / 60
        params = sum(p.numel() for p in result.model.parameters()) / 1e6
        rows.append((attention, params, minutes, result.metrics))

    header = ("| attention | params (M) | train+eval min | " + " | ".join(f"box {c}" for c in COLUMNS) + " | "
              + " | ".join(f"mask {c}" for c in COLUMNS) + " |")
    lines = [header, "|" + "---|" * (3 + 2 * len(COLUMNS))]
    for attention, params, minutes, m in rows:
        box = " | ".join(f"{100 * getattr(m.box, c):.1f}" for c in COLUMNS)
        mask = " | ".join(f"{100 * getattr(m.mask, c):.1f}" for c in COLUMNS)
        lines.append(f"| {attention} | {params:.2f} | {minutes:.1f} | {box} | {mask} |")
    table = "\n".join(lines)
    start = "crop-pretrained body" if args.pretrain else "from scratch"
    note = (f"{start}, {args.iterations} iterations per variant, seed {args.seed}, {args.train_images} train / "
            f"{args.val_images} validation images; {platform.machine()}, {torch.get_num_threads()} torch threads; "
            "AP in percent")
    print(f"{note}\n\n{table}")
    atomic_write_text(args.out / "attention.md", f"{note}\n\n{table}\n")


if __name__ == "__main__":
    main()
