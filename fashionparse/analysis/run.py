"""Reading a run folder written by ``fashionparse train`` / ``fashionparse demo``.

Layout: ``config.yaml`` (its ``data.val_annotations`` / ``data.val_images`` name the validation GT and
images), ``metrics.jsonl`` (training log, optional), ``eval/metrics.json``, ``eval/bbox_results.json``,
``eval/segm_results.json``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashionparse.config import Config, load_config
from fashionparse.errors import ConfigError, FashionparseError


@dataclass(frozen=True)
class Run:
    """A run folder's contents. ``history``: the training log's records in file order;
    ``history_skipped``: its lines that are not JSON objects with an ``iteration`` (e.g. a line cut by a crash)."""

    run_dir: Path
    config: Config
    gt_path: Path
    image_dir: Path
    metrics: dict[str, Any]
    bbox_results: list[dict]
    segm_results: list[dict]
    history: list[dict]
    history_skipped: int

    @property
    def label(self) -> str:
        return self.run_dir.resolve().name

    @property
    def iterations(self) -> int | None:
        """Last logged iteration, None without a training log."""
        return max((r["iteration"] for r in self.history), default=None)

    def results_path(self, iou_type: str) -> Path:
        """The detections file of ``iou_type`` ('bbox' or 'segm')."""
        return results_path(self.run_dir, iou_type)

    def digests(self) -> dict[str, str]:
        """SHA-256 of the GT and result files: an analysis cached for these inputs is still valid."""
        files = {"gt": self.gt_path, "bbox": self.results_path("bbox"), "segm": self.results_path("segm")}
        out = {}
        for name, path in files.items():
            with path.open("rb") as f:
                out[name] = hashlib.file_digest(f, "sha256").hexdigest()
        return out


def results_path(run_dir: Path, iou_type: str) -> Path:
    """Where a run folder keeps its ``iou_type`` detections (DF2 submission records)."""
    return run_dir / "eval" / f"{iou_type}_results.json"


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise FashionparseError("file not found", path=path) from None
    except OSError as err:
        raise FashionparseError(f"cannot read ({err.strerror})", path=path) from err
    except json.JSONDecodeError as err:
        raise FashionparseError(f"not valid JSON ({err.msg}, line {err.lineno})", path=path) from err


def read_history(path: Path) -> tuple[list[dict], int]:
    """Records of a ``metrics.jsonl`` and the number of lines left out; no file -> ([], 0)."""
    if not path.is_file():
        return [], 0
    records, skipped = [], 0
    for line in path.read_text("utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        if isinstance(record, dict) and isinstance(record.get("iteration"), int):
            records.append(record)
        else:
            skipped += 1
    return records, skipped


def _ground_truth_path(value: str | Path | None, config_path: Path) -> Path:
    if not value:
        raise ConfigError("not set; pass the validation GT explicitly (--gt)", path=config_path,
                          field="data.val_annotations")
    path = Path(value)
    if not path.is_file():
        raise FashionparseError(f"file not found (named by {config_path} data.val_annotations; pass --gt when it "
                                "moved)", path=path)
    return path


def load_run(run_dir: str | Path, *, gt: str | Path | None = None, images: str | Path | None = None) -> Run:
    """Read a run folder; ``gt``/``images`` override the config's validation annotations and image folder.

    The GT must exist; the image folder is only needed for galleries and is checked there.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FashionparseError("run folder not found", path=run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FashionparseError("not a run folder: config.yaml is missing", path=run_dir)
    config = load_config(config_path)
    history, skipped = read_history(run_dir / "metrics.jsonl")
    return Run(
        run_dir=run_dir,
        config=config,
        gt_path=_ground_truth_path(gt or config.data.val_annotations, config_path),
        image_dir=Path(images or config.data.val_images),
        metrics=read_json(run_dir / "eval" / "metrics.json"),
        bbox_results=read_json(results_path(run_dir, "bbox")),
        segm_results=read_json(results_path(run_dir, "segm")),
        history=history,
        history_skipped=skipped,
    )
