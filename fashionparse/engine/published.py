"""Published DeepFashion2 box/mask AP numbers and the Markdown table comparing a run against them.

The numbers live in ``fashionparse/data/published_results.json`` (sources: ``shared/reference/deepfashion2.md``
§6, ``methods.md`` §3 and the project brief); all values are fractions (0..1) on the validation set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fashionparse.errors import FashionparseError

_METRIC_KEYS = ("AP", "AP50", "AP75")
_TEXT_KEYS = ("method", "training_data", "backbone", "source", "note")
MISSING = "–"


@dataclass(frozen=True)
class APTriple:
    """COCO AP, AP50, AP75 as fractions; ``None`` where a value was not published."""

    AP: float | None = None
    AP50: float | None = None
    AP75: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {"AP": self.AP, "AP50": self.AP50, "AP75": self.AP75}


@dataclass(frozen=True)
class PublishedResult:
    """One row of the comparison: a method, what it was trained on, and its box/mask AP."""

    method: str
    training_data: str
    backbone: str
    box: APTriple
    mask: APTriple
    source: str
    note: str = ""


def parse_triple(raw: Any, path: str, field: str) -> APTriple:
    if not isinstance(raw, Mapping):
        raise FashionparseError("expected an object with AP, AP50, AP75", path=path, field=field)
    values: dict[str, float | None] = {}
    for key in _METRIC_KEYS:
        if key not in raw:
            raise FashionparseError("missing value (use null when not published)", path=path, field=f"{field}.{key}")
        value = raw[key]
        if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
            raise FashionparseError(f"expected a fraction in [0, 1] or null, got {value!r}", path=path,
                                    field=f"{field}.{key}")
        values[key] = None if value is None else float(value)
    return APTriple(**values)


def _parse_entry(raw: Any, path: str, index: int) -> PublishedResult:
    if not isinstance(raw, Mapping):
        raise FashionparseError("expected an object", path=path, field=f"[{index}]")
    for key in (*_TEXT_KEYS, "box", "mask"):
        if key not in raw:
            raise FashionparseError("missing field", path=path, field=f"[{index}].{key}")
    for key in _TEXT_KEYS:
        if not isinstance(raw[key], str):
            raise FashionparseError("expected a string", path=path, field=f"[{index}].{key}")
    return PublishedResult(
        method=raw["method"], training_data=raw["training_data"], backbone=raw["backbone"],
        box=parse_triple(raw["box"], path, f"[{index}].box"),
        mask=parse_triple(raw["mask"], path, f"[{index}].mask"),
        source=raw["source"], note=raw["note"],
    )


def read_data_json(name: str, path: str | Path | None = None) -> tuple[Any, str]:
    """Parse a JSON data file: ``path`` when given, else the packaged ``fashionparse/data/<name>``.

    Returns the parsed value and the location to name in errors.
    """
    if path is None:
        text = resources.files("fashionparse.data").joinpath(name).read_text("utf-8")
        where = f"fashionparse/data/{name}"
    else:
        where = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except OSError as err:
            raise FashionparseError(f"cannot read ({err.strerror})", path=where) from err
    try:
        return json.loads(text), where
    except json.JSONDecodeError as err:
        raise FashionparseError(f"not valid JSON ({err.msg}, line {err.lineno})", path=where) from err


def load_published(path: str | Path | None = None) -> list[PublishedResult]:
    """Read the published-results file (default: the packaged ``data/published_results.json``)."""
    raw, where = read_data_json("published_results.json", path)
    if not isinstance(raw, list):
        raise FashionparseError("expected a list of entries", path=where)
    return [_parse_entry(entry, where, i) for i, entry in enumerate(raw)]


def format_percent(value: float | None) -> str:
    """0.6384 -> '63.8'; ``None`` -> '–'."""
    return MISSING if value is None else f"{100.0 * value:.1f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if text else MISSING


def comparison_table(ours: PublishedResult, published: Sequence[PublishedResult] | None = None) -> str:
    """Markdown table: every published method, then ``ours`` as the last row; AP in percent, '–' if missing.

    The rows' notes follow the table as a list (they say what makes a row not directly comparable).
    """
    rows = [*(load_published() if published is None else published), ours]
    header = ("| method | training data | backbone | box AP | box AP50 | box AP75 "
              "| mask AP | mask AP50 | mask AP75 | source |")
    lines = [header, "|" + " --- |" * 3 + " ---: |" * 6 + " --- |"]
    for row in rows:
        metrics = [format_percent(v) for t in (row.box, row.mask) for v in (t.AP, t.AP50, t.AP75)]
        texts = [_cell(row.method), _cell(row.training_data), _cell(row.backbone)]
        lines.append("| " + " | ".join([*texts, *metrics, _cell(row.source)]) + " |")
    notes = [f"- {row.method}: {row.note}" for row in rows if row.note]
    return "\n".join([*lines, "", *notes] if notes else lines) + "\n"
