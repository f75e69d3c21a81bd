"""torchvision ImageNet classifiers: any classification builder by name, weights from the torch hub cache
(`$TORCH_HOME/hub/checkpoints`), downloaded on first use where the network allows it."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from spade_engine.errors import ModelLoadError, WeightsUnavailableError
from spade_engine.models.info import ModelInfo

# The curated torchvision classifiers listed in the picker: registry name -> (torchvision builder name, title).
TORCHVISION_MODELS: dict[str, tuple[str, str]] = {
    "resnet18": ("resnet18", "ResNet-18 (ImageNet)"),
    "resnet50": ("resnet50", "ResNet-50 (ImageNet)"),
    "mobilenet_v2": ("mobilenet_v2", "MobileNet-V2 (ImageNet)"),
    "mobilenet_v3_large": ("mobilenet_v3_large", "MobileNet-V3-Large (ImageNet)"),
    "vgg16": ("vgg16", "VGG-16 (ImageNet)"),
    "densenet121": ("densenet121", "DenseNet-121 (ImageNet)"),
    "convnext_tiny": ("convnext_tiny", "ConvNeXt-Tiny (ImageNet)"),
    "efficientnet_b0": ("efficientnet_b0", "EfficientNet-B0 (ImageNet)"),
    "vit_b_16": ("vit_b_16", "ViT-B/16 (ImageNet)"),
    "swin_t": ("swin_t", "Swin-T (ImageNet)"),
}
TORCHVISION_PREFIX = "torchvision:"


def imagenet_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in the standard order (timm's and the weight packages' too), from
    torchvision's weights metadata (offline)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.DEFAULT.meta["categories"])


def torchvision_name(name: str) -> str:
    """The torchvision builder behind a registry name: `"resnet18"`, `"torchvision:vit_b_16"` -> its model name.

    Raises:
        ModelLoadError: not a torchvision classification model (`torchvision.models.list_models`).
    """
    import torchvision
    from torchvision.models import list_models as tv_models

    tv_name = TORCHVISION_MODELS.get(name, (name.removeprefix(TORCHVISION_PREFIX), ""))[0]
    if tv_name not in tv_models(module=torchvision.models):
        raise ModelLoadError(f"'{tv_name}' is not a torchvision classification model.")
    return tv_name


def torchvision_info(name: str) -> ModelInfo:
    """The registry entry of a torchvision classifier: its weights' transforms (size, resize, mean/std) and
    class names.

    Raises:
        ModelLoadError: not a torchvision classification model.
    """
    from torchvision.models import get_model_weights

    tv_name = torchvision_name(name)
    weights = get_model_weights(tv_name).DEFAULT
    tf = weights.transforms()
    return ModelInfo(
        name=name,
        title=TORCHVISION_MODELS.get(name, (tv_name, f"{tv_name} (torchvision, ImageNet)"))[1],
        family="torchvision",
        arch=tv_name,
        input_size=int(tf.crop_size[0]),
        resize=int(tf.resize_size[0]),
        class_names=tuple(weights.meta["categories"]),
        mean=tuple(tf.mean),
        std=tuple(tf.std),
    )


def weights_cache_dir() -> Path:
    """Where torchvision looks for downloaded weights (`$TORCH_HOME/hub/checkpoints`)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def load_torchvision(name: str, allow_download: bool) -> nn.Module:
    """A torchvision classifier with its default ImageNet weights.

    Raises:
        WeightsUnavailableError: the weights are not in the torch cache and cannot be downloaded.
    """
    from torchvision.models import get_model, get_model_weights

    tv_name = torchvision_name(name)
    weights = get_model_weights(tv_name).DEFAULT
    filename, cache = os.path.basename(weights.url), weights_cache_dir()
    fetch = (
        f"On a machine with network run `python -c \"import torchvision; torchvision.models.get_model('{tv_name}', "
        f"weights='DEFAULT')\"` and copy the cache folder ({cache}) here (or set TORCH_HOME)."
    )
    if not (cache / filename).exists() and not allow_download:
        raise WeightsUnavailableError(name, filename, cache, fetch, "torch cache")
    try:
        return get_model(tv_name, weights=weights)
    except Exception as e:  # offline: URLError, socket errors, partial downloads
        raise WeightsUnavailableError(name, filename, cache, fetch, "torch cache", type(e).__name__) from e
