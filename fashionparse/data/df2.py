"""DeepFashion2 split reader and validator.

A DF2 split is a folder holding ``image/NNNNNN.jpg`` and ``annos/NNNNNN.json`` (schema:
``shared/reference/deepfashion2.md`` §1). :func:`read_split` reads every pair in parallel, checks each
field, and returns the good records plus a list of :class:`Problem` (what was skipped and why).

Lenient mode (default) skips a bad item, or the whole image when the image file or the image-level
annotation is bad (one without any ``itemN`` is an image without garments, kept as the official converter
keeps it); a polygon of fewer than 3 points is dropped from an item that keeps another polygon (the official
converter copies such polygons through). ``strict=True`` raises :class:`~fashionparse.errors.AnnotationError`
at the first problem instead.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import reprlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image
from tqdm import tqdm

from fashionparse.categories import ATTRIBUTES, BY_ID, Category
from fashionparse.errors import AnnotationError

# A box corner or polygon point may lie this many pixels outside the image (annotation tools round
# coordinates, and DF2 boxes touch the border as x2 == width).
BOUNDS_TOLERANCE_PX = 2.0

IMAGE_DIR, ANNO_DIR = "image", "annos"
IMAGE_SUFFIX, ANNO_SUFFIX = ".jpg", ".json"
SOURCES = ("shop", "user")
ATTRIBUTE_FIELDS: tuple[str, ...] = tuple(ATTRIBUTES)  # scale, occlusion, zoom_in, viewpoint
ITEM_FIELDS = (
    "category_id", "category_name", "style", "bounding_box", "landmarks", "segmentation", *ATTRIBUTE_FIELDS,
)

# Problem kind -> what it means; ``SplitReport.summary_table`` counts problems by kind.
PROBLEM_KINDS: dict[str, str] = {
    "unexpected_file": "file in image/ or annos/ that is not NNNNNN.jpg / NNNNNN.json",
    "bad_file_name": "file name is not an image id number",
    "duplicate_id": "two files map to the same image id",
    "missing_image": "annotation without image",
    "missing_annotation": "image without annotation",
    "bad_image": "image file not decodable",
    "bad_json": "annotation file unreadable or not a JSON object",
    "missing_field": "required field missing",
    "bad_source": "source is not 'shop' or 'user'",
    "bad_pair_id": "pair_id is not an integer",
    "bad_item": "item is not a JSON object",
    "bad_item_key": "key starts with 'item' but is not itemN (N a number)",
    "bad_category": "category_id is not an integer 1..13",
    "category_mismatch": "category_name does not match category_id",
    "bad_style": "style is not an integer >= 0",
    "bad_attribute": "scale/occlusion/zoom_in/viewpoint is not an integer 1..3",
    "bad_bbox": "bounding_box malformed or of non-positive size",
    "bbox_outside": "bounding_box outside the image",
    "bad_polygon": "segmentation polygon malformed",
    "short_polygon": "polygon of < 3 points dropped (item kept)",
    "polygon_outside": "segmentation polygon outside the image",
    "bad_landmarks": "landmarks malformed, wrong length or bad visibility flag",
}
# Item problem kinds that drop only part of the item (the item is kept); every other item kind skips it.
PART_KINDS = frozenset({"short_polygon"})

_ITEM_KEY = re.compile(r"item([0-9]+)")
_IMAGE_ID = re.compile(r"[0-9]+")
_repr = reprlib.Repr()
_repr.maxlist = 8
_repr.maxstring = 40


@dataclass(frozen=True)
class Item:
    """One validated clothing item. Coordinates are image pixels, as stored in the file.

    ``bounding_box`` is ``(x1, y1, x2, y2)``; ``landmarks`` the flat ``x, y, v`` vector of the item's own
    category (3 x ``num_landmarks`` values); ``segmentation`` a tuple of flat closed polygons.
    """

    key: str
    category_id: int
    category_name: str
    style: int
    bounding_box: tuple[float, float, float, float]
    landmarks: tuple[float, ...]
    segmentation: tuple[tuple[float, ...], ...]
    scale: int
    occlusion: int
    zoom_in: int
    viewpoint: int

    @property
    def number(self) -> int:
        """The N of ``itemN``; items are ordered by it."""
        return int(self.key[4:])

    @property
    def category(self) -> Category:
        return BY_ID[self.category_id]


@dataclass(frozen=True)
class ImageRecord:
    """One image of a split with its good items (ordered by item number).

    ``width``/``height`` are the stored pixel size as PIL reports it (EXIF orientation not applied, as
    DF2 annotations refer to the stored pixels).
    """

    image_id: int
    file_name: str
    image_path: Path
    anno_path: Path
    width: int
    height: int
    source: str
    pair_id: int
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Problem:
    """One validation failure. ``item`` is None for image-level problems (which skip the image); see ``level``."""

    file: str
    item: str | None
    field: str | None
    message: str
    kind: str

    @property
    def level(self) -> str:
        """What the problem skips: ``image``, ``item`` or ``part`` (of a kept item, see ``PART_KINDS``)."""
        if self.item is None:
            return "image"
        return "part" if self.kind in PART_KINDS else "item"

    @property
    def location(self) -> str | None:
        """``item.field``, ``item`` or ``field``, whichever parts are set."""
        return ".".join(p for p in (self.item, self.field) if p) or None

    def to_error(self) -> AnnotationError:
        return AnnotationError(self.message, path=self.file, field=self.location)

    def __str__(self) -> str:
        return str(self.to_error())


def _file_problem(path: Path, kind: str, message: str) -> Problem:
    """An image-level problem of a whole file."""
    return Problem(str(path), None, None, message, kind)


@dataclass
class SplitReport:
    """Result of :func:`read_split`: kept records (ordered by image id) and everything skipped.

    ``skipped_items`` counts bad items dropped from kept images; items of skipped images are not
    counted again. ``ignored_files`` counts files that could not be tied to an image id.
    ``dropped_polygons`` counts polygons of fewer than 3 points (each also a ``short_polygon`` problem).
    """

    root: Path
    records: list[ImageRecord]
    problems: list[Problem]
    skipped_images: int
    skipped_items: int
    ignored_files: int

    @property
    def num_items(self) -> int:
        return sum(len(r.items) for r in self.records)

    @property
    def dropped_polygons(self) -> int:
        return sum(p.kind == "short_polygon" for p in self.problems)

    def summary_table(self) -> str:
        """Totals line plus one row per (problem kind, scope), most frequent first."""
        lines = [
            f"DF2 split {self.root}: {len(self.records)} images kept, {self.skipped_images} skipped; "
            f"{self.num_items} items kept, {self.skipped_items} skipped"
            + (f"; {self.dropped_polygons} polygons dropped" if self.dropped_polygons else "")
            + (f"; {self.ignored_files} files ignored" if self.ignored_files else "")
        ]
        if not self.problems:
            lines.append("no problems found")
            return "\n".join(lines)
        counts = Counter((p.kind, p.level) for p in self.problems)
        lines.append(f"{'problems':>8}  {'kind':<18}  {'level':<5}  what")
        for (kind, level), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"{n:>8}  {kind:<18}  {level:<5}  {PROBLEM_KINDS[kind]}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Field checks: each yields (kind, message) for one field value.

def is_int(v: Any) -> bool:
    """An integer, not a bool (JSON's true/false)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite real number, not a bool (JSON's true/false)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def is_box(v: Any) -> bool:
    """Four finite numbers (a COCO ``bbox`` or a DF2 ``bounding_box``)."""
    return isinstance(v, (list, tuple)) and len(v) == 4 and all(is_number(c) for c in v)


