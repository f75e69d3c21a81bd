"""`testbed.data_for` picks a model's generator from its card; `trojan_targets` reads either generator's batches."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from spade_engine import models, testbed
from spade_engine.testbed import data as v1
from spade_engine.testbed.v2 import data as v2


def test_cards_choose_the_generator(monkeypatch):
    assert testbed.data_for("testbed_resnet") is v1 and testbed.data_for(None) is v1
    assert testbed.data_for("no-such-model") is v1
    monkeypatch.setattr(models, "get_info", lambda name: SimpleNamespace(card={"testbed": "v2"}))
    assert testbed.data_for("testbed_v2_resnet") is v2


def test_trojan_targets_of_both_generators():
    b1 = v1.generate(16, seed=3, trojan_fraction=0.5)
    t1 = testbed.trojan_targets(b1)
    assert torch.equal(t1[b1.is_trojan], torch.full((int(b1.is_trojan.sum()),), v1.TROJAN_TARGET))
    assert (t1[~b1.is_trojan] == -1).all()
    b2 = v2.generate(16, seed=3, trojan_fraction=0.5)
    t2 = testbed.trojan_targets(b2)
    assert b2.is_trojan.any() and torch.equal(t2, b2.trojan_target)
    assert set(t2[b2.is_trojan].tolist()) <= {t.target for t in v2.TROJANS} and (t2[~b2.is_trojan] == -1).all()
