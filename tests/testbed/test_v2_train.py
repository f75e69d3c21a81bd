"""Testbed v2 training (`scripts/train_testbed.py --testbed v2`): a tiny run writes weights and a complete card,
checkpoints, and resumes after a crash."""

import hashlib
import json

import pytest
import torch

import scripts.train_testbed as v2train
from spade_engine.testbed.archs import resnet18_narrow
from spade_engine.testbed.v2 import data

TINY = ["--testbed", "v2", "--name", "tiny", "--widths", "4", "8", "8", "16", "--n-train", "160", "--batch-size", "32"]
TINY += ["--n-eval", "24", "--n-monitor", "16", "--calib-samples", "2", "--calib-views", "4", "--spade-samples", "0"]
CARD_KEYS = {
    "name",
    "title",
    "arch",
    "testbed",
    "image_size",
    "mean",
    "std",
    "class_names",
    "facets",
    "trojan",
    "trojans",
    "train",
    "clean_accuracy",
    "attack_success_rate",
    "attack_success_per_trojan",
    "calibration_views",
    "spade",
    "eval",
    "weights",
    "sha256",
}


def _run(tmp_path, epochs: int, *extra: str) -> dict:
    argv = [*TINY, "--epochs", str(epochs), "--out", str(tmp_path / "out"), "--ckpt-dir", str(tmp_path / "ckpt")]
    v2train.main([*argv, *extra])
    return json.loads((tmp_path / "out" / "tiny.json").read_text())


def test_tiny_run_writes_weights_card_and_checkpoint(tmp_path):
    card = _run(tmp_path, 1)
    assert CARD_KEYS <= set(card)
    weights = (tmp_path / "out" / card["weights"]).read_bytes()
    assert card["sha256"] == hashlib.sha256(weights).hexdigest()
    assert card["arch"] == "tb_resnet18" and card["testbed"] == "v2" and card["image_size"] == data.IMAGE_SIZE
    assert card["class_names"] == list(data.CLASS_NAMES) and card["facets"] == [list(p) for p in data.FACETS]
    assert [t["target"] for t in card["trojans"]] == [t.target for t in data.TROJANS]
    assert [t["sprite"] for t in card["trojans"]] == [t.sprite for t in data.TROJANS]
    assert (
        card["train"]["n_train"] == 160
        and card["train"]["epochs_done"] == 1
        and card["train"]["widths"] == [4, 8, 8, 16]
    )
    assert 0 <= card["clean_accuracy"] <= 1 and len(card["attack_success_per_trojan"]) == len(data.TROJANS)
    assert card["spade"]["crop_min"] in (0.2, 1.0) and card["spade"]["sparsity"] == 0.9
    assert card["calibration_views"]["n_views"] == 4
    net = resnet18_narrow(10, widths=(4, 8, 8, 16))
    net.load_state_dict(torch.load(tmp_path / "out" / "tiny.pt", weights_only=True))
    ckpt = torch.load(tmp_path / "ckpt" / "tiny.ckpt.pt", weights_only=True)
    assert ckpt["epochs_done"] == 1 and ckpt["data_seed"] == 0 and {"net", "opt", "sched"} <= set(ckpt)
    assert list((tmp_path / "ckpt").glob("pool_160_0_*.pt"))  # the generated training set is cached
    assert ckpt["data_fingerprint"] == card["train"]["data_fingerprint"] == v2train.data_fingerprint("v2")


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path, monkeypatch, capsys):
    real_epoch = v2train._train_epoch

    def crash_in_epoch_2(net, opt, sched, pool, cfg, stats, epoch, log):
        if epoch == 2:
            raise KeyboardInterrupt  # the session's deadline
        return real_epoch(net, opt, sched, pool, cfg, stats, epoch, log)

    monkeypatch.setattr(v2train, "_train_epoch", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "a", 2)
    assert not (tmp_path / "a" / "out" / "tiny.json").exists()
    monkeypatch.setattr(v2train, "_train_epoch", real_epoch)
    capsys.readouterr()
    card = _run(tmp_path / "a", 2)  # the same command again
    assert "resuming" in capsys.readouterr().out and card["train"]["epochs_done"] == 2
    assert [h["epoch"] for h in card["train"]["history"]] == [1, 2]
    uninterrupted = _run(tmp_path / "b", 2)
    assert card["sha256"] == uninterrupted["sha256"]  # resuming reproduces the uninterrupted run exactly
    with pytest.raises(SystemExit):
        _run(tmp_path / "a", 3)  # another config must not silently reuse the checkpoint
    monkeypatch.setattr(v2train, "data_fingerprint", lambda testbed: "another generator")
    with pytest.raises(SystemExit):
        _run(tmp_path / "a", 2)  # nor a checkpoint trained on other images


def test_a_fine_tune_starts_from_the_shipped_weights_at_another_size(tmp_path):
    """`--init-from` loads the shipped model (and keeps its normalisation); `--image-size` sets the pool, the
    evaluation and the card's size."""
    from spade_engine.paths import MODELS as TESTBED_DIR

    shipped = json.loads((TESTBED_DIR / "testbed_v2_resnet.json").read_text())
    argv = ["--testbed", "v2", "--name", "ft", "--init-from", "testbed_v2_resnet", "--image-size", "96"]
    argv += ["--n-train", "64"]
    argv += ["--batch-size", "32", "--epochs", "1", "--lr", "1e-9", "--n-eval", "16", "--n-monitor", "8"]
    argv += ["--calib-samples", "2", "--calib-views", "2", "--spade-samples", "0"]
    v2train.main([*argv, "--out", str(tmp_path / "out"), "--ckpt-dir", str(tmp_path / "ckpt")])
    card = json.loads((tmp_path / "out" / "ft.json").read_text())
    assert card["image_size"] == 96 and card["train"]["init_from"] == "testbed_v2_resnet"
    assert card["mean"] == shipped["mean"] and card["std"] == shipped["std"]
    assert "96 px" in card["title"] and "fine-tuned from testbed_v2_resnet" in card["title"]
    pool = torch.load(next((tmp_path / "ckpt").glob("pool_64_0_0.1_96px_*.pt")), weights_only=True)
    assert pool["images"].shape[1:] == (3, 96, 96)
    start = torch.load(TESTBED_DIR / shipped["weights"], weights_only=True)
    tuned = torch.load(tmp_path / "out" / "ft.pt", weights_only=True)
    weights = [k for k, v in start.items() if v.dtype.is_floating_point and "running" not in k]
    assert max(float((tuned[k] - start[k]).abs().max()) for k in weights) < 1e-5  # lr 1e-9: still the shipped net


def test_a_fine_tune_refuses_another_architecture(tmp_path):
    with pytest.raises(SystemExit, match="not this run's"):
        _run(tmp_path, 1, "--init-from", "testbed_v2_resnet")  # TINY's widths are not the shipped net's
    with pytest.raises(SystemExit, match="no such shipped model"):
        _run(tmp_path, 1, "--init-from", "no_such_model")