def check_unique_ids(coco: Mapping[str, Any], path: str | Path,
                     keys: Sequence[str] = ("images", "annotations", "categories")) -> None:
    """Raise AnnotationError naming the first entry of a COCO list (``coco[key]``, objects) whose ``id`` an
    earlier one has: pycocotools indexes by id, so a repeat would silently merge two images' annotations or
    replace an annotation by another."""
    for key in keys:
        seen: dict[Any, int] = {}
        for i, entry in enumerate(coco.get(key, ())):
            first = seen.setdefault(entry.get("id"), i)
            if first != i:
                raise AnnotationError(f"id {entry.get('id')!r} is also {key}[{first}]'s; ids must be unique",
                                      path=path, field=f"{key}[{i}].id")


def rle_problem(segmentation: Any, *, uncompressed: bool = True) -> str | None:
    """Why ``segmentation`` is not a COCO RLE dict (``size`` [h, w], ``counts`` a string, bytes as pycocotools
    writes into a GT it evaluated, or with ``uncompressed`` a list of ints)."""
    if not isinstance(segmentation, dict):
        return f"expected an RLE dict with 'size' and 'counts', got {type(segmentation).__name__}"
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(is_int(v) and v >= 0 for v in size)):
        return "RLE 'size' must be [height, width] (two non-negative integers)"
    if isinstance(counts, (str, bytes)) or uncompressed and isinstance(counts, list) \
            and all(isinstance(v, int) for v in counts):
        return None
    return "RLE 'counts' must be a string" + (" or a list of integers" if uncompressed else "")


