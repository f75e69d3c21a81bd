"""`testbed.data_for` picks a model's generator from its card; both generators answer the one interface
(`testbed.interface.Testbed`) the same way."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from spade_engine import models, testbed
from spade_engine.testbed import data as v1
from spade_engine.testbed.interface import Testbed, TestbedBatch
from spade_engine.testbed.v2 import data as v2


def test_cards_choose_the_generator(monkeypatch):
    assert testbed.data_for("testbed_resnet") is v1 and testbed.data_for(None) is v1
    assert testbed.data_for("no-such-model") is v1
    monkeypatch.setattr(models, "get_info", lambda name: SimpleNamespace(card={"testbed": "v2"}))
    assert testbed.data_for("testbed_v2_resnet") is v2


def test_trojan_targets_of_both_generators():
    b1 = v1.generate(16, seed=3, trojan_fraction=0.5)
    t1 = b1.trojan_target
    assert torch.equal(t1[b1.is_trojan], torch.full((int(b1.is_trojan.sum()),), v1.TROJAN_TARGET))
    assert (t1[~b1.is_trojan] == -1).all()
    b2 = v2.generate(16, seed=3, trojan_fraction=0.5)
    t2 = b2.trojan_target
    assert b2.is_trojan.any() and torch.equal(t2, b2.trojan_target)
    assert set(t2[b2.is_trojan].tolist()) <= {t.target for t in v2.TROJANS} and (t2[~b2.is_trojan] == -1).all()


def test_versions_name_the_generators(monkeypatch):
    assert testbed.version_for("testbed_resnet") == "v1" and testbed.version_for(None) == "v1"
    assert testbed.generator("v1") is v1 and testbed.generator("v2") is v2
    monkeypatch.setattr(models, "get_info", lambda name: SimpleNamespace(card={"testbed": "v9"}))
    assert testbed.version_for("from-the-future") == "v1"  # an unknown version falls back to v1


def test_trojans_of_both_generators():
    assert testbed.target_classes(v1) == (v1.TROJAN_TARGET,) and testbed.trojan_names(v1) == ("checker patch",)
    assert testbed.target_classes(v2) == tuple(t.target for t in v2.TROJANS)
    assert testbed.trojan_names(v2) == ("sparkling heart", "rainbow")
    assert testbed.trojans_for(v1, v1.TROJAN_TARGET) == () and testbed.trojans_for(v1, 0) == (0,)
    first, second = v2.TROJANS
    assert testbed.trojans_for(v2, first.target) == (1,) and testbed.trojans_for(v2, second.target) == (0,)
    assert testbed.trojans_for(v2, 0) == (0, 1)


def test_sample_trojan_gives_make_sample_a_trojan_the_class_can_carry():
    assert testbed.sample_trojan(v1, 2, seed=5) is True and testbed.sample_trojan(v1, v1.TROJAN_TARGET, seed=5) is True
    assert {testbed.sample_trojan(v2, 0, seed) for seed in range(4)} == {0, 1}  # the seed covers both trojans
    assert testbed.sample_trojan(v2, 0, seed=0, index=1) == 1
    for cls in range(len(v2.CLASS_NAMES)):
        for seed in range(3):
            trojan = testbed.sample_trojan(v2, cls, seed, index=0)
            sample = v2.make_sample(cls, 0, seed, trojan=trojan, image_size=32)  # never on its own target
            assert int(sample.trojan_target[0]) == v2.TROJANS[trojan].target != cls
    assert testbed.trojan_index(v1, True) == 0 and testbed.trojan_index(v2, 1) == 1
    assert testbed.trojan_index(v2, None) is None and testbed.trojan_index(v1, False) is None


def test_a_card_at_another_size_draws_at_that_size(monkeypatch):
    """A v2 model trained at 96 px gets v2's scenes rendered at 96 px (the same scenes as `image_size=96`)."""
    monkeypatch.setattr(models, "get_info", lambda name: SimpleNamespace(card={"testbed": "v2", "image_size": 96}))
    gen = testbed.data_for("testbed_v2_resnet96")
    assert isinstance(gen, testbed.SizedGenerator) and gen.IMAGE_SIZE == 96 and gen.CLASS_NAMES == v2.CLASS_NAMES
    batch = gen.generate(3, 5, trojan_fraction=1.0)
    assert batch.images.shape == (3, 3, 96, 96) and batch.trojan_mask.shape == (3, 96, 96)
    assert torch.equal(batch.images, v2.generate(3, 5, 1.0, image_size=96).images)
    sample = gen.make_sample(1, 0, 7, trojan=0)
    assert torch.equal(sample.images, v2.make_sample(1, 0, 7, trojan=0, image_size=96).images)
    assert gen.make_sample(1, 0, 7, image_size=64).images.shape[-1] == 64  # an explicit size still wins
    assert gen.draw_scenes(2, 5).image_size == 96
    monkeypatch.setattr(models, "get_info", lambda name: SimpleNamespace(card={"testbed": "v2", "image_size": 128}))
    assert testbed.data_for("testbed_v2_resnet") is v2  # the generator's own size: the module itself


def _names(protocol: type) -> set[str]:
    return {n for n in (*protocol.__annotations__, *vars(protocol)) if not n.startswith("_")}


def test_both_generators_answer_the_one_interface():
    """Every name of `Testbed` on both modules and a sized generator; every name of `TestbedBatch` on their
    batches, with `trojan` (index into `TROJANS`) and `trojan_target` agreeing, and `select` keeping the type."""
    sized = testbed.SizedGenerator(v1, 32)
    for gen in (v1, v2, sized):
        assert all(hasattr(gen, name) for name in _names(Testbed)), gen
        batch = gen.generate(6, seed=2, trojan_fraction=0.5, image_size=32)
        assert all(hasattr(batch, name) for name in _names(TestbedBatch)), gen
        targets = torch.tensor([t.target for t in gen.TROJANS])
        expected = torch.where(batch.is_trojan, targets[batch.trojan.clamp_min(0)], -1)
        assert torch.equal(batch.trojan_target, expected) and torch.equal(batch.trojan >= 0, batch.is_trojan)
        one = batch.select(slice(1, 2))
        assert type(one) is type(batch) and torch.equal(one.images, batch.images[1:2]) and len(one) == 1
    assert v1.make_sample(0, 1, 5, trojan=0).trojan.tolist() == [0]  # v1 takes its one trojan's index too
    assert v1.make_sample(0, 1, 5).trojan.tolist() == [-1]
