"""Training-step speed of the demo parser at several input sizes, side by side in one process.

The demo's synthetic images are 256 px; ``model.min_size`` / ``model.max_size`` set the side the model's
transform resizes them to. For each size the demo config (``configs/demo_cpu.yaml``, its own settings:
batch 8, bf16, in-process loading) builds a model, optionally with trained weights (``--weights``, e.g. a
demo run's ``model_final.pth``: the number of proposals and mask RoIs of a trained model differs from a
random one's), and times whole steps, loading included, over the same batches. Sizes are interleaved
(one pass over the batches per size, repeated; medians reported), so that load changes on a shared machine
hit all alike. One table per thread count.

    .venv/bin/python benchmarks/bench_input_size.py [--weights runs/demo/model_final.pth]
        [--sizes 256 192 160 128 96] [--threads 2 1] [--repeats 3] [--out runs/bench_input_size]
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


def _setup(size: int, weights: dict | None):
    """Demo config, model and optimizer at input side ``size``; lr 0, so every pass sees the same weights."""
    cfg = load_config(default_config_path(), [f"model.min_size=[{size}]", f"model.max_size={size}"])
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    if weights is not None:
        model.load_state_dict(weights)
    return cfg, model, torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)


def size_table(data: CocoInstanceDataset, sizes: list[int], threads: int, repeats: int,
               weights: dict | None) -> tuple[str, list[dict]]:
    """Median seconds per step (load + forward + backward + clipping + update, as in training) of each size,
    interleaved."""
    torch.set_num_threads(threads)
    setups = {s: _setup(s, weights) for s in sizes}
    batch = setups[sizes[0]][0].solver.batch_size
    starts = range(0, len(data) - batch + 1, batch)

    def one_pass(size: int) -> float:
        cfg, model, optimizer = setups[size]
        cpu = torch.device("cpu")
        scaler = grad_scaler(cpu, cfg.train.amp)
        started = time.perf_counter()
        for i in starts:
            images, targets = collate([data[j] for j in range(i, i + batch)])
            with autocast(cpu, cfg.train.amp):
                losses = model(list(images), list(targets))
            backward_and_step(sum(losses.values()), optimizer, scaler, cfg.solver.clip_grad_norm)
        return (time.perf_counter() - started) / len(starts)

    times: dict[int, list[float]] = {s: [] for s in sizes}
    for r in tqdm(range(repeats + 1), desc=f"{threads} thread(s)"):
        for s in sizes:
            t = one_pass(s)
            if r > 0:  # the first round is warm-up
                times[s].append(t)
    rows = [{"size": s, "threads": threads, "step_s": statistics.median(times[s])} for s in sizes]
    base = rows[0]["step_s"]
    lines = [f"Demo train step, batch {batch}, {threads} thread(s), median of {repeats} passes over "
             f"{len(starts)} batches (interleaved)",
             f"{'size px':>7} {'ms/step':>8} {'steps/s':>8} {'speed-up':>9}"]
    lines += [f"{r['size']:>7} {1e3 * r['step_s']:>8.1f} {1 / r['step_s']:>8.2f} {base / r['step_s']:>8.2f}x"
              for r in rows]
    return "\n".join(lines), rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 192, 160, 128, 96])
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--images", type=int, default=48, help="synthetic 256 px images timed per pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--weights", type=Path, help="a checkpoint of the demo model (default: random weights)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_input_size"))
    args = ap.parse_args()
    split = args.out / "split"
    if not (split / "train.json").is_file():
        generate_split(split, args.images, seed=0, balanced=True, image_size=256, progress=False)
        convert_split(split, split / "train.json", progress=False)
    cfg = load_config(default_config_path(), [])
    data = CocoInstanceDataset(split / "image", split / "train.json", mask_format=cfg.model.mask_format)
    weights = load_checkpoint(args.weights)["model"] if args.weights else None
    results = []
    for threads in args.threads:
        text, rows = size_table(data, args.sizes, threads, args.repeats, weights)
        print(text)
        results += rows
    atomic_write_json(args.out / "results.json", {"weights": str(args.weights), "rows": results})


if __name__ == "__main__":
    main()