def _is_number_list(v: Any) -> bool:
    return isinstance(v, list) and all(is_number(c) for c in v)


def _inside(x: float, y: float, size: tuple[int, int]) -> bool:
    tol = BOUNDS_TOLERANCE_PX
    return -tol <= x <= size[0] + tol and -tol <= y <= size[1] + tol


def _check_style(v: Any) -> Iterator[tuple[str, str]]:
    if not (is_int(v) and v >= 0):
        yield "bad_style", f"must be an integer >= 0, got {_repr.repr(v)}"


def _check_attribute(v: Any) -> Iterator[tuple[str, str]]:
    if not (is_int(v) and 1 <= v <= 3):
        yield "bad_attribute", f"must be an integer 1..3, got {_repr.repr(v)}"


def _check_bbox(v: Any, size: tuple[int, int] | None) -> Iterator[tuple[str, str]]:
    if not is_box(v):
        yield "bad_bbox", f"must be [x1, y1, x2, y2] (4 numbers), got {_repr.repr(v)}"
        return
    x1, y1, x2, y2 = v
    if x2 <= x1 or y2 <= y1:
        yield "bad_bbox", f"has non-positive size {x2 - x1} x {y2 - y1} (x2 <= x1 or y2 <= y1) in {v}"
    elif size is not None and not (_inside(x1, y1, size) and _inside(x2, y2, size)):
        yield "bbox_outside", (
            f"{v} extends outside the {size[0]}x{size[1]} image by more than {BOUNDS_TOLERANCE_PX} px"
        )


def is_short_polygon(poly: Any) -> bool:
    """Well-formed (even number of numbers) but fewer than 3 points: it has no area, and pycocotools would read
    a 4-number one as a box, so readers drop it (and count it) rather than refuse the annotation."""
    return _is_number_list(poly) and len(poly) % 2 == 0 and len(poly) < 6


