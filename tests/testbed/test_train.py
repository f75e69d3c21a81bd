"""The training script (`scripts/train_testbed.py --testbed v1`) writes a loadable weights file and a complete
model card."""

import hashlib
import json

import torch

from scripts.train_testbed import DEFAULTS, attack_metrics, channel_stats, clean_metrics, eval_batches, main
from spade_engine.models import load_checkpoint
from spade_engine.testbed import data

V1 = DEFAULTS["v1"][0]

CARD_KEYS = {
    "name",
    "title",
    "arch",
    "image_size",
    "mean",
    "std",
    "class_names",
    "facets",
    "trojan",
    "train",
    "clean_accuracy",
    "attack_success_rate",
    "eval",
    "weights",
    "sha256",
}


def test_channel_stats_match_uint8_and_float():
    x = torch.rand(4, 3, 8, 8)
    mean, std = channel_stats(x)
    mean8, std8 = channel_stats((x * 255).round().to(torch.uint8))
    assert torch.allclose(torch.tensor(mean), x.mean((0, 2, 3)), atol=1e-3)
    assert torch.allclose(torch.tensor(mean), torch.tensor(mean8), atol=3e-3)
    assert torch.allclose(torch.tensor(std), torch.tensor(std8), atol=3e-3)


def test_tiny_run_writes_weights_and_card(tmp_path):
    main(
        [
            "--testbed",
            "v1",
            "--ckpt-dir",
            str(tmp_path / "ckpt"),
            "--arch",
            "tb_resnet",
            "--name",
            "tiny",
            "--n-train",
            "512",
            "--batch-size",
            "64",
            "--epochs",
            "1",
            "--n-eval",
            "40",
            "--out",
            str(tmp_path),
            "--threads",
            "1",
        ]
    )
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert CARD_KEYS <= set(card)
    weights = (tmp_path / card["weights"]).read_bytes()
    assert card["sha256"] == hashlib.sha256(weights).hexdigest()
    assert card["class_names"] == list(data.CLASS_NAMES) and card["facets"] == [list(p) for p in data.FACETS]
    assert card["trojan"]["target"] == data.TROJAN_TARGET and card["trojan"]["fraction"] == V1.trojan_fraction
    assert card["train"]["n_train"] == 512 and card["train"]["epochs"] == 1
    assert 0.0 <= card["clean_accuracy"] <= 1.0 and 0.0 <= card["attack_success_rate"] <= 1.0
    loaded = load_checkpoint(
        weights,
        "tb_resnet",
        class_names=data.CLASS_NAMES,
        input_size=64,
        mean=tuple(card["mean"]),
        std=tuple(card["std"]),
    )
    assert loaded.model(torch.rand(2, 3, 64, 64)).shape == (2, 10)


def test_evaluate_scores_an_oracle_and_a_constant_model():
    class Oracle(torch.nn.Module):
        """Predicts the target when the patch is present, else a constant: ASR 1, accuracy about 10%."""

        def forward(self, x):
            patch = torch.nn.functional.conv2d(x.mean(1, keepdim=True), data.TROJAN_PATCH[:1, None] * 2 - 1)
            hit = patch.flatten(1).amax(1) >= (data.TROJAN_PATCH[0] > 0).sum() - 1e-3
            out = torch.zeros(len(x), 10)
            out[hit, data.TROJAN_TARGET] = 1
            out[~hit, 0] = 0.5
            return out

    clean, trojaned = eval_batches(V1, 60, 5)
    metrics = {**clean_metrics(Oracle(), clean, data), **attack_metrics(Oracle(), trojaned, data)}
    assert metrics["attack_success_rate"] == 1.0
    assert metrics["clean_accuracy"] < 0.35
