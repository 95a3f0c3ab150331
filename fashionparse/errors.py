"""User-facing errors: each names the file and the field, and the CLI prints it on one line."""

from __future__ import annotations

from pathlib import Path


class FashionparseError(Exception):
    """An error caused by the user's input (file, config value, checkpoint), not by a bug.

    The CLI prints ``str(err)`` on one line and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, field: str | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.field = field
        parts = [p for p in (self.path, field) if p]
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ConfigError(FashionparseError):
    """A config value is missing, unknown or out of range."""


class AnnotationError(FashionparseError):
    """A DF2 or COCO annotation file is malformed."""


class CheckpointError(FashionparseError):
    """A checkpoint is unreadable, tampered, foreign or incompatible."""