def _check_segmentation(v: Any, size: tuple[int, int] | None) -> Iterator[tuple[str, str]]:
    if not (isinstance(v, list) and v):
        yield "bad_polygon", "must be a non-empty list of polygons [[x1, y1, x2, y2, ...], ...]"
        return
    # A short polygon is dropped while the item keeps another; without one the item itself is bad.
    keeps_one = not all(is_short_polygon(poly) for poly in v)
    for k, poly in enumerate(v):
        if not _is_number_list(poly):
            yield "bad_polygon", f"polygon {k} must be a flat list of numbers, got {_repr.repr(poly)}"
        elif len(poly) % 2:
            yield "bad_polygon", f"polygon {k} has an odd number of coordinates ({len(poly)})"
        elif len(poly) < 6:
            message = f"polygon {k} has {len(poly) // 2} points, needs at least 3"
            yield ("short_polygon", f"{message}; dropped") if keeps_one else ("bad_polygon", message)
        elif size is not None:
            out = next(((x, y) for x, y in zip(poly[0::2], poly[1::2]) if not _inside(x, y, size)), None)
            if out is not None:
                yield "polygon_outside", (
                    f"polygon {k} has point {out} outside the {size[0]}x{size[1]} image "
                    f"by more than {BOUNDS_TOLERANCE_PX} px"
                )


def _check_landmarks(v: Any, category: Category | None) -> Iterator[tuple[str, str]]:
    if not _is_number_list(v):
        yield "bad_landmarks", "must be a flat list of numbers [x1, y1, v1, x2, y2, v2, ...]"
        return
    if category is not None and len(v) != 3 * category.num_landmarks:
        yield "bad_landmarks", (
            f"has {len(v)} values, expected {3 * category.num_landmarks} "
            f"(3 x {category.num_landmarks} landmarks of {category.name!r})"
        )
        return
    bad_flag = next((f for f in v[2::3] if f not in (0, 1, 2)), None)
    if bad_flag is not None:
        yield "bad_landmarks", f"visibility flag must be 0, 1 or 2, got {bad_flag!r}"


def _parse_item(key: str, raw: Any, size: tuple[int, int] | None, file: str) -> tuple[Item | None, list[Problem]]:
    """Validate one ``itemN`` object; return the Item (None when a problem other than ``PART_KINDS``)
    and the problems."""
    problems: list[Problem] = []

    def report(field: str | None, kind: str, message: str) -> None:
        problems.append(Problem(file, key, field, message, kind))

    if not isinstance(raw, dict):
        report(None, "bad_item", f"must be a JSON object, got {type(raw).__name__}")
        return None, problems
    for name in ITEM_FIELDS:
        if name not in raw:
            report(name, "missing_field", "required field is missing")

    cid = raw.get("category_id")
    category = BY_ID.get(cid) if is_int(cid) else None
    if "category_id" in raw and category is None:
        report("category_id", "bad_category", f"must be an integer 1..13, got {_repr.repr(cid)}")
    elif category is not None and "category_name" in raw and raw["category_name"] != category.name:
        report("category_name", "category_mismatch",
               f"{_repr.repr(raw['category_name'])} does not match category_id {cid} ({category.name!r})")

    checks: dict[str, Callable[[Any], Iterator[tuple[str, str]]]] = {
        "style": _check_style,
        **{name: _check_attribute for name in ATTRIBUTE_FIELDS},
        "bounding_box": partial(_check_bbox, size=size),
        "segmentation": partial(_check_segmentation, size=size),
        "landmarks": partial(_check_landmarks, category=category),
    }
    for name, check in checks.items():
        if name in raw:
            for kind, message in check(raw[name]):
                report(name, kind, message)
    if any(p.kind not in PART_KINDS for p in problems):
        return None, problems
    item = Item(
        key=key,
        category_id=cid,
        category_name=raw["category_name"],
        style=raw["style"],
        bounding_box=tuple(raw["bounding_box"]),
        landmarks=tuple(raw["landmarks"]),
        segmentation=tuple(tuple(p) for p in raw["segmentation"] if not is_short_polygon(p)),
        **{name: raw[name] for name in ATTRIBUTE_FIELDS},
    )
    return item, problems


# ---------------------------------------------------------------------------------------------------
# One image (runs in a worker process).

@dataclass(frozen=True)
class _ImageResult:
    record: ImageRecord | None
    problems: list[Problem]
    skipped_items: int


