"""Training RoIAlign on the CPU: torchvision's op against the gathered one (``model.roi_align``), side by side.

Two tables, both measured interleaved (one implementation after the other, repeated; medians reported), so
that load changes on a shared machine hit both alike:

1. **Pooler** forward + backward of the box (7x7) and mask (14x14) poolers, ``MultiScaleRoIAlign`` against
   ``GatherMultiScaleRoIAlign``, at 1 and 2 threads, for the demo's shapes (4 images at 256 px, 64 FPN
   channels, 256 box RoIs and 64 mask RoIs) and the DF2 recipe's (2 images at 800 x 1088, 256 channels,
   1,024 box RoIs, 256 mask RoIs), each with its config's sampling ratio (1 and 2); RoI sizes drawn
   log-uniformly over the FPN levels.
2. **Train step** of the demo config (``configs/demo_cpu.yaml`` with its own settings: bf16 autocast, one
   sample per bin and input size) on a batch of 4 synthetic 256 px images, same weights and batch for both,
   2 threads.

    .venv/bin/python benchmarks/bench_roi_align.py [--repeats 5] [--out runs/bench_roi_align]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from tqdm import tqdm

from fashionparse.config import load_config
from fashionparse.data.convert import convert_split
from fashionparse.data.dataset import CocoInstanceDataset, collate
from fashionparse.data.synth import generate_split
from fashionparse.engine.demo import default_config_path
from fashionparse.engine.precision import autocast
from fashionparse.model import build_model
from fashionparse.model.roi_align import GatherMultiScaleRoIAlign
from fashionparse.utils.io import atomic_write_json
from torchvision.ops import MultiScaleRoIAlign

NAMES = ["0", "1", "2", "3"]
# name: (images, (height, width), FPN channels, box RoIs, mask RoIs, sampling ratio) of the two configs
SCENARIOS = {
    "demo 4 x 256 px, C 64": (4, (256, 256), 64, 256, 64, 1),
    "DF2 2 x 800x1088, C 256": (2, (800, 1088), 256, 1024, 256, 2),
}


def _boxes(n: int, hw: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    """[n, 4] boxes inside an image of ``hw``, sides log-uniform in 8..min(hw) px (all FPN levels)."""
    side = torch.exp(torch.rand(n, 2, generator=g) * torch.log(torch.tensor(min(hw) / 8.0))) * 8
    xy = torch.rand(n, 2, generator=g) * (torch.tensor([hw[1], hw[0]]) - side)
    return torch.cat([xy, xy + side], 1)


def _once(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def pooler_table(repeats: int) -> tuple[str, list[dict]]:
    rows = []
    for name, (images, hw, channels, box_rois, mask_rois, ratio) in SCENARIOS.items():
        g = torch.Generator().manual_seed(0)
        features = {n: torch.randn(images, channels, hw[0] // 2 ** (2 + i), hw[1] // 2 ** (2 + i), generator=g,
                                   requires_grad=True) for i, n in enumerate(NAMES)}
        for pool_name, size, rois in (("box 7x7", 7, box_rois), ("mask 14x14", 14, mask_rois)):
            boxes = [_boxes(rois // images, hw, g) for _ in range(images)]
            pools = {"torchvision": MultiScaleRoIAlign(NAMES, size, ratio),
                     "gather": GatherMultiScaleRoIAlign(NAMES, size, ratio)}
            for threads in (1, 2):
                torch.set_num_threads(threads)
                times = {k: [] for k in pools}
                for r in range(repeats + 1):
                    for impl, pool in pools.items():
                        t = _once(lambda: pool(features, boxes, [hw] * images).sum().backward())
                        if r > 0:  # the first round is warm-up
                            times[impl].append(t)
                med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
                rows.append({"scenario": name, "pooler": pool_name, "sampling_ratio": ratio,
                             "threads": threads, **{f"{k}_ms": v for k, v in med.items()}})
                tqdm.write(f"{name:<24} {pool_name:<10} {threads} thr: "
                           f"{med['torchvision']:8.1f} ms vs {med['gather']:7.1f} ms")
    lines = [f"RoIAlign forward + backward (median of {repeats}, interleaved)",
             f"{'scenario':<24} {'pooler':<10} {'ratio':>5} {'threads':>7} {'torchvision ms':>15} "
             f"{'gather ms':>10} {'speed-up':>9}"]
    for r in rows:
        lines.append(f"{r['scenario']:<24} {r['pooler']:<10} {r['sampling_ratio']:>5} {r['threads']:>7} "
                     f"{r['torchvision_ms']:>15.1f} {r['gather_ms']:>10.1f} "
                     f"{r['torchvision_ms'] / r['gather_ms']:>8.2f}x")
    return "\n".join(lines), rows


# The demo's settings when the README's step times were recorded (commit e98212f); the demo has moved on.
RECORDED_STEP = ["model.min_size=[256]", "model.max_size=256", "model.box_batch_size_per_image=64",
                 "model.rpn_pre_nms_top_n_train=600", "model.mask_rois_per_image=null",
                 "model.box_positive_fraction=0.25", "model.roi_canonical_scale=224", "model.roi_sampling_ratio=1"]


def step_table(out: Path, repeats: int) -> tuple[str, dict]:
    """Median train-step time of the demo config (under :data:`RECORDED_STEP`) with each ``model.roi_align``,
    interleaved, 2 threads."""
    split = out / "split"
    if not (split / "train.json").is_file():
        generate_split(split, 8, seed=0, balanced=True, image_size=256, progress=False, overwrite=True)
        convert_split(split, split / "train.json", progress=False)
    torch.set_num_threads(2)
    setups = {}
    for impl in ("torchvision", "gather"):
        cfg = load_config(default_config_path(), [*RECORDED_STEP, f"model.roi_align={impl}"])
        ds = CocoInstanceDataset(split / "image", split / "train.json", mask_format=cfg.model.mask_format)
        torch.manual_seed(0)
        model = build_model(cfg.model).train()
        setups[impl] = (cfg, ds, model, torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9))
    times: dict[str, list[float]] = {k: [] for k in setups}
    for r in tqdm(range(repeats + 1), desc="train step"):
        for impl, (cfg, ds, model, optimizer) in setups.items():
            images, targets = collate([ds[i] for i in range(4 * (r % 2), 4 * (r % 2) + 4)])

            def step() -> None:
                torch.manual_seed(r)
                with autocast(torch.device("cpu"), cfg.train.amp):
                    losses = model(list(images), list(targets))
                optimizer.zero_grad()
                sum(losses.values()).backward()
                optimizer.step()

            t = _once(step)
            if r > 0:
                times[impl].append(t)
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    text = (f"Demo train step (configs/demo_cpu.yaml, batch 4 at {cfg.model.min_size[-1]} px, bf16, 2 threads, "
            f"median of {repeats}, interleaved)\n{'roi_align':<12} {'step ms':>8}\n"
            + "\n".join(f"{k:<12} {v:>8.1f}" for k, v in med.items())
            + f"\nspeed-up {med['torchvision'] / med['gather']:.2f}x")
    return text, med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench_roi_align"))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pooled, rows = pooler_table(args.repeats)
    print(pooled)
    step, med = step_table(args.out, args.repeats)
    print(step)
    atomic_write_json(args.out / "results.json", {"pooler": rows, "step_ms": med})


if __name__ == "__main__":
    main()
