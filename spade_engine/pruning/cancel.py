"""Stopping a solve from another thread: the engine's background prefetch runs its prunes inside
`cancellable(event)`, and the solvers' long loops call `check_cancelled()`, so a foreground request waits for a
few milliseconds of solver work instead of a whole layer (an exact OBC layer takes seconds)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()
_shutdown = threading.Event()  # set at interpreter exit (`shutdown`): every solve stops, in any thread


class Cancelled(Exception):
    """Raised inside a solve when the `cancellable` event of the calling thread is set."""


@contextmanager
def cancellable(event: threading.Event) -> Iterator[None]:
    """Within this block, `check_cancelled()` on this thread raises `Cancelled` once `event` is set."""
    previous = getattr(_local, "event", None)
    _local.event = event
    try:
        yield
    finally:
        _local.event = previous


def check_cancelled() -> None:
    """Raise `Cancelled` if this thread runs inside `cancellable(event)` and `event` is set, or the interpreter is
    exiting (`shutdown`); else nothing (a thread-local read, ~100 ns)."""
    event = getattr(_local, "event", None)
    if _shutdown.is_set() or (event is not None and event.is_set()):
        raise Cancelled


def shutdown() -> None:
    """Make every later `check_cancelled()` raise, in every thread: at exit, a prune still running in a daemon
    thread (a server's script thread or a background prefetch) stops at its next check instead of running torch
    ops while Python finalises, which aborts the process."""
    _shutdown.set()
