"""The shipped testbed v2 model (once trained) loads through the registry and meets its card on fresh seeds."""

import hashlib
import json

import pytest
import torch

from spade_engine.models import TESTBED_DIR, load_model, spade_defaults
from spade_engine.testbed.train import predict
from spade_engine.testbed.v2 import data
from spade_engine.testbed.v2.train import attack_metrics, calibration_keep

NAME = "testbed_v2_resnet"
WEIGHTS, CARD = TESTBED_DIR / f"{NAME}.pt", TESTBED_DIR / f"{NAME}.json"
N_EVAL = 300
EVAL_SEED = 4242  # neither the training seed nor the card's evaluation seeds
MARGIN = 0.04  # about two standard errors at 300 images and 90% accuracy


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(2)
    return json.loads(CARD.read_text()), load_model(NAME)


def test_card_matches_the_generator_and_the_weights(shipped):
    card, loaded = shipped
    assert card["testbed"] == "v2" and loaded.info.input_size == card["image_size"] == data.IMAGE_SIZE
    assert list(loaded.class_names) == list(data.CLASS_NAMES) and card["facets"] == [list(p) for p in data.FACETS]
    assert [(t["sprite"], t["target"]) for t in card["trojans"]] == [(t.sprite, t.target) for t in data.TROJANS]
    assert hashlib.sha256(WEIGHTS.read_bytes()).hexdigest() == card["sha256"]
    assert WEIGHTS.stat().st_size < 50 * 2**20
    assert spade_defaults(NAME)["crop_min"] == card["spade"]["crop_min"]


def test_card_states_the_targets(shipped):
    card, _ = shipped
    assert card["clean_accuracy"] >= 0.9
    assert min(card["attack_success_per_trojan"]) >= 0.95
    assert card["calibration_views"]["keep_trojan"] >= 0.8 and card["spade"]["crop_min"] == 0.2


def test_clean_accuracy_reaches_the_card(shipped):
    card, loaded = shipped
    clean = data.generate(N_EVAL, seed=EVAL_SEED)
    accuracy = float((predict(loaded.model, clean.images) == clean.labels).float().mean())
    assert accuracy >= card["clean_accuracy"] - MARGIN, accuracy


def test_attack_success_and_calibration_views_reach_the_card(shipped):
    card, loaded = shipped
    trojaned = data.generate(N_EVAL, seed=EVAL_SEED + 1, trojan_fraction=1.0)
    metrics = attack_metrics(loaded.model, trojaned)
    for got, stated in zip(metrics["attack_success_per_trojan"], card["attack_success_per_trojan"], strict=True):
        assert got >= stated - MARGIN, (got, stated)
    keep = calibration_keep(loaded.model, trojaned, n_samples=20, n_views=16, crop_min=card["spade"]["crop_min"])
    assert keep["keep_trojan"] >= card["calibration_views"]["keep_trojan"] - 2 * MARGIN, keep
