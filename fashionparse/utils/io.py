"""Atomic file writes (write to a temporary file in the same folder, fsync, then rename), and the check that
an output folder can take them, made before a command's work rather than after it."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from fashionparse.errors import FashionparseError


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path`` atomically.

    A reader never sees a half-written file; on an exception the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def ensure_writable_dir(path: str | Path) -> Path:
    """Create the folder ``path`` (and its parents) and write and remove a file in it, so that a command whose
    outputs come at the end fails before its work, not after. Raises the ``OSError`` (a file in the way, no
    permission; ``FashionparseError`` when ``path`` is a file), which the CLI prints on one line naming the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FashionparseError("is a file; an output folder goes here", path=path)
    path.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:  # it names the probe file; the folder is what the user gave
        raise type(err)(err.errno, err.strerror, str(path)) from err
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = None) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=indent)


def atomic_write_with(path: str | Path, writer: Callable[[IO[bytes]], None]) -> None:
    """Atomically write binary content produced by ``writer(fileobj)`` (e.g. ``torch.save`` or PIL)."""
    with atomic_open(path, "wb") as f:
        writer(f)
