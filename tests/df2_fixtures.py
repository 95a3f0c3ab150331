"""Hand-built DeepFashion2 split fixtures (tiny images + annotation dicts) for the data-layer tests."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fashionparse.categories import BY_ID

# Real annotation posted in switchablenorms/DeepFashion2#4 (reference §1). item1 is verbatim; the
# reference elides item2's 75 landmark values, so they are padded: zeros except landmark 3 (94, 58, v=2),
# landmark 6 (180, 86, v=2) and landmark 7 (203, 173, v=1).
SKIRT: dict[str, Any] = {
    "category_id": 9, "category_name": "skirt", "style": 1,
    "bounding_box": [227, 86, 543, 455],
    "landmarks": [237, 160, 1, 378, 153, 2, 461, 92, 1, 247, 309, 2, 292, 420, 2, 440, 428, 2, 535, 348, 2,
                  519, 214, 2],
    "segmentation": [[237, 160, 378, 153, 461, 92, 519, 214, 535, 348, 440, 428, 292, 420, 247, 309, 237, 160]],
    "scale": 2, "occlusion": 2, "zoom_in": 1, "viewpoint": 2,
}
_TOP_LANDMARKS = [0] * 75
_TOP_LANDMARKS[6:9] = [94, 58, 2]
_TOP_LANDMARKS[15:21] = [180, 86, 2, 203, 173, 1]
SHORT_SLEEVE_TOP: dict[str, Any] = {
    "category_id": 1, "category_name": "short sleeve top", "style": 0,
    "bounding_box": [0, 0, 495, 179],
    "landmarks": _TOP_LANDMARKS,
    "segmentation": [[1, 2, 1, 17, 94, 58, 128, 2, 163, 2, 180, 86, 203, 173, 370, 149, 490, 81, 463, 1, 1, 2],
                     [1, 2, 1, 17, 94, 58, 128, 2, 1, 2]],
    "scale": 2, "occlusion": 1, "zoom_in": 3, "viewpoint": 2,
}
EXAMPLE_SIZE = (640, 480)  # the real image size is not given; this one contains every coordinate


def example_annotation() -> dict[str, Any]:
    """The #4 annotation, with ``item2`` before ``source`` as in the posted file."""
    return {"item2": copy.deepcopy(SHORT_SLEEVE_TOP), "source": "shop", "pair_id": 1811,
            "item1": copy.deepcopy(SKIRT)}


def make_item(category_id: int = 1, box: tuple[float, float, float, float] = (10, 10, 50, 40), *,
              style: int = 1, scale: int = 2, occlusion: int = 1, zoom_in: int = 1, viewpoint: int = 2,
              visible: Iterable[int] = (0,)) -> dict[str, Any]:
    """A valid item: the box as a closed rectangle polygon, landmarks ``visible`` at the box centre (v=2)."""
    cat = BY_ID[category_id]
    x1, y1, x2, y2 = box
    landmarks = [0] * (3 * cat.num_landmarks)
    for k in visible:
        landmarks[3 * k:3 * k + 3] = [(x1 + x2) / 2, (y1 + y2) / 2, 2]
    return {
        "category_id": category_id, "category_name": cat.name, "style": style,
        "bounding_box": list(box), "landmarks": landmarks,
        "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2, x1, y1]],
        "scale": scale, "occlusion": occlusion, "zoom_in": zoom_in, "viewpoint": viewpoint,
    }


def make_annotation(*items: dict[str, Any], source: str = "user", pair_id: int = 1) -> dict[str, Any]:
    """Annotation dict with ``item1..itemN`` in the given order."""
    return {"source": source, "pair_id": pair_id, **{f"item{i}": it for i, it in enumerate(items, 1)}}


def write_image(path: Path, size: tuple[int, int] = (64, 48), *, seed: int = 0,
                exif_orientation: int | None = None) -> Path:
    """A small noisy JPEG (noise so that a truncated copy loses entropy-coded data)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    if exif_orientation is None:
        image.save(path, format="JPEG", quality=90)
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(path, format="JPEG", quality=90, exif=exif)
    return path


def image_path(root: Path, image_id: int) -> Path:
    return root / "image" / f"{image_id:06d}.jpg"


def anno_path(root: Path, image_id: int) -> Path:
    return root / "annos" / f"{image_id:06d}.json"


def write_split(root: Path, annos: Mapping[int, dict[str, Any] | str], *, size: tuple[int, int] = (64, 48),
                sizes: Mapping[int, tuple[int, int]] | None = None, with_images: Iterable[int] | None = None) -> Path:
    """Write ``image/NNNNNN.jpg`` + ``annos/NNNNNN.json`` under ``root``.

    A ``str`` annotation is written verbatim (for broken JSON). ``with_images`` restricts which ids get
    an image (default: every id in ``annos``); ``sizes`` overrides ``size`` per id.
    """
    (root / "image").mkdir(parents=True, exist_ok=True)
    (root / "annos").mkdir(parents=True, exist_ok=True)
    for image_id, anno in annos.items():
        text = anno if isinstance(anno, str) else json.dumps(anno)
        anno_path(root, image_id).write_text(text)
    for image_id in annos if with_images is None else with_images:
        write_image(image_path(root, image_id), (sizes or {}).get(image_id, size), seed=image_id)
    return root
