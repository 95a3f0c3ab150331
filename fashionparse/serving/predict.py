"""Batch prediction over files, folders and globs: DF2 submission JSON, one overlay per image, a summary.

Outputs in ``out_dir``:

* ``bbox_results.json`` / ``segm_results.json`` -- DF2's official submission format (bbox xywh; segm COCO RLE),
  as the evaluator and ``COCO.loadRes`` read them;
* ``images.json`` -- COCO-style ``images`` entries (``id``, ``file_name``, ``width``, ``height``) plus the
  overlay file and instance count of every parsed image, to map ``image_id`` back to files;
* ``overlays/<stem>.jpg`` -- masks, boxes and "name score" labels (``<stem>_<image_id>.jpg`` on name clashes);
* ``summary.json`` -- counts and every problem input with its reason.

``image_id`` is the file's number when its stem is one (DF2's ``000123.jpg`` -> 123, as the evaluator
expects); other files get ids above the largest number. Nothing is dropped silently: paths that do not
exist, folders or globs that match no file, and files that cannot be decoded are reported and counted.
"""

from __future__ import annotations

import glob
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from fashionparse.data.images import load_rgb
from fashionparse.errors import FashionparseError
from fashionparse.serving.predictor import Predictor
from fashionparse.serving.records import draw_overlay, submission_records
from fashionparse.utils.io import atomic_write_json, ensure_writable_dir
from fashionparse.visualize import save_image

OVERLAY_DIR = "overlays"


@dataclass(frozen=True)
class Problem:
    """An input that produced no prediction: ``kind`` is ``missing`` (no such path, or a folder/glob that
    matched no file) or ``unreadable`` (a file that does not decode as an image)."""

    path: str
    kind: str
    reason: str


@dataclass
class PredictSummary:
    out_dir: Path
    parsed: int = 0
    instances: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(p.kind == kind for p in self.problems)

    @property
    def ok(self) -> bool:
        """True when every input was parsed (the CLI's exit status 0)."""
        return not self.problems

    def to_dict(self) -> dict:
        return {"parsed": self.parsed, "unreadable": self.count("unreadable"), "missing": self.count("missing"),
                "instances": self.instances, "seconds": round(self.seconds, 3),
                "problems": [asdict(p) for p in self.problems]}

    def format(self) -> str:
        rate = self.parsed / self.seconds if self.seconds > 0 else 0.0
        return (f"parsed {self.parsed} images ({self.instances} instances, {rate:.2f} images/s), "
                f"{self.count('unreadable')} unreadable, {self.count('missing')} missing -> {self.out_dir}")


def collect_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], list[Problem]]:
    """Expand files, folders (their files, not recursive, sorted) and globs (``**`` recursive) into a list of
    distinct files in input order; inputs that yield no file become ``missing`` problems."""
    files: dict[Path, None] = {}
    problems = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file())
        elif path.is_file():
            found = [path]
        elif glob.has_magic(str(item)):
            found = sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
        else:
            problems.append(Problem(str(item), "missing", "no such file or folder"))
            continue
        if not found:
            problems.append(Problem(str(item), "missing", "matched no files"))
        files.update(dict.fromkeys(found))
    return list(files), problems


def assign_image_ids(files: Sequence[Path]) -> list[int]:
    """A file named by a number keeps it as its id (DF2's ``000123.jpg`` -> 123, what the evaluator expects);
    other files, and repeats of a number, get the next ids above the largest number, in input order."""
    numbers = [int(f.stem) if f.stem.isdigit() else None for f in files]
    next_id = max((n for n in numbers if n is not None), default=0) + 1
    ids, used = [], set()
    for number in numbers:
        if number is None or number in used:
            number, next_id = next_id, next_id + 1
        used.add(number)
        ids.append(number)
    return ids


def _overlay_names(files: Sequence[Path], image_ids: Sequence[int]) -> list[str]:
    seen: set[str] = set()
    names = []
    for f, image_id in zip(files, image_ids):
        name = f"{f.stem}.jpg" if f"{f.stem}.jpg" not in seen else f"{f.stem}_{image_id}.jpg"
        seen.add(name)
        names.append(name)
    return names


def _decoded_batches(files: Sequence[Path], batch_size: int, problems: list[Problem],
                     bar: tqdm) -> Iterator[list[tuple[int, Image.Image]]]:
    """Batches of ``(index into files, RGB image)``; files that fail to decode go to ``problems`` (and
    advance the progress bar, which the caller advances for the decoded ones)."""
    batch = []
    for index, path in enumerate(files):
        try:
            batch.append((index, load_rgb(path)))
        except FashionparseError as e:  # load_rgb's error names the file; keep the decoder's reason
            problems.append(Problem(str(path), "unreadable", f"cannot decode ({e.__cause__ or e})"))
            bar.update(1)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict_files(predictor: Predictor, inputs: Sequence[str | Path], out_dir: str | Path, *, batch_size: int = 1,
                  overlays: bool = True, progress: bool = True) -> PredictSummary:
    """Parse every image ``inputs`` name and write the outputs listed in the module docstring to ``out_dir``.

    Raises ``FashionparseError`` when the inputs name no file at all; otherwise returns the summary, which
    counts the unreadable and missing inputs (``summary.ok`` is False when there are any).
    """
    if batch_size < 1:
        raise FashionparseError(f"must be >= 1, got {batch_size}", field="batch_size")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    files, problems = collect_inputs(inputs)
    if not files:
        detail = "; ".join(f"{p.path}: {p.reason}" for p in problems)
        raise FashionparseError(f"no input files ({detail})", field="inputs")
    ensure_writable_dir(out_dir)
    image_ids = assign_image_ids(files)
    overlay_names = _overlay_names(files, image_ids)
    summary = PredictSummary(out_dir, problems=problems)
    bbox_results, segm_results, images = [], [], []
    with tqdm(total=len(files), unit="img", desc="predict", disable=not progress) as bar:
        for batch in _decoded_batches(files, batch_size, summary.problems, bar):
            predictions = predictor.predict_batch([image for _, image in batch])
            for (index, image), instances in zip(batch, predictions):
                bbox, segm = submission_records(image_ids[index], instances, image.height, image.width)
                bbox_results += bbox
                segm_results += segm
                entry = {"id": image_ids[index], "file_name": str(files[index]), "width": image.width,
                         "height": image.height, "instances": len(instances)}
                if overlays:
                    save_image(draw_overlay(image, instances), out_dir / OVERLAY_DIR / overlay_names[index])
                    entry["overlay"] = f"{OVERLAY_DIR}/{overlay_names[index]}"
                images.append(entry)
                summary.parsed += 1
                summary.instances += len(instances)
            bar.update(len(batch))
    summary.seconds = time.perf_counter() - start
    atomic_write_json(out_dir / "bbox_results.json", bbox_results)
    atomic_write_json(out_dir / "segm_results.json", segm_results)
    atomic_write_json(out_dir / "images.json", images, indent=1)
    atomic_write_json(out_dir / "summary.json", summary.to_dict(), indent=1)
    return summary
