"""Training mask formats side by side (``model.mask_format`` full | minimask | polygon): memory, speed, mask AP.

Three measurements, each printed as a table (and written to ``--out``/results.json):

1. **Memory**, at 1024 x 1024 with 1, 5 and 20 garments per image (synthetic DF2 polygons): mask bytes per
   image as the dataset yields it, and the peak resident-memory growth of producing one augmented batch
   (2 images, flip + rotation, collated) measured in a fresh process per cell (``VmHWM`` after resetting it
   through ``/proc/self/clear_refs``). Target: minimask and polygon hold >= 100x fewer mask bytes than full.
2. **Train-step time** per format at equal settings, run interleaved (format after format, repeated; median
   reported): the CPU demo parser (``configs/demo_cpu.yaml``) on a demo batch (4 images at 256 px) and on a
   1024 px batch (2 images x 20 items, min_size = max_size = 1024). Same weights, same batch, same RNG.
3. **Mask AP** after identical training on the synthetic demo data (same seed, the demo's schedule scaled to
   ``--iterations`` steps, no time budget), with per-category mask AP deltas against full: what minimask
   loses, and on which garment shapes; plus the mean mask IoU of matched detections, which isolates the
   mask head's quality from the classifier's mistakes. A finished run with the same config is reused.

    .venv/bin/python benchmarks/bench_mask_formats.py [--iterations 1800] [--repeats 5] [--tables memory step ap]
        [--formats full minimask polygon] [--set KEY=VALUE ...]

The CPU may be shared: speed is measured interleaved so that load changes hit every format alike.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from tqdm import tqdm

from fashionparse.categories import BY_ID
from fashionparse.config import MASK_FORMATS, DataConfig, dump_config
from fashionparse.data.augment import build_train_transforms
from fashionparse.data.convert import convert_split
from fashionparse.data.dataset import CocoInstanceDataset, collate
from fashionparse.data.synth import generate_split
from fashionparse.engine.demo import load_demo_config, prepare_demo_data
from fashionparse.engine.evaluate import evaluate_results
from fashionparse.engine.train import train
from fashionparse.model import build_model
from fashionparse.model.compact_heads import mask_targets
from fashionparse.utils.io import atomic_write_json, atomic_write_text

ITEM_COUNTS = (1, 5, 20)
BIG = 1024
PROBE_BATCH = 2


# ----------------------------------------------------------------------------------------------------------
# data


def item_images(root: Path, seed: int) -> Path:
    """A COCO file of one 1024 x 1024 synthetic image per count in ITEM_COUNTS (index i holds ITEM_COUNTS[i]
    garments, drawn in turn from a pool of synthetic DF2 polygons; the pixels are those of one picture)."""
    path = root / "items.json"
    if path.is_file():
        return path
    generate_split(root / "split", 8, seed, balanced=True, image_size=BIG, progress=False, overwrite=True)
    convert_split(root / "split", root / "pool.json", strict=True, workers=1, progress=False)
    pool = json.loads((root / "pool.json").read_text())
    anns, images = pool["annotations"], []
    picture = pool["images"][0]
    annotations = []
    for image_id, count in enumerate(ITEM_COUNTS, start=1):
        images.append({**picture, "id": image_id})
        for k in range(count):
            ann = anns[(len(annotations) + k) % len(anns)]
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": image_id})
    atomic_write_json(path, {**pool, "images": images, "annotations": annotations})
    return path


def augment(rotation: bool) -> object:
    return build_train_transforms(DataConfig(hflip_prob=0.5, rotation_deg=25.0 if rotation else 0.0,
                                             rotation_prob=1.0, landmark_order="synthetic"))


def mask_bytes(masks: object) -> int:
    return masks.numel() * masks.element_size() if torch.is_tensor(masks) else masks.nbytes


# ----------------------------------------------------------------------------------------------------------
# 1. memory (one fresh process per cell)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def probe(fmt: str, annotations: Path, images: Path, index: int) -> dict:
    """In this (fresh) process: peak RSS growth of one augmented, collated batch of image ``index``, then the
    mask bytes of its plain sample."""
    torch.set_num_threads(1)
    ds = CocoInstanceDataset(images, annotations, transforms=augment(rotation=True), mask_format=fmt)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    batch = collate([ds[(index, seed)] for seed in range(PROBE_BATCH)])
    peak = _status_kib("VmHWM")
    del batch
    ds.transforms = None
    return {"peak_kib": peak - before, "mask_bytes": mask_bytes(ds[index][1]["masks"])}


def memory_table(annotations: Path, images: Path) -> tuple[str, list[dict]]:
    rows = []
    cells = [(fmt, i) for i in range(len(ITEM_COUNTS)) for fmt in MASK_FORMATS]
    for fmt, i in tqdm(cells, desc="memory probes"):
        out = subprocess.run([sys.executable, __file__, "--probe", fmt, str(annotations), str(images), str(i)],
                             check=True, capture_output=True, text=True).stdout
        rows.append({"format": fmt, "items": ITEM_COUNTS[i], **json.loads(out.strip().splitlines()[-1])})
    full = {r["items"]: r["mask_bytes"] for r in rows if r["format"] == "full"}
    lines = [f"Memory at {BIG}x{BIG} (mask bytes: the dataset's sample; peak: RSS growth for one augmented "
             f"batch of {PROBE_BATCH}, flip + rotation, fresh process)",
             f"{'items':>5} {'format':<9} {'mask bytes':>12} {'vs full':>9} {'peak MiB':>9}"]
    for r in rows:
        ratio = full[r["items"]] / max(r["mask_bytes"], 1)
        lines.append(f"{r['items']:>5} {r['format']:<9} {r['mask_bytes']:>12,} {ratio:>8.0f}x "
                     f"{r['peak_kib'] / 1024:>9.1f}")
    return "\n".join(lines), rows


# ----------------------------------------------------------------------------------------------------------
# 2. train-step time (interleaved)


def mask_target_seconds(model: torch.nn.Module, images: list[torch.Tensor], targets: list[dict], seed: int) -> float:
    """Time of the only code the formats do not share: the model transform (resizing the masks) and the mask
    targets of as many positive proposals per image as the RoI sampler can draw (jittered GT boxes)."""
    sampler = model.roi_heads.fg_bg_sampler
    positives = int(sampler.batch_size_per_image * sampler.positive_fraction)
    g = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    _, resized = model.transform(images, [dict(t) for t in targets])
    for t in resized:
        if len(t["boxes"]) == 0:
            continue
        idx = torch.randint(len(t["boxes"]), (positives,), generator=g)
        boxes = t["boxes"][idx]
        size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
        mask_targets(t["masks"], boxes + (torch.rand(positives, 4, generator=g) - 0.5) * 0.3 * size, idx, 28)
    return time.perf_counter() - started


def step_table(scenarios: dict[str, tuple[Path, Path, list[int], list[str]]], repeats: int) -> tuple[str, list]:
    """Median data and step time per scenario and format; every format trains the same batch from the same
    weights, one format after the other, ``repeats`` rounds (the first round is warm-up and not counted)."""
    rows = []
    for name, (ann_file, images, indices, overrides) in scenarios.items():
        setups = {}
        for fmt in MASK_FORMATS:
            cfg = load_demo_config([*overrides, f"model.mask_format={fmt}"])
            ds = CocoInstanceDataset(images, ann_file, transforms=augment(rotation=False), mask_format=fmt)
            torch.manual_seed(0)
            model = build_model(cfg.model).train()
            setups[fmt] = (ds, model, torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9))
        times: dict[str, dict[str, list[float]]] = {fmt: {"data": [], "targets": [], "step": []}
                                                    for fmt in MASK_FORMATS}
        for r in tqdm(range(repeats + 1), desc=f"step time, {name}"):
            for fmt, (ds, model, optimizer) in setups.items():
                t0 = time.perf_counter()
                images_, targets = collate([ds[(i, r * len(indices) + j)] for j, i in enumerate(indices)])
                t1 = time.perf_counter()
                torch.manual_seed(r)
                losses = model(list(images_), list(targets))
                optimizer.zero_grad()
                sum(losses.values()).backward()
                optimizer.step()
                t2 = time.perf_counter()
                targets_s = mask_target_seconds(model, list(images_), list(targets), seed=r)
                if r > 0:
                    times[fmt]["data"].append(t1 - t0)
                    times[fmt]["step"].append(t2 - t1)
                    times[fmt]["targets"].append(targets_s)
        for fmt in MASK_FORMATS:
            rows.append({"scenario": name, "format": fmt,
                         **{f"{k}_ms": 1e3 * statistics.median(v) for k, v in times[fmt].items()}})
    full = {r["scenario"]: r["step_ms"] for r in rows if r["format"] == "full"}
    lines = [f"Train-step time (median of {repeats}, interleaved; data = load + augment + collate; step = "
             "forward + backward + SGD; targets = model transform + mask targets of the positive proposals, the "
             "part of the step that differs)",
             f"{'scenario':<22} {'format':<9} {'data ms':>9} {'targets ms':>11} {'step ms':>9} {'step / full':>12}"]
    for r in rows:
        lines.append(f"{r['scenario']:<22} {r['format']:<9} {r['data_ms']:>9.1f} {r['targets_ms']:>11.1f} "
                     f"{r['step_ms']:>9.1f} {r['step_ms'] / full[r['scenario']]:>12.3f}")
    return "\n".join(lines), rows


# ----------------------------------------------------------------------------------------------------------
# 3. mask AP after identical training


def ap_table(data: list[str], out: Path, iterations: int, seed: int, extra: list[str],
             formats: tuple[str, ...] = MASK_FORMATS) -> tuple[str, dict]:
    """Train (or reuse) one run per format in ``formats`` with the ``extra`` overrides and tabulate them."""
    results = {}
    for fmt in formats:
        cfg = load_demo_config([*data, f"train.output_dir={out / fmt}", f"train.seed={seed}", *extra,
                                f"model.mask_format={fmt}", "train.checkpoint_period=100000"], iterations)
        run = out / fmt
        if (run / "config.yaml").is_file() and (run / "config.yaml").read_text() == dump_config(cfg) \
                and (run / "eval" / "segm_results.json").is_file():
            tqdm.write(f"reusing the finished {fmt} run in {run}")  # same config: same training
        else:
            train(cfg)
        bbox = json.loads((run / "eval" / "bbox_results.json").read_text())
        segm = json.loads((run / "eval" / "segm_results.json").read_text())
        m = evaluate_results(cfg.data.val_annotations, bbox, segm)
        results[fmt] = {"box_AP": m.box.AP, **m.mask.metrics(),
                        **matched_mask_iou(Path(cfg.data.val_annotations), bbox, segm),
                        "per_category": {c.category_id: c.AP for c in m.mask.per_category}}
    setting = f"; {' '.join(extra)}" if extra else ""
    lines = [f"Mask AP after {iterations} iterations (synthetic demo data, seed {seed}{setting}; percent)",
             f"{'format':<9} {'box AP':>7} {'mask AP':>8} {'AP50':>6} {'AP75':>6} {'APs':>6} {'APm':>6} "
             f"{'APl':>6} {'mask IoU':>9} {'matched':>8}"]
    for fmt, r in results.items():
        values = [r["box_AP"], r["AP"], r["AP50"], r["AP75"], r["APs"], r["APm"], r["APl"], r["mask_iou"],
                  r["matched"]]
        widths = (7, 8, 6, 6, 6, 6, 6, 9, 8)
        lines.append(f"{fmt:<9} " + " ".join(f"{_pct(v):>{w}}" for v, w in zip(values, widths)))
    lines.append("mask IoU: mean mask IoU of each garment's highest-scoring same-category detection with box "
                 "IoU >= 0.5 (the mask head's quality, apart from the classifier's and the scores' mistakes); "
                 "matched: share of garments that have one")
    if set(results) != set(MASK_FORMATS):  # the per-category comparison needs all three
        return "\n".join(lines), results
    lines += ["", "Mask AP per category (percent) and difference to full",
              f"{'category':<24} {'full':>6} {'minimask':>9} {'diff':>6} {'polygon':>8} {'diff':>6}"]
    for cid in results["full"]["per_category"]:
        full = results["full"]["per_category"][cid]
        mini, poly = results["minimask"]["per_category"][cid], results["polygon"]["per_category"][cid]
        lines.append(f"{BY_ID[cid].name:<24} {_pct(full):>6} {_pct(mini):>9} {_diff(mini, full):>6} "
                     f"{_pct(poly):>8} {_diff(poly, full):>6}")
    return "\n".join(lines), results


def matched_mask_iou(gt_json: Path, bbox: list[dict], segm: list[dict]) -> dict[str, float | None]:
    """Mean mask IoU of each garment's highest-scoring same-category detection with box IoU >= 0.5, and
    the share of garments that have such a detection. ``bbox[i]`` and ``segm[i]`` are the same detection
    (``to_coco_results`` writes them in step)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_json))
    by_image: dict[int, list[int]] = {}
    for i, record in enumerate(bbox):
        by_image.setdefault(record["image_id"], []).append(i)
    annotations = gt.loadAnns(gt.getAnnIds())
    ious = []
    for ann in annotations:
        same = [i for i in by_image.get(ann["image_id"], []) if bbox[i]["category_id"] == ann["category_id"]]
        if not same:
            continue
        box_iou = mask_utils.iou([bbox[i]["bbox"] for i in same], [ann["bbox"]], [0])[:, 0]
        overlapping = [i for i, v in zip(same, box_iou) if v >= 0.5]
        if overlapping:
            best = max(overlapping, key=lambda i: bbox[i]["score"])
            ious.append(float(mask_utils.iou([segm[best]["segmentation"]], [gt.annToRLE(ann)], [0])[0, 0]))
    return {"mask_iou": sum(ious) / len(ious) if ious else None, "matched": len(ious) / len(annotations)}


