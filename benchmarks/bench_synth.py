"""Throughput of the synthetic DF2 generator (images written per second, JPEG + JSON on disk).

Usage: ``python benchmarks/bench_synth.py [--images N] [--sizes 256 512] [--workers 1 2]``. Prints a table
per image size and worker count: wall-clock images/s (planning, rendering, encoding, atomic writes with
fsync and, for several workers, starting the process pool) and images per CPU-second summed over all
processes, which is what one uncontended core achieves (it leaves out waiting for the disk and for
other programs sharing the CPUs).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from fashionparse.data.synth import generate_split


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bench(images: int, size: int, workers: int, seed: int = 0) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its workers) to write ``images`` images."""
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        generate_split(tmp, images, seed=seed, image_size=size, workers=workers, progress=False)
        return time.perf_counter() - wall, _cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    bench(4, 128, 1)  # warm imports and caches
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'size':>6} {'workers':>8} {'images':>7} {'wall s':>8} {'images/s':>9} {'images/CPU-s':>13}")
    for size in args.sizes:
        for workers in args.workers:
            wall, cpu = bench(args.images, size, workers)
            print(f"{size:>6} {workers:>8} {args.images:>7} {wall:>8.2f} {args.images / wall:>9.1f} "
                  f"{args.images / cpu:>13.1f}")


if __name__ == "__main__":
    main()
