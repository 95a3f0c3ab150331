"""Per-category box and mask AP with and without class balancing, at equal training budget and seed.

Generates a long-tailed synthetic train split (DF2's default category frequencies) and a balanced validation
split (so every class has enough ground truth for its AP), then trains the CPU demo parser
(``configs/demo_cpu.yaml``) twice from the same seed under the same wall-clock budget:

* ``plain``: uniform sampling, horizontal flip only (the demo's augmentation);
* ``balanced``: repeat-factor sampling with t = image frequency of the ``--repeat-rank``-th most common class,
  plus rotation (+-25 deg) and Gaussian noise on images holding a rare class (r(c) > 1), and
  ``--cap`` items per class if given.

Prints per-category AP side by side (rare classes marked ``*``) and writes ``table.md`` / ``results.json`` to
``--out``. The numbers go into the README's class-balance section.

    .venv/bin/python benchmarks/bench_balancing.py [--budget 120] [--train-images 600] [--val-images 200]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from fashionparse.categories import BY_ID, CATEGORIES
from fashionparse.data.balance import balance_plan
from fashionparse.data.dataset import CocoInstanceDataset
from fashionparse.engine.train import train
from fashionparse.engine.demo import VAL_START_ID, load_demo_config, prepare_split
from fashionparse.utils.io import atomic_write_json, atomic_write_text


def run_arm(name: str, data: list[str], out: Path, seconds: float, iterations: int | None, seed: int,
            extra: Sequence[str]) -> dict:
    """Train one arm under an equal budget -- wall-clock ``seconds`` (the demo's schedule, cut short by
    train's budget rule) or, with ``iterations``, the demo's schedule scaled to exactly that many steps --
    and return its per-category APs and run facts."""
    cfg = load_demo_config([
        *data, f"train.output_dir={out / name}", f"train.seed={seed}", f"train.time_budget_s={seconds}",
        "train.checkpoint_period=100000", "data.landmark_order=synthetic", *extra], iterations)
    started = time.monotonic()
    result = train(cfg)
    m = result.metrics
    return {
        "steps": result.steps, "seconds": time.monotonic() - started, "overrides": list(extra),
        "box": {c.category_id: c.AP for c in m.box.per_category},
        "mask": {c.category_id: c.AP for c in m.mask.per_category},
        "box_AP": m.box.AP, "mask_AP": m.mask.AP,
    }


def _pct(v: float | None) -> str:
    return "  n/a" if v is None or v < 0 else f"{100 * v:5.1f}"


def _delta(a: float | None, b: float | None) -> str:
    return "  n/a" if a is None or b is None or a < 0 or b < 0 else f"{100 * (b - a):+5.1f}"


def format_table(plain: dict, balanced: dict, items: dict[int, int], factors: dict[int, float]) -> str:
    """Markdown table: per category, train items, r(c), box and mask AP of both arms and the difference."""
    lines = ["| category | train items | r(c) | box AP plain | box AP balanced | Δ box | mask AP plain | "
             "mask AP balanced | Δ mask |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = [(c.id, c.name) for c in CATEGORIES] + [(0, "all (mean AP)")]
    for cid, name in rows:
        if cid == 0:
            pb, bb, pm, bm = plain["box_AP"], balanced["box_AP"], plain["mask_AP"], balanced["mask_AP"]
        else:
            pb, bb = plain["box"].get(cid), balanced["box"].get(cid)
            pm, bm = plain["mask"].get(cid), balanced["mask"].get(cid)
        rare = factors.get(cid, 1.0) > 1.0
        label = f"**{name}** *" if rare else name
        n = sum(items.values()) if cid == 0 else items.get(cid, 0)
        r = "" if cid == 0 else (f"{factors[cid]:.2f}" if cid in factors else "-")
        lines.append(f"| {label} | {n} | {r} | {_pct(pb)} | {_pct(bb)} | {_delta(pb, bb)} | {_pct(pm)} | "
                     f"{_pct(bm)} | {_delta(pm, bm)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=120.0, help="training seconds per run (default 120)")
    ap.add_argument("--iterations", type=int, default=None,
                    help="train exactly this many steps per run instead of a time budget")
    ap.add_argument("--train-images", type=int, default=600)
    ap.add_argument("--val-images", type=int, default=200)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat-rank", type=int, default=6,
                    help="t = image frequency of the k-th most common class (default 6)")
    ap.add_argument("--cap", type=int, default=None, help="max_items_per_class for the balanced run")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_balancing"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data_dir = args.out / "data"
    train_json = prepare_split(data_dir, "train", args.train_images, args.seed, 1, args.image_size,
                               balanced=False)
    val_json = prepare_split(data_dir, "validation", args.val_images, args.seed + 1, VAL_START_ID,
                             args.image_size, balanced=True)
    data = [f"data.train_images={data_dir / 'train' / 'image'}", f"data.train_annotations={train_json}",
            f"data.val_images={data_dir / 'validation' / 'image'}", f"data.val_annotations={val_json}"]
    balancing = [f"data.repeat_rank={args.repeat_rank}", "data.rare_class_aug_only=true",
                 "data.rotation_deg=25", "data.rotation_prob=0.5", "data.noise_std=0.03", "data.noise_prob=0.5"]
    if args.cap is not None:
        balancing.append(f"data.max_items_per_class={args.cap}")

    plain = run_arm("plain", data, args.out, args.budget, args.iterations, args.seed, [])
    balanced = run_arm("balanced", data, args.out, args.budget, args.iterations, args.seed, balancing)

    labels = CocoInstanceDataset(data_dir / "train" / "image", train_json).image_labels()
    plan = balance_plan(labels, load_demo_config(balancing).data)
    items = {c: sum(cats.count(c) for cats in labels) for c in BY_ID}
    table = format_table(plain, balanced, items, plan.category_factors)
    spent = (f"{args.iterations} steps" if args.iterations else f"{args.budget:.0f} s") + " per run"
    header = (f"{args.train_images} long-tailed train images, {args.val_images} balanced val images, "
              f"{args.image_size} px; {spent} on {platform.processor() or platform.machine()} "
              f"({torch.get_num_threads()} threads; plain {plain['seconds']:.0f} s, balanced "
              f"{balanced['seconds']:.0f} s incl. evaluation); repeat threshold {plan.threshold:.3f} "
              f"(rank {args.repeat_rank}); * = rare (r(c) > 1); AP in percent")
    print(f"\n{header}\n\n{table}")
    atomic_write_text(args.out / "table.md", f"{header}\n\n{table}\n")
    atomic_write_json(args.out / "results.json", {"args": {k: str(v) for k, v in vars(args).items()},
                                                 "plain": plain, "balanced": balanced,
                                                 "repeat_threshold": plan.threshold,
                                                 "category_factors": plan.category_factors})


if __name__ == "__main__":
    main()
