"""Bounded on-disk caches shared by every session and process of a server: least-recently-used files are
removed once the folder holds more than its byte bound, every file is written atomically under a unique
temporary name, and one lock per key makes concurrent requests for the same missing entry compute it once.

Used by the feature-visualisation cache (`featvis.render_cached`) and the sparse-layer cache
(`sparse_layer.io`). The bound of each cache folder is `$SPADE_DISK_CACHE_MB` megabytes (default
`DEFAULT_MAX_MB`). "Recently used" is the file's modification time, refreshed on every hit.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

ENV_MAX_MB = "SPADE_DISK_CACHE_MB"
DEFAULT_MAX_MB = 512
TEMP_PREFIX = ".tmp-"
STALE_TEMP_SECONDS = 3600  # a temporary file this old belongs to a writer that died: removed on eviction


def max_bytes_from_env(default_mb: float = DEFAULT_MAX_MB) -> int:
    """The per-folder bound in bytes: `$SPADE_DISK_CACHE_MB` (megabytes, > 0), else `default_mb`.

    Raises:
        ValueError: the variable is set but not a positive number (the message names it).
    """
    raw = os.environ.get(ENV_MAX_MB, "").strip()
    if not raw:
        return int(default_mb * 2**20)
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if mb <= 0:
        raise ValueError(f"{ENV_MAX_MB} must be a positive number of megabytes (got {raw!r}).")
    return int(mb * 2**20)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file through `write(binary file)` into a unique temporary file next to it, then rename it into
    place (`os.replace`): readers see the old file or the whole new one, and concurrent writers of the same
    path (threads or processes) never share a temporary file.

    Raises:
        Whatever `write` raises; the temporary file is removed then.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class KeyedLocks:
    """One lock per key, created on first use and dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, list] = {}  # key -> [lock, holders + waiters]

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


class DiskCache:
    """A folder of cache files named by key, bounded in bytes, least recently used evicted first.

    Args:
        root: the folder (created on first write).
        suffix: file-name suffix of the entries (".npz", ".pt").
        max_bytes: the bound; None reads `$SPADE_DISK_CACHE_MB` at every eviction.
    """

    def __init__(self, root: str | Path, suffix: str, max_bytes: int | None = None):
        self.root, self.suffix, self._max_bytes = Path(root).expanduser(), suffix, max_bytes
        self.locks = KeyedLocks()

    @property
    def max_bytes(self) -> int:
        return self._max_bytes if self._max_bytes is not None else max_bytes_from_env()

    def path(self, key: str) -> Path:
        """Where the entry `key` (a file stem: letters, digits) lives."""
        return self.root / f"{key}{self.suffix}"

    def hit(self, key: str) -> Path | None:
        """The entry's path, marked as just used, or None when it is not stored."""
        path = self.path(key)
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        return path

    def put(self, key: str, write: Callable[[IO[bytes]], None]) -> Path:
        """Store the entry atomically (`atomic_write`), then evict down to the bound (never the new entry)."""
        path = atomic_write(self.path(key), write)
        self.evict(keep=path)
        return path

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, path) of every stored entry, least recently used first."""
        found = []
        for p in self.root.glob(f"*{self.suffix}") if self.root.is_dir() else []:
            if p.name.startswith(TEMP_PREFIX):
                continue
            try:
                st = p.stat()
            except FileNotFoundError:  # evicted by another process meanwhile
                continue
            found.append((st.st_mtime, st.st_size, p))
        return sorted(found)

    def size(self) -> int:
        """Bytes held by the stored entries."""
        return sum(size for _, size, _ in self.entries())

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Remove least-recently-used entries until the folder holds at most `max_bytes` (and temporary files
        of writers that died); returns the removed entries."""
        self._remove_stale_temps()
        entries, limit, removed = self.entries(), self.max_bytes, []
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= limit:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
            removed.append(path)
        return removed

    def _remove_stale_temps(self) -> None:
        if not self.root.is_dir():
            return
        cutoff = time.time() - STALE_TEMP_SECONDS
        for p in self.root.glob(f"{TEMP_PREFIX}*"):
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink(missing_ok=True)
            except FileNotFoundError:
                continue
