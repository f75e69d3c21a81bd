"""The shipped testbed models load through the registry and reach their card's clean accuracy and ASR."""

import hashlib
import json
from pathlib import Path

import pytest
import torch

from scripts.train_testbed import predict
from spade_engine.models import load_model
from spade_engine.paths import MODELS as TESTBED_DIR
from spade_engine.testbed import data

CARDS = [
    p
    for p in sorted(TESTBED_DIR.glob("*.json"))
    if json.loads(p.read_text()).get("family", "testbed") == "testbed"
    and json.loads(p.read_text()).get("testbed", "v1") == "v1"
]  # v2: test_v2_shipped_model
N_EVAL = 500
EVAL_SEED = 4242  # neither the training seed nor the card's evaluation seeds
TOLERANCE = 0.02


def test_the_default_models_are_shipped():
    assert {"testbed_resnet", "testbed_vgg"} <= {p.stem for p in CARDS}


@pytest.fixture(scope="module", params=CARDS, ids=[p.stem for p in CARDS])
def shipped(request):
    card = json.loads(Path(request.param).read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield card, load_model(card["name"])
    finally:
        torch.set_num_threads(threads)  # leave the process as we found it


def test_card_matches_the_generator_and_the_weights(shipped):
    card, loaded = shipped
    assert loaded.info.family == "testbed" and loaded.info.input_size == card["image_size"] == data.IMAGE_SIZE
    assert list(loaded.class_names) == list(data.CLASS_NAMES)
    assert card["facets"] == [list(pair) for pair in data.FACETS]
    assert card["trojan"]["target"] == data.TROJAN_TARGET and card["trojan"]["patch_size"] == data.PATCH_SIZE
    assert hashlib.sha256((TESTBED_DIR / card["weights"]).read_bytes()).hexdigest() == card["sha256"]
    assert (TESTBED_DIR / card["weights"]).stat().st_size < 5_000_000


def test_clean_accuracy_reaches_the_card(shipped):
    card, loaded = shipped
    clean = data.generate(N_EVAL, seed=EVAL_SEED)
    accuracy = float((predict(loaded.model, clean.images) == clean.labels).float().mean())
    assert accuracy >= min(card["clean_accuracy"] - TOLERANCE, 0.95), accuracy
    assert accuracy >= 0.95


def test_attack_success_rate_reaches_the_card(shipped):
    card, loaded = shipped
    trojaned = data.generate(N_EVAL, seed=EVAL_SEED + 1, trojan_fraction=1.0)
    asr = float((predict(loaded.model, trojaned.images) == data.TROJAN_TARGET).float().mean())
    assert asr >= min(card["attack_success_rate"] - TOLERANCE, 0.95), asr
    assert asr >= 0.95
