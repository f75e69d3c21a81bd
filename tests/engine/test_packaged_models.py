"""Packaged ImageNet weights (spade_engine/models/packaged.py): EfficientNet-Lite0 loads offline from its pip
package, and is checked against expectations that do not come from our loader: the classes of known photos, and
the stem BatchNorm's running statistics (which tell the normalisation the network was trained with)."""

from __future__ import annotations

import json

import pytest
import skimage.data
import torch
from PIL import Image

from spade_engine import models, paths
from spade_engine.models.packaged import map_by_order

KNOWN_PHOTOS = {  # skimage photo -> ImageNet classes a correct ImageNet network puts first (as published)
    "coffee": {"espresso", "cup"},
    "camera": {"tripod", "reflex camera", "Polaroid camera"},
    "chelsea": {"Egyptian cat", "tabby", "tiger cat"},
}
NORMALISATIONS = {"0.5": ((0.5,) * 3, (0.5,) * 3), "imagenet": (models.IMAGENET_MEAN, models.IMAGENET_STD)}


@pytest.fixture(scope="module")
def lite0():
    return models.load_model("efficientnet_lite0")


def _photo(loaded, name: str) -> torch.Tensor:
    return loaded.preprocess(Image.fromarray(getattr(skimage.data, name)()))  # (3, S, S)


def test_lite0_card_and_preprocessing(lite0):
    info = lite0.info
    assert (info.family, info.arch, info.input_size, info.resize) == (
        "packaged",
        "timm:tf_efficientnet_lite0",
        224,
        256,
    )
    assert len(info.class_names) == 1000 and info.class_names[99] == "goose"
    assert info.mean == info.std == (0.5, 0.5, 0.5)
    assert not lite0.model.training and not any(p.requires_grad for p in lite0.model.parameters())


def test_lite0_classifies_known_photos(lite0):
    for photo, classes in KNOWN_PHOTOS.items():
        with torch.no_grad():
            p = lite0.model(_photo(lite0, photo)[None]).softmax(-1)[0]  # (1000,)
        top2 = {lite0.class_names[int(c)] for c in p.topk(2).indices}
        assert top2 & classes, f"{photo}: top-2 {top2}"
    with torch.no_grad():
        assert lite0.model(_photo(lite0, "coffee")[None]).softmax(-1).max() > 0.9  # espresso, confidently


def test_stem_batchnorm_statistics_fit_mean_std_half(lite0):
    """The stem BatchNorm's running mean/variance are what the stem conv produced on the training inputs; the
    photos' stem outputs fit them far better under mean/std 0.5 than under the ImageNet normalisation."""
    net = lite0.model.net
    x = torch.stack(
        [_photo(lite0, n) for n in ("chelsea", "coffee", "rocket", "astronaut", "retina", "hubble_deep_field")]
    )
    misfit = {}
    for name, (mean, std) in NORMALISATIONS.items():
        z = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        with torch.no_grad():
            y = net.conv_stem(z)  # (N, 32, 112, 112), before the BatchNorm
        ratio = y.var((0, 2, 3)).clamp_min(1e-12) / net.bn1.running_var.clamp_min(1e-12)
        misfit[name] = float(ratio.log().abs().median())
    assert misfit["0.5"] < 0.6 < misfit["imagenet"], misfit  # measured: 0.38 vs 1.20 (a 3.3x variance misfit)


def test_map_by_order_refuses_a_file_that_does_not_fit(lite0):
    state = dict(lite0.model.net.state_dict())
    first = next(iter(state))
    state[first] = torch.zeros(1, 2, 3, 3)
    with pytest.raises(models.CheckpointMismatchError, match="shape mismatches"):
        map_by_order(state, lite0.model.net, "timm:tf_efficientnet_lite0")
    with pytest.raises(models.CheckpointMismatchError, match="missing keys"):
        map_by_order(dict(list(lite0.model.net.state_dict().items())[:-2]), lite0.model.net, "x")


def test_missing_weight_package_names_the_pip_command(monkeypatch, tmp_path):
    card = json.loads((paths.MODELS / "efficientnet_lite0.json").read_text())
    card.update(name="lite_missing", package="no_such_weights_package_xyz", pip="no-such-weights-package-xyz")
    (tmp_path / "lite_missing.json").write_text(json.dumps(card))
    monkeypatch.setattr(paths, "MODELS", tmp_path)
    with pytest.raises(models.WeightsUnavailableError, match="pip install no-such-weights-package-xyz"):
        models.load_model("lite_missing")
