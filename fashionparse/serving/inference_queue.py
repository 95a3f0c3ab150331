"""Bounded concurrency for blocking inference: a fixed worker pool, a bounded number of waiting jobs and a
per-job deadline, so that load beyond capacity is refused at once (503) instead of piling up."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    """``workers`` jobs are running and ``max_waiting`` more are waiting."""


class InferenceQueue:
    """Run blocking jobs on ``workers`` threads with at most ``max_waiting`` jobs queued behind them.

    A job counts as pending from submission until its thread returns -- also after its caller gave up on a
    timeout, because a running thread cannot be interrupted and still holds its worker.
    """

    def __init__(self, workers: int, max_waiting: int, timeout_s: float) -> None:
        if workers < 1 or max_waiting < 0 or timeout_s <= 0:
            raise ValueError(f"need workers >= 1, max_waiting >= 0, timeout_s > 0; got {workers}, {max_waiting}, "
                             f"{timeout_s}")
        self.workers = workers
        self.capacity = workers + max_waiting
        self.timeout_s = timeout_s
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="fashionparse-inference")
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Jobs running or waiting."""
        with self._lock:
            return self._pending

    def _release(self, _: Future) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread. Raises :class:`QueueFull` without waiting when at capacity, and
        ``TimeoutError`` when waiting plus running took longer than ``timeout_s`` (a job still waiting is
        cancelled; a running one finishes in the background)."""
        with self._lock:
            if self._pending >= self.capacity:
                raise QueueFull
            self._pending += 1
        try:
            future = self._pool.submit(fn, *args)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)

    def close(self) -> None:
        """Cancel waiting jobs; running ones finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)
