"""Study sample specs draw testbed images from the study model's own generator (v1 or v2)."""

from types import SimpleNamespace

import torch

from spade_engine import models
from spade_engine.study.samples import describe, load_sample, patch_items
from spade_engine.study.samples import testbed_spec as spec_of  # not collected as a test
from spade_engine.testbed import data as v1
from spade_engine.testbed.v2 import data as v2


def _loaded(name: str, size: int) -> SimpleNamespace:
    return SimpleNamespace(info=SimpleNamespace(name=name, input_size=size))  # all `load_sample` reads of a model


def test_v1_models_get_v1_samples_as_before():
    spec = spec_of(v1.TROJAN_TARGET, 1, 5, trojan=True)  # v1's patch may sit on its own target class
    x = load_sample(spec, _loaded("testbed_resnet", 64))
    assert torch.equal(x, v1.make_sample(v1.TROJAN_TARGET, 1, 5, True).images[0])
    assert describe(spec).endswith(", trojan") and spec["trojan"] is True


def test_v2_models_get_v2_samples_with_a_trojan_their_class_can_carry(monkeypatch):
    monkeypatch.setattr(models, "get_info", lambda name: SimpleNamespace(card={"testbed": "v2"}))
    target = v2.TROJANS[0].target
    x = load_sample(spec_of(target, 0, 7, trojan=True), _loaded("testbed_v2_resnet", 128))
    assert x.shape == (3, 128, 128)
    assert torch.equal(x, v2.make_sample(target, 0, 7, trojan=1).images[0])  # not the trojan of its own class
    clean = load_sample(spec_of(2, 1, 7), _loaded("testbed_v2_resnet", 128))
    assert torch.equal(clean, v2.make_sample(2, 1, 7).images[0])
    chosen = load_sample(spec_of(2, 1, 7, trojan=1), _loaded("testbed_v2_resnet", 128))
    assert torch.equal(chosen, v2.make_sample(2, 1, 7, trojan=1).images[0])
    assert describe(spec_of(2, 1, 7, trojan=1)).endswith(", trojan 1")


def test_patch_items_load_on_both_generators(monkeypatch):
    items = patch_items(6, seed=3, trojan_fraction=0.5)
    for item in items:
        assert load_sample(item["sample"], _loaded("testbed_resnet", 32)).shape == (3, 32, 32)
    monkeypatch.setattr(models, "get_info", lambda name: SimpleNamespace(card={"testbed": "v2"}))
    for item in items:
        assert load_sample(item["sample"], _loaded("testbed_v2_resnet", 48)).shape == (3, 48, 48)
