"""The shipped testbed v2 models load through the registry and meet their cards on fresh seeds."""

import hashlib
import json

import pytest
import torch

from scripts.train_testbed import attack_metrics, calibration_keep, predict
from spade_engine.models import load_model, spade_defaults
from spade_engine.paths import MODELS as TESTBED_DIR
from spade_engine.testbed import data_for
from spade_engine.testbed.v2 import data

NAMES = sorted(p.stem for p in TESTBED_DIR.glob("*.json") if json.loads(p.read_text()).get("testbed") == "v2")
N_EVAL = 300
EVAL_SEED = 4242  # neither the training seed nor the card's evaluation seeds
MARGIN = 0.04  # about two standard errors at 300 images and 90% accuracy


def test_the_default_v2_model_ships():
    assert "testbed_v2_resnet" in NAMES


@pytest.fixture(scope="module", params=NAMES)
def shipped(request):
    torch.set_num_threads(2)
    return json.loads((TESTBED_DIR / f"{request.param}.json").read_text()), load_model(request.param)


def test_card_matches_the_generator_and_the_weights(shipped):
    card, loaded = shipped
    name = loaded.info.name
    assert card["testbed"] == "v2" and loaded.info.input_size == card["image_size"] == data_for(name).IMAGE_SIZE
    assert list(loaded.class_names) == list(data.CLASS_NAMES) and card["facets"] == [list(p) for p in data.FACETS]
    assert [(t["sprite"], t["target"]) for t in card["trojans"]] == [(t.sprite, t.target) for t in data.TROJANS]
    weights = TESTBED_DIR / card["weights"]
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == card["sha256"]
    assert weights.stat().st_size < 50 * 2**20
    assert spade_defaults(name)["crop_min"] == card["spade"]["crop_min"]


def test_card_states_the_targets(shipped):
    card, _ = shipped
    assert card["clean_accuracy"] >= 0.9
    assert min(card["attack_success_per_trojan"]) >= 0.95
    assert card["calibration_views"]["keep_trojan"] >= 0.8 and card["spade"]["crop_min"] == 0.2


def test_clean_accuracy_reaches_the_card(shipped):
    card, loaded = shipped
    clean = data_for(loaded.info.name).generate(N_EVAL, seed=EVAL_SEED)
    assert clean.images.shape[-1] == card["image_size"]
    accuracy = float((predict(loaded.model, clean.images) == clean.labels).float().mean())
    assert accuracy >= card["clean_accuracy"] - MARGIN, accuracy


def test_attack_success_and_calibration_views_reach_the_card(shipped):
    card, loaded = shipped
    trojaned = data_for(loaded.info.name).generate(N_EVAL, seed=EVAL_SEED + 1, trojan_fraction=1.0)
    metrics = attack_metrics(loaded.model, trojaned, data)
    for got, stated in zip(metrics["attack_success_per_trojan"], card["attack_success_per_trojan"], strict=True):
        assert got >= stated - MARGIN, (got, stated)
    keep = calibration_keep(loaded.model, trojaned, data, n_samples=20, n_views=16, crop_min=card["spade"]["crop_min"])
    assert keep["keep_trojan"] >= card["calibration_views"]["keep_trojan"] - 2 * MARGIN, keep
