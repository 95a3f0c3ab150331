"""Write a synthetic DF2 split: ``image/NNNNNN.jpg`` and ``annos/NNNNNN.json``, atomically, in parallel.

Each image depends only on ``(seed, image_id)`` and its group plan, so the output is byte-identical for
the same arguments whatever the number of workers.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from fashionparse.categories import ATTRIBUTES, CATEGORIES
from fashionparse.data.synth.annotate import Annotation, annotate
from fashionparse.data.synth.plan import ImagePlan, plan_split
from fashionparse.data.synth.render import render_scene
from fashionparse.data.synth.scene import Scene, compose_scene, image_rng
from fashionparse.errors import ConfigError
from fashionparse.utils.io import atomic_write_json, atomic_write_with

GENERATOR_VERSION = 2  # raise when the same arguments write different files (2: commit 427586c's painting)
MAX_IMAGE_ID = 999_999  # six-digit file names
MIN_IMAGE_SIZE = 64
LAYOUT_TRIES = 4


def render_image(plan: ImagePlan, image_size: int = 512) -> tuple[Image.Image, dict]:
    """Render one planned image in memory: (RGB image of ``image_size`` squared, DF2 annotation dict)."""
    image, annotation, _ = _render(plan, image_size)
    return image, annotation


def compose_annotated(plan: ImagePlan, image_size: int, rng: np.random.Generator) -> tuple[Scene, Annotation]:
    """Compose and annotate the image, re-drawing the layout while a shared (style > 0) garment is not
    annotated: every image of a pair group must show its shared garments. The last try uses the safe
    layout (a centred frontal full figure)."""
    wanted = {style for style, _ in plan.shared}
    for attempt in range(LAYOUT_TRIES):
        scene = compose_scene(plan, image_size, rng, safe=attempt == LAYOUT_TRIES - 1)
        ann = annotate(scene)
        shown = {item["style"] for key, item in ann.data.items() if key.startswith("item")}
        if wanted <= shown:
            break
    return scene, ann


def _render(plan: ImagePlan, image_size: int) -> tuple[Image.Image, dict, int]:
    rng = image_rng(plan)
    scene, ann = compose_annotated(plan, image_size, rng)
    return render_scene(scene, rng), ann.data, ann.hidden_items


@dataclass
class SynthSummary:
    """What :func:`generate_split` wrote."""

    out_dir: Path
    num_images: int = 0
    num_items: int = 0
    hidden_items: int = 0  # garments drawn but too covered to annotate (left out of the annos)
    sources: Counter = field(default_factory=Counter)
    categories: Counter = field(default_factory=Counter)  # category id -> items
    attributes: dict[str, Counter] = field(default_factory=lambda: {
        k: Counter() for k in ("scale", "occlusion", "zoom_in", "viewpoint")})
    paired_items: int = 0  # items with style > 0
    seconds: float = 0.0

    def __str__(self) -> str:
        """A few lines for the CLI: totals, category counts and attribute shares."""
        rate = self.num_images / self.seconds if self.seconds else 0.0
        lines = [f"wrote {self.num_images} images ({self.sources['shop']} shop, {self.sources['user']} user) and "
                 f"{self.num_items} items ({self.paired_items} paired, {self.hidden_items} hidden garments "
                 f"not annotated) to {self.out_dir} in {self.seconds:.1f} s ({rate:.1f} images/s)"]
        lines += [f"  {c.id:>2} {c.name:<22} {self.categories[c.id]:>7}" for c in CATEGORIES]
        for attr, counts in self.attributes.items():
            total = max(1, sum(counts.values()))
            shares = ", ".join(f"{name} {100 * counts[k] / total:.0f}%" for k, name in ATTRIBUTES[attr].items())
            lines.append(f"  {attr:<10} {shares}")
        return "\n".join(lines)

    def add(self, annotation: dict, hidden: int) -> None:
        self.num_images += 1
        self.hidden_items += hidden
        self.sources[annotation["source"]] += 1
        for key, item in annotation.items():
            if key.startswith("item"):
                self.num_items += 1
                self.categories[item["category_id"]] += 1
                self.paired_items += item["style"] > 0
                for attr, counts in self.attributes.items():
                    counts[item[attr]] += 1


def _write_one(job: tuple[ImagePlan, int, str, int]) -> tuple[dict, int]:
    plan, size, out_dir, quality = job
    image, annotation, hidden = _render(plan, size)
    name = f"{plan.image_id:06d}"
    root = Path(out_dir)
    atomic_write_with(root / "image" / f"{name}.jpg", lambda f: image.save(f, "JPEG", quality=quality))
    atomic_write_json(root / "annos" / f"{name}.json", annotation)
    return annotation, hidden


def _check_args(num_images: int, image_size: int, start_id: int, workers: int) -> None:
    if num_images < 1:
        raise ConfigError(f"must be at least 1, got {num_images}", field="num_images")
    if image_size < MIN_IMAGE_SIZE:
        raise ConfigError(f"must be at least {MIN_IMAGE_SIZE}, got {image_size}", field="image_size")
    if start_id < 1 or start_id + num_images - 1 > MAX_IMAGE_ID:
        raise ConfigError(f"ids {start_id}..{start_id + num_images - 1} do not fit 1..{MAX_IMAGE_ID}",
                          field="start_id")
    if workers < 1:
        raise ConfigError(f"must be at least 1, got {workers}", field="workers")


def _existing_files(out: Path) -> list[Path]:
    """The split files already under ``out`` (``image/*.jpg``, ``annos/*.json``)."""
    return sorted([*(out / "image").glob("*.jpg"), *(out / "annos").glob("*.json")])


def generate_split(out_dir: str | Path, num_images: int, seed: int = 0, *, balanced: bool = False,
                   image_size: int = 512, start_id: int = 1, workers: int = 1, progress: bool = True,
                   jpeg_quality: int = 92, overwrite: bool = False) -> SynthSummary:
    """Write ``num_images`` synthetic DF2 images and annotations under ``out_dir``.

    Files are ``image/NNNNNN.jpg`` and ``annos/NNNNNN.json`` for ids ``start_id ..`` (use disjoint
    ranges for train and validation). Categories follow DF2's long tail, or are uniform with
    ``balanced``. A folder that already holds a split is refused, since writing into it would mix two
    splits; ``overwrite`` deletes its images and annotations first.
    """
    _check_args(num_images, image_size, start_id, workers)
    out = Path(out_dir)
    existing = _existing_files(out)
    if existing and not overwrite:
        raise ConfigError(f"already holds {len(existing)} split files (e.g. {existing[0].name}); choose an empty "
                          "folder or overwrite (--overwrite) to replace them", path=out)
    for path in existing:
        path.unlink()
    started = time.perf_counter()
    plans = plan_split(num_images, seed, balanced=balanced, start_id=start_id)
    jobs = [(plan, image_size, str(out), jpeg_quality) for plan in plans]
    summary = SynthSummary(out)
    bar = tqdm(total=num_images, desc="synth", unit="img", disable=not progress)
    with bar:
        if workers == 1:
            for annotation, hidden in map(_write_one, jobs):
                summary.add(annotation, hidden)
                bar.update()
        else:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for annotation, hidden in pool.imap_unordered(_write_one, jobs, chunksize=4):
                    summary.add(annotation, hidden)
                    bar.update()
                pool.close()
                pool.join()
    summary.seconds = time.perf_counter() - started
    return summary