def _override(overrides: list[str], key: str) -> str:
    return next(o.split("=", 1)[1] for o in overrides if o.startswith(key + "="))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _diff(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{100 * (a - b):+.1f}"


# ----------------------------------------------------------------------------------------------------------

TABLES = ("memory", "step", "ap")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench_mask_formats"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iterations", type=int, default=1800, help="training steps per format for the AP table")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds per format for the step table")
    ap.add_argument("--train-images", type=int, default=600, help="synthetic training images for the AP table")
    ap.add_argument("--tables", nargs="+", choices=TABLES, default=list(TABLES), help="which tables to measure")
    ap.add_argument("--formats", nargs="+", choices=MASK_FORMATS, default=list(MASK_FORMATS),
                    help="formats to train for the AP table (split them over processes; finished runs are reused)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for the AP runs, repeatable (e.g. model.backbone_weights=BODY, "
                         "train.amp=bf16)")
    ap.add_argument("--probe", nargs=4, metavar=("FORMAT", "ANNOTATIONS", "IMAGES", "INDEX"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        fmt, annotations, images, index = args.probe
        print(json.dumps(probe(fmt, Path(annotations), Path(images), int(index))))
        return
    torch.set_num_threads(1)
    data = prepare_demo_data(args.out / "data", args.seed, args.train_images)
    tables, results = [], {"torch_threads": torch.get_num_threads()}
    if "memory" in args.tables or "step" in args.tables:
        big = item_images(args.out / "items", args.seed)
        big_images = args.out / "items" / "split" / "image"
    if "memory" in args.tables:
        text, results["memory"] = memory_table(big, big_images)
        tables.append(text)
        tqdm.write(text)
    if "step" in args.tables:
        demo_files = (Path(_override(data, "data.train_annotations")), Path(_override(data, "data.train_images")))
        scenarios = {
            "demo 256 px, batch 4": (*demo_files, [0, 1, 2, 3], []),
            f"{BIG} px, 2 x 20 items": (big, big_images, [2, 2],
                                        [f"model.min_size=[{BIG}]", f"model.max_size={BIG}"]),
        }
        text, results["step"] = step_table(scenarios, args.repeats)
        tables.append(text)
        tqdm.write(text)
    if "ap" in args.tables:
        text, results["ap"] = ap_table(data, args.out / "runs", args.iterations, args.seed, args.overrides,
                                       tuple(args.formats))
        tables.append(text)
        tqdm.write(text)
    atomic_write_json(args.out / "results.json", results)
    atomic_write_text(args.out / "tables.txt", "\n\n".join(tables) + "\n")
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
