"""Bounded disk caches: LRU eviction by bytes, atomic writes under unique temporary names, one lock per key.
(The feature-visualisation cache's bound: tests/featvis/test_featvis_cache.py.)"""

from __future__ import annotations

import os
import threading
import time

import pytest

from spade_engine import disk_cache as dc


def _write(n: int):
    return lambda f: f.write(b"x" * n)


def test_least_recently_used_entries_go_first_and_the_bound_holds(tmp_path):
    cache = dc.DiskCache(tmp_path, ".bin", max_bytes=3000)
    for i, key in enumerate("abc"):
        cache.put(key, _write(1000))
        os.utime(cache.path(key), (1000 + i, 1000 + i))  # a, b, c used in this order
    assert cache.size() == 3000
    assert cache.hit("a") is not None  # a is now the most recently used
    cache.put("d", _write(1000))
    assert cache.hit("b") is None and {p.stem for _, _, p in cache.entries()} == {"a", "c", "d"}
    cache.put("e", _write(2500))  # a large entry evicts several, but never itself
    assert [p.stem for _, _, p in cache.entries()] == ["e"] and cache.size() <= 3000
    cache.put("f", _write(4000))  # larger than the bound on its own: kept (it was just asked for), others go
    assert [p.stem for _, _, p in cache.entries()] == ["f"]


def test_bound_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(dc.ENV_MAX_MB, "0.001")
    cache = dc.DiskCache(tmp_path, ".bin")
    assert cache.max_bytes == int(0.001 * 2**20)
    for key in "abcd":
        cache.put(key, _write(400))
    assert cache.size() <= cache.max_bytes and len(cache.entries()) == 2
    for bad in ("0", "-3", "lots"):
        monkeypatch.setenv(dc.ENV_MAX_MB, bad)
        with pytest.raises(ValueError, match="SPADE_DISK_CACHE_MB must be a positive number"):
            dc.max_bytes_from_env()


def test_concurrent_writers_of_one_path_use_unique_temporary_files(tmp_path):
    """Eight threads write the same file at once, each with its own content: the result is one whole file
    (never a mix), and no temporary file is left behind."""
    path, errors = tmp_path / "entry.bin", []
    barrier = threading.Barrier(8)

    def writer(k: int) -> None:
        def write(f) -> None:  # noqa: ANN001
            barrier.wait()  # everyone is inside a write at the same moment
            for _ in range(50):
                f.write(bytes([k]) * 1000)

        try:
            dc.atomic_write(path, write)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    data = path.read_bytes()
    assert errors == [] and len(data) == 50_000 and len(set(data)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["entry.bin"]


def test_a_failed_write_leaves_nothing(tmp_path):
    def boom(f) -> None:  # noqa: ANN001
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        dc.atomic_write(tmp_path / "x.bin", boom)
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_files_are_removed(tmp_path):
    cache = dc.DiskCache(tmp_path, ".bin", max_bytes=10**6)
    stale, fresh = tmp_path / f"{dc.TEMP_PREFIX}old.bin", tmp_path / f"{dc.TEMP_PREFIX}new.bin"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    old = time.time() - 2 * dc.STALE_TEMP_SECONDS
    os.utime(stale, (old, old))
    cache.put("a", _write(10))
    assert not stale.exists() and fresh.exists()  # a live writer's file is left alone


def test_keyed_locks_serialise_one_key_only_and_are_dropped():
    locks, inside, peak, order = dc.KeyedLocks(), [0], [0], []
    guard = threading.Lock()

    def work(key: str) -> None:
        with locks.hold(key):
            with guard:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.05)
            order.append(key)
            with guard:
                inside[0] -= 1

    threads = [threading.Thread(target=work, args=(k,)) for k in ("a", "a", "a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2  # at most one "a" and one "b" at a time
    assert len(locks) == 0  # no lock is kept once nobody uses it
