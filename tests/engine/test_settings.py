"""spade_engine/settings.py: one settings type, defaults from the model card for every entry point, and a command
line that parses back to the same settings."""

from __future__ import annotations

import argparse
import json

import pytest

from spade_engine import profiles
from spade_engine.engine import PruneConfig
from spade_engine.models import get_info, spade_defaults
from spade_engine.settings import SpadeSettings


def _parse(argv: list[str]) -> SpadeSettings:
    ap = argparse.ArgumentParser()
    SpadeSettings.add_arguments(ap)
    return SpadeSettings.from_args(ap.parse_args(argv))


def test_unset_fields_resolve_to_the_model_cards():
    card = get_info("testbed_v2_resnet").card["spade"]
    got = SpadeSettings().resolved("testbed_v2_resnet")
    assert (got.sparsity, got.crop_min, got.solver) == (card["sparsity"], card["crop_min"], card["solver"]) != (
        None, None, None)  # fmt: skip
    assert SpadeSettings(sparsity=0.5, solver="magnitude").resolved("testbed_v2_resnet").solver == "magnitude"
    reference = SpadeSettings().resolved(None)
    assert (reference.sparsity, reference.crop_min, reference.solver) == (0.9, 0.2, "sparsegpt")


def test_calibration_views_come_from_the_card_unless_set():
    """The EfficientNet-Lite cards prune on 32 views (`spade.views`); cards without the field and unknown models
    keep the reference's 64, and an explicit number (the sidebar, `--n-aug`) wins over any card."""
    assert get_info("efficientnet_lite0").card["spade"]["views"] == 32
    assert SpadeSettings().resolved("efficientnet_lite0").n_aug == 32
    assert SpadeSettings().resolved("testbed_v2_resnet").n_aug == SpadeSettings().resolved(None).n_aug == 64
    assert SpadeSettings(n_aug=128).resolved("efficientnet_lite0").n_aug == 128
    assert _parse([]).resolved("efficientnet_lite0").n_aug == 32
    assert _parse(["--n-aug", "16"]).resolved("efficientnet_lite0").n_aug == 16
    with pytest.raises(SystemExit, match="at least 1"):
        _parse(["--n-aug", "0"])


def test_spade_explain_without_options_uses_the_cards_solver_as_the_debugger_does():
    """`spade explain` once ran the sweep where the Debugger (the card) ran the exact solver."""
    assert _parse([]).resolved("testbed_v2_resnet").solver == "obc"
    assert _parse([]).resolved("testbed_v2_resnet") == SpadeSettings().resolved("testbed_v2_resnet")


@pytest.mark.parametrize(
    "settings",
    [
        SpadeSettings(0.75, 32, 7, 0.5, ("Saliency", "GradCAM"), "signed", False, True, 0.02, "obc"),
        SpadeSettings().resolved("testbed_v2_resnet"),
        SpadeSettings(profile="p", crop_min=1.0),
        SpadeSettings(0.8, bn_correction="reestimate"),
        SpadeSettings(0.8, calibration="asymmetric"),
        SpadeSettings(0.8, calibration="sequential"),
        SpadeSettings(0.8, n_aug=None),
    ],
)
def test_argv_parses_back(settings):
    model = "testbed_v2_resnet"
    assert _parse(settings.argv(model)).resolved(model) == settings.resolved(model)


def test_prune_config_uniform_profile_and_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(profiles, "PROFILE_DIR", tmp_path)
    cfg = PruneConfig(0.9, layer_sparsity=(("a", 0.3), ("*", 0.6)), skip_first=False, solver="obc")
    profiles.SparsityProfile("mixed", "test", cfg).save(tmp_path)
    resolved = SpadeSettings(0.4, damp=0.05).resolved("testbed_resnet")
    assert resolved.prune_config() == PruneConfig(0.4, damp=0.05, solver=resolved.solver)
    with_profile = SpadeSettings(profile="mixed", skip_head=True).resolved(None).prune_config()
    assert with_profile.layer_sparsity == cfg.layer_sparsity and with_profile.skip_first  # the settings' options on top
    assert with_profile.skip_head and with_profile.solver == "sparsegpt"
    with pytest.raises(ValueError, match="'gone' is not in assets/profiles"):
        SpadeSettings(profile="gone").resolved(None).prune_config()
    with pytest.raises(ValueError, match="resolved"):
        SpadeSettings().prune_config()


def test_bad_values_end_with_one_line():
    for argv, message in [(["--sparsity", "90"], "--sparsity must be in"), (["--crop-min", "0"], "--crop-min"),
                          (["--n-aug", "0"], "--n-aug must be at least 1")]:  # fmt: skip
        with pytest.raises(SystemExit, match=message):
            _parse(argv)


def test_settings_are_frozen_and_serialisable():
    settings = SpadeSettings().resolved("testbed_resnet")
    with pytest.raises(AttributeError):
        settings.sparsity = 0.1  # type: ignore[misc]
    assert json.loads(json.dumps(settings.__dict__))["sparsity"] == spade_defaults("testbed_resnet")["sparsity"]


def test_bn_correction_comes_from_the_card_and_reaches_the_engine(tmp_path, monkeypatch):
    from spade_engine import paths

    card = json.loads((paths.MODELS / "efficientnet_lite0.json").read_text())
    card["spade"]["bn_correction"] = "match"
    (tmp_path / "efficientnet_lite0.json").write_text(json.dumps(card))
    monkeypatch.setattr(paths, "MODELS", tmp_path)
    resolved = SpadeSettings().resolved("efficientnet_lite0")
    assert resolved.bn_correction == "match" and resolved.prune_config().bn_correction == "match"
    assert "--bn-correction" not in resolved.argv("efficientnet_lite0")  # the card's: not written out
    off = SpadeSettings(bn_correction="none").resolved("efficientnet_lite0")
    assert off.prune_config().bn_correction == "none" and off.prune_key != resolved.prune_key
    assert _parse(off.argv("efficientnet_lite0")).resolved("efficientnet_lite0") == off
    assert SpadeSettings().resolved("testbed_resnet").bn_correction == "none"  # a card that says nothing


@pytest.mark.parametrize("calibration", ["sequential", "asymmetric"])
def test_calibration_comes_from_the_card_and_reaches_the_engine(tmp_path, monkeypatch, calibration):
    from spade_engine import paths

    card = json.loads((paths.MODELS / "efficientnet_lite0.json").read_text())
    card["spade"]["calibration"] = calibration
    (tmp_path / "efficientnet_lite0.json").write_text(json.dumps(card))
    monkeypatch.setattr(paths, "MODELS", tmp_path)
    resolved = SpadeSettings().resolved("efficientnet_lite0")
    cfg = resolved.prune_config()
    assert resolved.calibration == calibration
    assert (cfg.sequential, cfg.asymmetric) == (calibration == "sequential", calibration == "asymmetric")
    assert "--calibration" not in resolved.argv("efficientnet_lite0")  # the card's: not written out
    dense = SpadeSettings(calibration="dense").resolved("efficientnet_lite0")
    assert not dense.prune_config().sequential and not dense.prune_config().asymmetric
    assert dense.prune_key != resolved.prune_key  # another pruned network, another cache entry
    assert _parse(dense.argv("efficientnet_lite0")).resolved("efficientnet_lite0") == dense
    assert SpadeSettings().resolved("testbed_resnet").calibration == "dense"  # a card that says nothing
