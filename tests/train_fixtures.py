"""Helpers for tests that train on a ``synthetic_coco`` split (see conftest.py)."""

from __future__ import annotations

from pathlib import Path


def split_overrides(root: Path) -> list[str]:
    """``data.*`` overrides that train and validate on the split ``synthetic_coco`` wrote under ``root``."""
    images, gt = root / "split" / "image", root / "gt.json"
    return [f"data.train_images={images}", f"data.train_annotations={gt}", f"data.val_images={images}",
            f"data.val_annotations={gt}"]
