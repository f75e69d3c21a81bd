"""pages/ui/cache.py: shared resources, the per-model lock around saliency, cache keys."""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from pages.ui import cache
from tests.app.conftest import tiny_net


def test_one_lock_and_one_engine_per_model():
    assert cache.model_lock("a") is cache.model_lock("a")
    assert cache.model_lock("a") is not cache.model_lock("b")
    model = tiny_net(3).eval()
    engine = cache.get_engine("m", "cpu", model)
    assert cache.get_engine("m", "cpu", tiny_net(3)) is engine  # keyed by name and device, not by the object


def test_saliency_runs_under_the_model_lock_and_is_cached(monkeypatch):
    import spade_engine.saliency as saliency

    calls, overlap, running = [], [], threading.Event()

    def fake_attribute(name, model, x, target, reduction=None):
        assert cache.model_lock("m")._is_owned()  # noqa: SLF001 - the lock is held by this thread
        overlap.append(running.is_set())
        running.set()
        time.sleep(0.05)
        running.clear()
        calls.append((name, target))
        return np.full(x.shape[-2:], float(target), np.float32)

    monkeypatch.setattr(saliency, "attribute", fake_attribute)
    model, x = tiny_net(3).eval(), torch.rand(1, 3, 8, 8)
    threads = [
        threading.Thread(target=cache.saliency, args=("m", "h", v, "Saliency", 1, model, x)) for v in ("dense", "spade")
    ]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not any(overlap), "two saliency runs on one model overlapped"
    again = cache.saliency("m", "h", "dense", "Saliency", 1, model, x)
    assert len(calls) == 2 and again.shape == (8, 8) and float(again[0, 0]) == 1.0  # third call from the cache
    cache.saliency("m", "h", "dense", "Saliency", 2, model, x)
    assert len(calls) == 3  # another target is another entry


def test_examples_are_those_of_the_model_generator(monkeypatch):
    """v1 models, checkpoints and None get the photos and v1's samples (as before v2); the ImageNet networks
    (packaged, torchvision, timm) the photos only; a v2 model the photos and v2's 128 px samples; an uploaded
    example of either generator is recognised."""
    from types import SimpleNamespace

    from spade_engine import models

    every = cache.all_examples()
    photos = {f for f, e in every.items() if e["class"] is None}
    v1 = {f for f, e in every.items() if e.get("testbed") == "v1"}
    v2 = {f for f, e in every.items() if e.get("testbed") == "v2"}
    assert photos and v1 and v2 and photos | v1 | v2 == set(every)
    assert (
        set(cache.examples()) == set(cache.examples("testbed_resnet")) == set(cache.examples("ckpt:x")) == photos | v1
    )
    assert set(cache.examples("resnet18")) == set(cache.examples("efficientnet_lite0")) == photos
    assert list(cache.examples())[: len(v1)] == [f for f in every if f in v1]  # v1's first, in index order
    real = models.get_info
    monkeypatch.setattr(
        models,
        "get_info",
        lambda n: SimpleNamespace(card={"testbed": "v2"}, family="testbed") if n == "v2m" else real(n),
    )
    assert set(cache.examples("v2m")) == photos | v2
    assert all(e["testbed"] == "v2" and e["class_name"] for f, e in cache.examples("v2m").items() if f in v2)
    assert {m["file"] for m in cache.example_by_digest().values()} == set(every)


def test_exact_solver_prefetch_waits_for_the_page_then_makes_the_neighbours_hits():
    """With OBC, `run_spade` starts no background prune (it would slow the page's maps) unless deferred; the
    page's `run.prefetch()` then pre-prunes sparsity +-1%, and a one-step slider move is a cache hit."""
    from spade_engine.engine import PruneConfig

    cache.st.cache_resource.clear()
    model, x = tiny_net(3).eval(), torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    config = PruneConfig(sparsity=0.5, solver="obc")
    run = cache.run_spade("obc-net", "cpu", model, x, 8, 0, config)  # not deferred: OBC is never prefetched
    engine = cache.get_engine("obc-net", "cpu", model)
    assert run.pruned_now and engine._prefetch_thread is None
    run = cache.run_spade("obc-net", "cpu", model, x, 8, 0, config, defer_prefetch=True)
    assert not run.pruned_now and engine._prefetch_thread is None  # nothing starts before the page is drawn
    run.prefetch()
    engine._prefetch_thread.join(timeout=120)
    assert engine.stats.get("prefetched") == 2
    moved = cache.run_spade("obc-net", "cpu", model, x, 8, 0, PruneConfig(sparsity=0.51, solver="obc"))
    assert not moved.pruned_now  # the slider's move was pre-pruned
    direct = cache.get_engine("obc-direct", "cpu", model)
    _, expected = direct.prune(direct.prepare(x, n_aug=8, seed=0), PruneConfig(sparsity=0.51, solver="obc"))
    torch.testing.assert_close(moved.result.pruned_logits, expected.pruned_logits)


def test_a_wait_for_the_background_pre_prune_is_not_called_a_cache_hit():
    from types import SimpleNamespace

    def run(seconds):
        return cache.SpadeRun(None, SimpleNamespace(timings={}), False, False, seconds).summary()

    assert run(0.004) == "Reused cached trace and pruned network (4 ms)"
    assert "waited 22.8 s for the background pre-prune" in run(22.8)
