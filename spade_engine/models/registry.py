"""The model registry: every model the app can load by name, and `load_model`.

Sources: the shipped model cards (`assets/models/*.json`: packaged ImageNet models whose weights come from pip
packages, and our testbed models), any torchvision classifier by builder name (`"resnet18"`,
`"torchvision:vit_b_16"`, weights from the torch hub cache) and any timm model as `"timm:<name>"` (the Hugging
Face hub cache). Every model is returned as a `Classifier`: normalisation is its first module, so all engine code
feeds images in [0, 1]. Users' files go through `load_checkpoint` (`spade_engine.models.build`).
"""

from __future__ import annotations

import os

import torch

from spade_engine import paths
from spade_engine.errors import ModelLoadError
from spade_engine.models import build, cards, packaged
from spade_engine.models.checkpoints import read_state_dict
from spade_engine.models.info import LoadedModel, ModelInfo, wrap
from spade_engine.models.timm import TIMM_MODELS, TIMM_PREFIX, load_timm, timm_available, timm_info, timm_listed_info
from spade_engine.models.torchvision import TORCHVISION_MODELS, imagenet_names, load_torchvision, torchvision_info

# The model the app opens on: a real ImageNet network that works offline (weights from a pip package), so a
# photo gets a real class. The testbed models are the ground-truth trojan examples, next in the picker.
DEFAULT_MODEL = "efficientnet_lite0"
# The testbed listed first among the testbeds (the study designer's and the trojan examples' default): v2, where the
# stored protocol run measured SPADE-exact improving trojan AUC and deletion by a resolved margin.
DEMO_TESTBED = "testbed_v2_resnet"


def card_info(card: dict) -> ModelInfo:
    """The registry entry a model card describes (see `spade_engine.models.cards`)."""
    size = int(card["image_size"])
    imagenet = card.get("classes") == "imagenet"
    return ModelInfo(
        name=card["name"],
        title=card.get("title", card["name"]),
        family=card.get("family", "testbed"),
        arch=card["arch"],
        input_size=size,
        resize=int(card.get("resize", size)),
        class_names=imagenet_names() if imagenet else tuple(card["class_names"]),
        mean=tuple(card.get("mean", (0.5, 0.5, 0.5))),
        std=tuple(card.get("std", (0.25, 0.25, 0.25))),
        card=card,
    )


def list_models() -> list[ModelInfo]:
    """All listed models: `DEFAULT_MODEL` first, the other shipped cards (packaged ImageNet models, then testbed
    models, `DEMO_TESTBED` first, by name), then torchvision's curated ImageNet classifiers, then the curated timm models when `timm`
    is installed. `load_model` also takes any other torchvision classifier or `"timm:<name>"`."""
    shipped = sorted(
        (card_info(c) for c in cards.cards().values()),
        key=lambda i: (i.name != DEFAULT_MODEL, i.family != "packaged", i.name != DEMO_TESTBED, i.name),
    )
    timm = [timm_listed_info(n) for n in TIMM_MODELS] if timm_available() else []
    return shipped + [torchvision_info(n) for n in TORCHVISION_MODELS] + timm


def get_info(name: str) -> ModelInfo:
    """The registry entry called `name`: a shipped card (`"efficientnet_lite0"`, a testbed model), a torchvision
    classifier (`"resnet18"`, `"torchvision:swin_t"`) or a timm model (`"timm:convnext_tiny"`).

    Raises:
        ModelLoadError: unknown name, or a timm name without the `timm` package.
    """
    if card := cards.card(name):
        return card_info(card)
    if name.startswith(TIMM_PREFIX):
        return timm_info(name)
    try:
        return torchvision_info(name)
    except ModelLoadError:
        pass
    known = ", ".join(i.name for i in list_models())
    raise ModelLoadError(f"Unknown model '{name}'. Known: {known}; also any torchvision classifier or 'timm:<name>'.")


def load_model(name: str, device: str | torch.device = "cpu", allow_download: bool | None = None) -> LoadedModel:
    """Load a registered model in eval mode, gradients off for its parameters.

    Args:
        name: a shipped model (`"efficientnet_lite0"`, a testbed name), a torchvision classifier (`"resnet18"`,
            `"torchvision:vit_b_16"`) or a timm model (`"timm:convnext_tiny"`); see `list_models()`.
        device: where to put it.
        allow_download: try the network when pretrained weights are not cached (torch hub cache for
            torchvision, Hugging Face hub cache for timm); default: unless the environment sets `SPADE_OFFLINE=1`.

    Raises:
        WeightsUnavailableError: pretrained weights neither cached nor downloadable, or a weight package missing.
        ModelLoadError: unknown name, timm not installed, or a damaged shipped checkpoint.
    """
    info = get_info(name)
    if allow_download is None:
        allow_download = os.environ.get("SPADE_OFFLINE", "0") != "1"
    if info.family == "testbed":
        net = build.build_architecture(info.arch, len(info.class_names))  # a testbed arch or "timm:<name>"
        build.load_strict(net, read_state_dict(paths.MODELS / info.card["weights"]), info.arch)
    elif info.family == "packaged":
        net = packaged.load_packaged(info.card)
    elif info.family == "timm":
        net = load_timm(name, allow_download)
    else:
        net = load_torchvision(name, allow_download)
    return LoadedModel(info, wrap(net, info)).to(device)