def _probe_image(path: Path) -> tuple[int, int]:
    """Stored ``(width, height)`` from the header, after verifying that the whole file decodes.

    JPEGs are decoded at 1/8 scale (``draft``): the entropy-coded stream is still read to the end, so a
    truncated or corrupt file fails, at a fraction of the cost of a full-size decode.
    """
    with Image.open(path) as im:
        size = im.size
        im.draft(None, (1, 1))
        im.load()
    return size


def _check_top_level(data: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """Image-level fields: yields (field, kind, message)."""
    for name in ("source", "pair_id"):
        if name not in data:
            yield name, "missing_field", "required field is missing"
    if "source" in data and data["source"] not in SOURCES:
        yield "source", "bad_source", f"must be 'shop' or 'user', got {_repr.repr(data['source'])}"
    if "pair_id" in data and not is_int(data["pair_id"]):
        yield "pair_id", "bad_pair_id", f"must be an integer, got {_repr.repr(data['pair_id'])}"


def _read_image(job: tuple[int, Path, Path]) -> _ImageResult:
    """Read and validate one image/annotation pair."""
    image_id, image_path, anno_path = job
    file = str(anno_path)
    image_problems: list[Problem] = []
    size: tuple[int, int] | None = None
    try:
        size = _probe_image(image_path)
    except Exception as exc:  # noqa: BLE001 - PIL raises many exception types on corrupt files
        image_problems.append(_file_problem(image_path, "bad_image", f"cannot decode image: {exc}"))

    try:
        with open(anno_path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        image_problems.append(_file_problem(anno_path, "bad_json", f"unreadable JSON: {exc}"))
        return _ImageResult(None, image_problems, 0)
    if not isinstance(data, dict):
        message = f"must hold a JSON object, got {type(data).__name__}"
        image_problems.append(_file_problem(anno_path, "bad_json", message))
        return _ImageResult(None, image_problems, 0)
    image_problems += [Problem(file, None, field, message, kind) for field, kind, message in _check_top_level(data)]

    item_keys = sorted((k for k in data if _ITEM_KEY.fullmatch(k)), key=lambda k: int(k[4:]))
    bad_keys = sorted(k for k in data if k.startswith("item") and not _ITEM_KEY.fullmatch(k))
    items: list[Item] = []
    item_problems = [Problem(file, key, None, "is not an itemN key (N a number); not read", "bad_item_key")
                     for key in bad_keys]
    for key in item_keys:
        item, problems = _parse_item(key, data[key], size, file)
        item_problems.extend(problems)
        if item is not None:
            items.append(item)

    problems = image_problems + item_problems
    if image_problems or size is None:
        return _ImageResult(None, problems, 0)
    record = ImageRecord(
        image_id=image_id,
        file_name=image_path.name,
        image_path=image_path,
        anno_path=anno_path,
        width=size[0],
        height=size[1],
        source=data["source"],
        pair_id=data["pair_id"],
        items=tuple(items),
    )
    return _ImageResult(record, problems, len(item_keys) + len(bad_keys) - len(items))


# ---------------------------------------------------------------------------------------------------
# Split level.

def _index_folder(folder: Path, suffix: str, problems: list[Problem]) -> dict[int, Path]:
    """Map image id -> file for the ``NNNNNN<suffix>`` files of ``folder``; report the others."""
    by_id: dict[int, Path] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = Path(entry.path)
        if not entry.is_file() or path.suffix != suffix:
            problems.append(_file_problem(path, "unexpected_file", f"expected only NNNNNN{suffix} files here"))
        elif not _IMAGE_ID.fullmatch(path.stem):
            message = f"file name must be the image id, e.g. 000001{suffix}"
            problems.append(_file_problem(path, "bad_file_name", message))
        elif (image_id := int(path.stem)) in by_id:
            message = f"image id {image_id} is also used by {by_id[image_id].name}"
            problems.append(_file_problem(path, "duplicate_id", message))
        else:
            by_id[image_id] = path
    return by_id


def _pair_files(root: Path) -> tuple[list[tuple[int, Path, Path]], list[Problem], int, int]:
    """Jobs ``(image_id, image, annotation)`` sorted by id, pairing problems, #orphan ids, #ignored files."""
    for sub in (IMAGE_DIR, ANNO_DIR):
        if not (root / sub).is_dir():
            raise AnnotationError(f"missing folder; a DF2 split holds {IMAGE_DIR}/ and {ANNO_DIR}/", path=root / sub)
    problems: list[Problem] = []
    images = _index_folder(root / IMAGE_DIR, IMAGE_SUFFIX, problems)
    annos = _index_folder(root / ANNO_DIR, ANNO_SUFFIX, problems)
    ignored = len(problems)
    jobs: list[tuple[int, Path, Path]] = []
    for image_id in sorted(images.keys() | annos.keys()):
        if image_id not in annos:
            image = images[image_id]
            message = f"no annotation {ANNO_DIR}/{image.stem}{ANNO_SUFFIX}"
            problems.append(_file_problem(image, "missing_annotation", message))
        elif image_id not in images:
            anno = annos[image_id]
            problems.append(_file_problem(anno, "missing_image", f"no image {IMAGE_DIR}/{anno.stem}{IMAGE_SUFFIX}"))
        else:
            jobs.append((image_id, images[image_id], annos[image_id]))
    return jobs, problems, len(problems) - ignored, ignored


def resolve_workers(workers: int | None) -> int:
    """``None`` -> the CPUs this process may use; otherwise ``workers`` (must be >= 1)."""
    if workers is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return workers


_J = TypeVar("_J")
_R = TypeVar("_R")


def _parallel_map(fn: Callable[[_J], _R], jobs: Sequence[_J], *, workers: int | None, progress: bool,
                  desc: str) -> Iterator[_R]:
    """``fn`` over ``jobs`` in worker processes, results in job order, with a tqdm bar.

    Closing the generator early (e.g. on a strict-mode error) cancels the jobs not yet started.
    """
    n_workers = min(resolve_workers(workers), max(1, len(jobs)))
    with tqdm(total=len(jobs), desc=desc, unit="img", disable=not progress) as bar:
        if n_workers == 1:
            for job in jobs:
                yield fn(job)
                bar.update()
            return
        pool = ProcessPoolExecutor(max_workers=n_workers)
        try:
            chunksize = max(1, min(64, len(jobs) // (4 * n_workers)))
            for result in pool.map(fn, jobs, chunksize=chunksize):
                yield result
                bar.update()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def read_split(root: str | Path, *, strict: bool = False, workers: int | None = None,
               progress: bool = True) -> SplitReport:
    """Read and validate a DF2 split folder (``image/`` + ``annos/``).

    Args:
        root: split folder.
        strict: raise :class:`AnnotationError` at the first problem instead of skipping.
        workers: reader processes; ``None`` = all usable CPUs, 1 = in this process.
        progress: show a tqdm progress bar.

    Raises:
        AnnotationError: ``image/`` or ``annos/`` is missing, or (strict) any problem.
    """
    root = Path(root)
    jobs, problems, skipped_images, ignored = _pair_files(root)
    if strict and problems:
        raise problems[0].to_error()
    records: list[ImageRecord] = []
    skipped_items = 0
    with closing(_parallel_map(_read_image, jobs, workers=workers, progress=progress,
                               desc=f"reading {root.name or root}")) as results:
        for result in results:
            if strict and result.problems:
                raise result.problems[0].to_error()
            problems.extend(result.problems)
            skipped_items += result.skipped_items
            if result.record is None:
                skipped_images += 1
            else:
                records.append(result.record)
    return SplitReport(root, records, problems, skipped_images, skipped_items, ignored)
