"""The feature-visualisation disk cache: bounded in bytes (LRU) and one optimisation per missing entry when two
sessions ask at once."""

from __future__ import annotations

import threading
import time

import numpy as np

from spade_engine import disk_cache as dc
from spade_engine import featvis as fv
from tests.featvis.test_featvis import CFG


def test_featvis_cache_stays_bounded_and_one_request_computes(tiny_model, tmp_path, monkeypatch):
    """Two sessions ask for the same missing visualisation: it is optimised once. Many visualisations keep the
    folder under its bound."""
    renders = []
    real_render = fv.render

    def counting_render(*a, **k):  # noqa: ANN002, ANN003
        renders.append(1)
        time.sleep(0.2)  # hold the first computation long enough for the second request to arrive
        return real_render(*a, **k)

    monkeypatch.setattr(fv, "render", counting_render)
    kw = dict(model_name="tiny", directory=tmp_path)
    results = []
    threads = [threading.Thread(target=lambda: results.append(fv.render_cached(tiny_model, fv.channel_target("net.2", 1), CFG, **kw)))
               for _ in range(2)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(renders) == 1 and sorted(r.from_cache for r in results) == [False, True]
    np.testing.assert_array_equal(results[0].image, results[1].image)

    one = fv.disk_cache(tmp_path).size()
    monkeypatch.setenv(dc.ENV_MAX_MB, str(2.5 * one / 2**20))  # room for two and a half entries
    for channel in range(2, 7):
        fv.render_cached(tiny_model, fv.channel_target("net.2", channel), CFG, **kw)
    store = fv.disk_cache(tmp_path)
    assert store.size() <= store.max_bytes and len(store.entries()) == 2
    assert fv.render_cached(tiny_model, fv.channel_target("net.2", 6), CFG, **kw).from_cache  # the newest stay
