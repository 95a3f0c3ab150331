"""Serving speed on the CPU: per-image latency of onnxruntime against eager PyTorch, and the HTTP service
under a bounded local load test.

1. Latency: for each model (the demo SE-ResNet-18 parser, and the DF2 recipe's SE-ResNet-50/101-FPN), random
   weights (tamed to a trained network's activation ranges on one photo) are saved as a checkpoint and
   exported to ONNX at 800 x 800, the export checking onnxruntime against PyTorch on an 800 x 800 photo (its
   report is the last column); both backends then ``predict`` that photo (end to end: preprocessing,
   network, mask pasting, polygons) with the same thread count, alternating. Detections are capped at
   ``--detections`` per image so that both do the same mask work.
2. Load test: ``fashionparse serve``'s app runs under uvicorn in a child process on 127.0.0.1 (demo model at
   256 px input with ``RECORDED_DEMO``, as the demo was when the README's numbers were recorded);
   ``--concurrency`` client threads send ``--requests`` uploads of an 800 x 600 JPEG.
   Requests/s, latency percentiles, status codes, and the server's resident memory (VmRSS) after a warm-up
   and after all requests.

    .venv/bin/python benchmarks/bench_serving.py [--models demo,r50] [--requests 1000] [--concurrency 4]

About 5 minutes on 2 CPU cores with the defaults; add ``r101`` to ``--models`` for SE-ResNet-101 (~3 more).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# the demo's inference settings when the README's serving numbers were recorded (commit ffa7967)
RECORDED_DEMO = ["model.roi_sampling_ratio=2", "model.roi_canonical_scale=224", "model.box_refine_passes=0"]
MODELS = {  # name -> (config file, overrides)
    "demo": ("configs/demo_cpu.yaml", [*RECORDED_DEMO, "model.min_size=[800]", "model.max_size=1333"]),
    "r50": ("configs/se_resnet101_fpn_deepfashion2.yaml", ["model.depth=50", "model.weights=null"]),
    "r101": ("configs/se_resnet101_fpn_deepfashion2.yaml", ["model.weights=null"]),
}
LABELS = {"demo": "demo SE-ResNet-18 (w32, GN)", "r50": "SE-ResNet-50-FPN", "r101": "SE-ResNet-101-FPN"}


def photo(height: int, width: int, seed: int = 0) -> Image.Image:
    """A smooth random RGB picture (low-frequency noise upsampled bilinearly)."""
    coarse = np.random.default_rng(seed).random((height // 16, width // 16, 3)) * 255
    return Image.fromarray(coarse.astype(np.uint8)).resize((width, height), Image.BILINEAR)


def tame_random_weights(model: torch.nn.Module, image: torch.Tensor) -> None:
    """Give random weights a trained network's activation ranges, from one forward pass on ``image`` [3, H, W]:
    every frozen BatchNorm gets the per-channel mean/variance of its input (set layer by layer as the pass
    reaches it), and the class, box and mask predictors are scaled to unit-variance outputs. Untouched, the
    un-normalised layers make logits of +-200: scores tie at 1.0 and ~0, and float rounding then decides
    which detections survive, in either backend."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    def set_statistics(module: FrozenBatchNorm2d, inputs: tuple[torch.Tensor]) -> None:
        x = inputs[0].transpose(0, 1).flatten(1)
        module.running_mean.copy_(x.mean(1))
        module.running_var.copy_(x.var(1))

    heads = model.roi_heads
    predictors = [heads.box_predictor.cls_score, heads.box_predictor.bbox_pred, heads.mask_predictor.mask_fcn_logits]
    spread: dict[torch.nn.Module, float] = {}
    hooks = [m.register_forward_pre_hook(set_statistics) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    def record_spread(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        spread[module] = float(output.std())

    hooks += [m.register_forward_hook(record_spread) for m in predictors]
    model.eval()
    with torch.inference_mode():
        model([image])
    for hook in hooks:
        hook.remove()
    with torch.no_grad():
        for layer, std in spread.items():
            layer.weight /= std
            layer.bias /= std


def make_checkpoint(name: str, path: Path, detections: int, image: Image.Image) -> None:
    from fashionparse.config import load_config
    from fashionparse.engine.checkpoint import save_checkpoint
    from fashionparse.model import build_model

    config, overrides = MODELS[name]
    cfg = load_config(ROOT / config, overrides + ["model.box_score_thresh=0.0",
                                                  f"model.box_detections_per_img={detections}"])
    torch.manual_seed(0)
    model = build_model(cfg.model)
    tame_random_weights(model, torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255)
    save_checkpoint(path, {"model": model.state_dict(), "config": cfg.to_dict()})


def time_both(eager, runtime, image: Image.Image, reps: int) -> tuple[float, float, int, int]:
    """Median seconds per ``predict`` of each backend after one warm-up call each; the two alternate, so that
    a change in background load hits both alike. Also returns their instance counts."""
    counts = len(eager.predict(image)), len(runtime.predict(image))
    times: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(reps):
        for key, predictor in enumerate((eager, runtime)):
            start = time.perf_counter()
            predictor.predict(image)
            times[key].append(time.perf_counter() - start)
    return float(np.median(times[0])), float(np.median(times[1])), *counts


def _parity(parity) -> str:
    return (f"{parity.matched}/{parity.detections} matched, box <= {parity.max_box_diff:.2g} px, "
            f"mask IoU >= {parity.min_mask_iou:.3f}")


def latency_table(names: list[str], reps: int, detections: int, threads: int, workdir: Path) -> str:
    from fashionparse.serving.onnx_export import export_onnx
    from fashionparse.serving.onnx_predictor import OnnxParser
    from fashionparse.serving.predictor import load_predictor

    image = photo(800, 800)
    photo_path = workdir / "photo.png"
    image.save(photo_path)
    rows = ["| model | PyTorch eager (ms) | onnxruntime (ms) | speed-up | instances | export (s) | export check |",
            "|---|---:|---:|---:|---:|---:|---|"]
    for name in names:
        checkpoint, exported = workdir / f"{name}.pth", workdir / f"{name}.onnx"
        make_checkpoint(name, checkpoint, detections, photo(800, 800, seed=9))
        report = export_onnx(checkpoint, exported, size=800, check_image=photo_path)
        eager = load_predictor(checkpoint, device="cpu", score_threshold=0.0)
        runtime = OnnxParser.from_file(exported, device="cpu", score_threshold=0.0, threads=threads)
        t_eager, t_ort, n_eager, n_ort = time_both(eager, runtime, image, reps)
        rows.append(f"| {LABELS[name]} | {t_eager * 1000:.0f} | {t_ort * 1000:.0f} | {t_eager / t_ort:.2f}x | "
                    f"{n_eager} / {n_ort} | {report.seconds:.0f} | {_parity(report.parity)} |")
        print(rows[-1], flush=True)
        del eager, runtime
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------------------
# load test

SERVER = """
import sys, socket, uvicorn, torch
from fashionparse.serving.app import ServiceLimits, create_app
checkpoint, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
app = create_app(checkpoint, device="cpu", score_threshold=0.05, limits=ServiceLimits(workers=1, max_waiting=8))
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
"""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_test(requests: int, concurrency: int, threads: int, workdir: Path) -> str:
    import httpx

    checkpoint = workdir / "serve_demo.pth"
    from fashionparse.config import load_config
    from fashionparse.engine.checkpoint import save_checkpoint
    from fashionparse.model import build_model

    cfg = load_config(ROOT / "configs/demo_cpu.yaml", [*RECORDED_DEMO, "model.min_size=[256]", "model.max_size=256",
                                                       "model.box_detections_per_img=10"])
    torch.manual_seed(0)
    save_checkpoint(checkpoint, {"model": build_model(cfg.model).state_dict(), "config": cfg.to_dict()})
    buffer = io.BytesIO()
    photo(600, 800, seed=1).save(buffer, "JPEG", quality=90)
    upload = buffer.getvalue()

    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(checkpoint), str(port), str(threads)])
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=60) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the service did not start")
                time.sleep(0.2)
            for _ in range(20):  # warm-up
                client.post(f"{base}/v1/parse", files={"file": ("p.jpg", upload, "image/jpeg")})
        rss_before = rss_mib(server.pid)

        latencies: list[float] = []
        codes: Counter = Counter()
        instances: list[int] = []
        counter = iter(range(requests))
        lock = threading.Lock()

        def worker() -> None:
            with httpx.Client(timeout=120) as client:
                while True:
                    with lock:
                        if next(counter, None) is None:
                            return
                    start = time.perf_counter()
                    r = client.post(f"{base}/v1/parse", files={"file": ("p.jpg", upload, "image/jpeg")})
                    elapsed = time.perf_counter() - start
                    with lock:
                        latencies.append(elapsed)
                        codes[r.status_code] += 1
                        if r.status_code == 200:
                            instances.append(len(r.json()["instances"]))

        start = time.perf_counter()
        pool = [threading.Thread(target=worker) for _ in range(concurrency)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        wall = time.perf_counter() - start
        rss_after = rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    p50, p95, p99 = np.percentile(np.array(latencies) * 1000, [50, 95, 99])
    status = ", ".join(f"{code}: {n}" for code, n in sorted(codes.items()))
    return "\n".join([
        "| requests | concurrency | req/s | p50 (ms) | p95 (ms) | p99 (ms) | status codes | instances/resp | "
        "RSS after warm-up (MiB) | RSS after all (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
        f"| {requests} | {concurrency} | {requests / wall:.2f} | {p50:.0f} | {p95:.0f} | {p99:.0f} | {status} | "
        f"{np.mean(instances):.1f} | {rss_before:.0f} | {rss_after:.0f} |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="demo,r50", help=f"comma-separated: {', '.join(MODELS)}")
    parser.add_argument("--reps", type=int, default=3, help="timed predictions per backend and model")
    parser.add_argument("--detections", type=int, default=20, help="detection cap per image (latency part)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and onnxruntime intra-op threads (1: stable timings on a shared machine, where "
                             "oversubscribed OpenMP threads slow eager PyTorch down several-fold)")
    parser.add_argument("--requests", type=int, default=1000, help="load test requests (0 skips it)")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    import onnxruntime

    print(f"# bench_serving: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.threads} threads, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    with tempfile.TemporaryDirectory() as tmp:
        names = [n for n in args.models.split(",") if n]
        if names:
            print(f"## CPU latency per 800 x 800 image (median of {args.reps}, <= {args.detections} instances)\n",
                  flush=True)
            table = latency_table(names, args.reps, args.detections, args.threads, Path(tmp))
            print("\n" + table + "\n", flush=True)
        if args.requests:
            print("## Service load test (demo model, 800 x 600 JPEG uploads, 127.0.0.1)\n", flush=True)
            print(load_test(args.requests, args.concurrency, args.threads, Path(tmp)))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
