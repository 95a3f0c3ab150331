"""Throughput of ``read_split`` (validate) and ``convert_split`` (validate + COCO JSON) on fake DF2 files.

Generates N fake DF2 image/annotation pairs (JPEGs of DF2-like size: shapes on a noisy gradient, 1-3
valid items each), then times both steps with 1 worker and with all CPUs, and extrapolates to the
191,961 files of the released train split. Files are freshly written, so they sit in the page cache:
the numbers are CPU-bound throughput, not cold-disk reads.

    .venv/bin/python benchmarks/bench_convert.py [--n 2000] [--size 640x480]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fashionparse.categories import CATEGORIES
from fashionparse.data.convert import convert_split
from fashionparse.data.df2 import read_split, resolve_workers

TRAIN_FILES = 191_961  # released train split (reference §5)


def _fake_item(rng: np.random.Generator, width: int, height: int) -> dict:
    """A valid item: random box, a closed 8-point polygon inside it, ~half of the landmarks visible."""
    cat = CATEGORIES[rng.integers(len(CATEGORIES))]
    w, h = rng.integers(width // 8, width // 2), rng.integers(height // 8, height // 2)
    x1, y1 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
    x2, y2 = x1 + int(w), y1 + int(h)
    angles = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    poly = np.round(np.stack([cx + 0.5 * w * np.cos(angles), cy + 0.5 * h * np.sin(angles)], 1)).ravel().tolist()
    landmarks = []
    for _ in range(cat.num_landmarks):
        v = int(rng.integers(0, 3))
        landmarks += [int(rng.integers(x1, x2)), int(rng.integers(y1, y2)), v] if v else [0, 0, 0]
    return {
        "category_id": cat.id, "category_name": cat.name, "style": int(rng.integers(0, 3)),
        "bounding_box": [x1, y1, x2, y2], "landmarks": landmarks, "segmentation": [poly + poly[:2]],
        "scale": int(rng.integers(1, 4)), "occlusion": int(rng.integers(1, 4)),
        "zoom_in": int(rng.integers(1, 4)), "viewpoint": int(rng.integers(1, 4)),
    }


def generate(root: Path, n: int, size: tuple[int, int], seed: int = 0) -> None:
    """Write ``image/NNNNNN.jpg`` + ``annos/NNNNNN.json`` for ids 1..n."""
    rng = np.random.default_rng(seed)
    (root / "image").mkdir(parents=True)
    (root / "annos").mkdir(parents=True)
    width, height = size
    gradient = np.linspace(0, 255, width, dtype=np.float32)[None, :, None] * np.ones((height, 1, 3), np.float32)
    for i in range(1, n + 1):
        items = [_fake_item(rng, width, height) for _ in range(int(rng.integers(1, 4)))]
        tint = rng.uniform(0.3, 1.0, size=3).astype(np.float32)
        noise = rng.normal(0, 12, size=(height, width, 1)).astype(np.float32)  # texture -> DF2-like JPEG size
        image = Image.fromarray(np.clip(gradient * tint + noise, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for item in items:
            draw.polygon(item["segmentation"][0], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        image.save(root / "image" / f"{i:06d}.jpg", quality=90)
        anno = {"source": "shop" if i % 3 else "user", "pair_id": i // 4,
                **{f"item{k}": item for k, item in enumerate(items, 1)}}
        (root / "annos" / f"{i:06d}.json").write_text(json.dumps(anno))


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="fake image/annotation pairs")
    parser.add_argument("--size", default="640x480", help="image WxH")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    all_cpus = resolve_workers(None)
    cpu_model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    print(f"machine: {cpu_model}, {all_cpus} usable CPUs ({os.cpu_count()} logical), "
          f"Python {platform.python_version()}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "split"
        gen_s = _timed(lambda: generate(root, args.n, size))
        jpg_kb = sum(p.stat().st_size for p in (root / "image").iterdir()) / args.n / 1024
        print(f"generated {args.n} pairs of {size[0]}x{size[1]} JPEG (~{jpg_kb:.0f} KB) in {gen_s:.1f} s")
        out = Path(tmp) / "coco.json"
        rows = []
        for workers in sorted({1, all_cpus}):
            secs = _timed(lambda w=workers: read_split(root, workers=w, progress=False))
            rows.append(("read_split (validate)", workers, secs))
            secs = _timed(lambda w=workers: convert_split(root, out, workers=w, progress=False))
            rows.append(("convert_split (+ COCO JSON)", workers, secs))
        json_mb = out.stat().st_size / 2**20

    print(f"\nCOCO JSON: {json_mb:.1f} MB for {args.n} images ({json_mb / args.n * 1024:.1f} KB/image)")
    print(f"\n{'step':<28} {'workers':>7} {'seconds':>8} {'files/s':>8} {'train 191,961 files':>20}")
    for step, workers, secs in rows:
        rate = args.n / secs
        print(f"{step:<28} {workers:>7} {secs:>8.2f} {rate:>8.0f} {TRAIN_FILES / rate / 60:>16.1f} min")


if __name__ == "__main__":
    main()
