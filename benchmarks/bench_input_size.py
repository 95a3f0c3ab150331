"""Training-step speed of the demo parser at several input sizes or mask RoI caps, side by side in one process.

The demo's synthetic images are 256 px; ``model.min_size`` / ``model.max_size`` set the side the model's
transform resizes them to (``--sizes``). ``--mask-rois`` instead varies ``model.mask_rois_per_image`` (how
many positive RoIs per image the mask branch trains on; ``all``: every one) at the config's size. For each
variant the demo config (``configs/demo_cpu.yaml``, its own settings: batch 8, bf16, in-process loading)
builds a model, optionally with trained weights (``--weights``, e.g. a demo run's ``model_final.pth``: the
number of proposals and mask RoIs of a trained model differs from a random one's), and times whole steps,
loading included, over the same batches. Variants are interleaved (one pass over the batches each,
repeated; medians reported), so that load changes on a shared machine hit all alike. One table per thread
count.

    .venv/bin/python benchmarks/bench_input_size.py [--weights runs/demo/model_final.pth]
        [--sizes 256 192 160 128 96 | --mask-rois all 16 8 4] [--threads 2 1] [--repeats 3]
        [--out runs/bench_input_size]
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
from fashionparse.engine.checkpoint import load_checkpoint
from fashionparse.engine.demo import default_config_path
from fashionparse.engine.precision import autocast, backward_and_step, grad_scaler
from fashionparse.model import build_model
from fashionparse.utils.io import atomic_write_json


def _setup(overrides: list[str], weights: dict | None):
    """Demo config with ``overrides``, model and optimizer; lr 0, so every pass sees the same weights."""
    cfg = load_config(default_config_path(), overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    if weights is not None:
        model.load_state_dict(weights)
    return cfg, model, torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)


def step_table(data: CocoInstanceDataset, variants: dict[str, list[str]], label: str, threads: int,
               repeats: int, weights: dict | None) -> tuple[str, list[dict]]:
    """Median seconds per step (load + forward + backward + clipping + update, as in training) of each
    variant (a name and its config overrides), interleaved; the first is the speed-up's base."""
    torch.set_num_threads(threads)
    setups = {name: _setup(overrides, weights) for name, overrides in variants.items()}
    batch = next(iter(setups.values()))[0].solver.batch_size
    starts = range(0, len(data) - batch + 1, batch)

    def one_pass(name: str) -> float:
        cfg, model, optimizer = setups[name]
        cpu = torch.device("cpu")
        scaler = grad_scaler(cpu, cfg.train.amp)
        started = time.perf_counter()
        for i in starts:
            images, targets = collate([data[j] for j in range(i, i + batch)])
            with autocast(cpu, cfg.train.amp):
                losses = model(list(images), list(targets))
            backward_and_step(sum(losses.values()), optimizer, scaler, cfg.solver.clip_grad_norm)
        return (time.perf_counter() - started) / len(starts)

    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in tqdm(range(repeats + 1), desc=f"{threads} thread(s)"):
        for name in variants:
            t = one_pass(name)
            if r > 0:  # the first round is warm-up
                times[name].append(t)
    rows = [{label: name, "threads": threads, "step_s": statistics.median(times[name])} for name in variants]
    base = rows[0]["step_s"]
    lines = [f"Demo train step, batch {batch}, {threads} thread(s), median of {repeats} passes over "
             f"{len(starts)} batches (interleaved)",
             f"{label:>9} {'ms/step':>8} {'steps/s':>8} {'speed-up':>9}"]
    lines += [f"{r[label]:>9} {1e3 * r['step_s']:>8.1f} {1 / r['step_s']:>8.2f} {base / r['step_s']:>8.2f}x"
              for r in rows]
    return "\n".join(lines), rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    vary = ap.add_mutually_exclusive_group()
    vary.add_argument("--sizes", type=int, nargs="+", default=[256, 192, 160, 128, 96])
    vary.add_argument("--mask-rois", nargs="+", help="model.mask_rois_per_image values ('all': no cap)")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--images", type=int, default=48, help="synthetic 256 px images timed per pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--weights", type=Path, help="a checkpoint of the demo model (default: random weights)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_input_size"))
    args = ap.parse_args()
    split = args.out / "split"
    if not (split / "train.json").is_file():
        generate_split(split, args.images, seed=0, balanced=True, image_size=256, progress=False, overwrite=True)
        convert_split(split, split / "train.json", progress=False)
    cfg = load_config(default_config_path(), [])
    data = CocoInstanceDataset(split / "image", split / "train.json", mask_format=cfg.model.mask_format)
    weights = load_checkpoint(args.weights)["model"] if args.weights else None
    if args.mask_rois:
        label = "mask RoIs"
        variants = {v: [f"model.mask_rois_per_image={'null' if v == 'all' else v}"] for v in args.mask_rois}
    else:
        label = "size px"
        variants = {str(s): [f"model.min_size=[{s}]", f"model.max_size={s}"] for s in args.sizes}
    results = []
    for threads in args.threads:
        text, rows = step_table(data, variants, label, threads, args.repeats, weights)
        print(text)
        results += rows
    atomic_write_json(args.out / "results.json", {"weights": str(args.weights), "rows": results})


if __name__ == "__main__":
    main()
