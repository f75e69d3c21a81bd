"""timm ImageNet classifiers as `"timm:<name>"` (the optional `timm` package), weights from the Hugging Face hub
cache (`$HF_HOME`), downloaded on first use where the network allows it."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

from torch import nn

from spade_engine.classifier import IMAGENET_MEAN, IMAGENET_STD
from spade_engine.errors import ModelLoadError, WeightsUnavailableError
from spade_engine.models.info import ModelInfo
from spade_engine.models.torchvision import imagenet_names

TIMM_PREFIX = "timm:"
# Curated timm models listed in the picker (any other timm name loads too): registry name -> (title, input size,
# resize, mean, std). The preprocessing is timm's data config of the default pretrained tag (resize = size /
# crop_pct), written out so that listing does not import timm; loading reads timm's config itself, and
# tests/engine/test_model_sources.py checks the two agree.
TIMM_MODELS: dict[str, tuple[str, int, int, tuple[float, ...], tuple[float, ...]]] = {
    "timm:resnet50": ("ResNet-50 a1 (timm, ImageNet)", 224, 235, IMAGENET_MEAN, IMAGENET_STD),
    "timm:convnext_tiny": ("ConvNeXt-Tiny (timm, ImageNet)", 224, 235, IMAGENET_MEAN, IMAGENET_STD),
    "timm:efficientnet_b0": ("EfficientNet-B0 (timm, ImageNet)", 224, 256, IMAGENET_MEAN, IMAGENET_STD),
    "timm:vit_small_patch16_224": ("ViT-S/16 (timm, ImageNet)", 224, 248, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "timm:deit_small_patch16_224": ("DeiT-S/16 (timm, ImageNet)", 224, 248, IMAGENET_MEAN, IMAGENET_STD),
}


def timm_available() -> bool:
    """Whether the optional `timm` package is installed (without importing it)."""
    return importlib.util.find_spec("timm") is not None


def timm_module():
    """The `timm` package.

    Raises:
        ModelLoadError: timm is not installed (the message says how to install it).
    """
    if not timm_available():
        raise ModelLoadError(
            "timm models need the optional `timm` package: `pip install timm` (or the `models` extra)."
        )
    import timm

    return timm


def timm_data_config(name: str) -> dict:
    """timm's data config of a timm model's default pretrained tag: `input_size` (3, H, W), `crop_pct`,
    `mean`, `std`, `interpolation` (timm.data.resolve_data_config; source: timm's pretrained_cfg).

    Raises:
        ModelLoadError: timm not installed, or no timm model of that name.
    """
    timm = timm_module()
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    model_name = name.removeprefix(TIMM_PREFIX)
    if not timm.is_model(model_name):
        raise ModelLoadError(f"timm has no model called '{model_name}' (see `timm.list_models()`).")
    cfg = get_pretrained_cfg(model_name)
    return resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg is not None else {})


def timm_listed_info(name: str) -> ModelInfo:
    """The registry entry of a curated timm model (no timm import)."""
    title, size, resize, mean, std = TIMM_MODELS[name]
    return ModelInfo(name, title, "timm", name, size, resize, imagenet_names(), mean, std)


def timm_info(name: str) -> ModelInfo:
    """The registry entry of any `"timm:<name>"` from timm's pretrained config.

    Raises:
        ModelLoadError: timm not installed, or no timm model of that name.
    """
    from timm.models import get_pretrained_cfg

    data = timm_data_config(name)
    size = int(data["input_size"][-1])
    cfg = get_pretrained_cfg(name.removeprefix(TIMM_PREFIX))
    k = getattr(cfg, "num_classes", 1000) or 1000
    names = imagenet_names() if k == 1000 else tuple(f"class {i}" for i in range(k))
    title = TIMM_MODELS.get(name, (f"{name.removeprefix(TIMM_PREFIX)} (timm)",))[0]
    resize = int(math.floor(size / float(data.get("crop_pct", 0.875))))
    return ModelInfo(name, title, "timm", name, size, resize, names, tuple(data["mean"]), tuple(data["std"]))


def timm_weights_file(name: str) -> Path | None:
    """The cached pretrained weights of a timm model in the Hugging Face hub cache, or None (never downloads)."""
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name.removeprefix(TIMM_PREFIX))
    repo = getattr(cfg, "hf_hub_id", None)
    for filename in ("model.safetensors", "pytorch_model.bin") if repo else ():
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def load_timm(name: str, allow_download: bool) -> nn.Module:
    """A timm model with its default pretrained weights.

    Raises:
        WeightsUnavailableError: not in the Hugging Face cache and not downloadable.
        ModelLoadError: timm not installed.
    """
    from huggingface_hub.constants import HF_HUB_CACHE
    from timm.models import get_pretrained_cfg

    timm, model_name = timm_module(), name.removeprefix(TIMM_PREFIX)
    local = timm_weights_file(name)
    if local is not None:
        return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay={"file": str(local)})
    repo = getattr(get_pretrained_cfg(model_name), "hf_hub_id", None) or model_name
    filename, cache = f"{repo}/model.safetensors", Path(HF_HUB_CACHE)
    fetch = (
        f"On a machine with network run `python -c \"import timm; timm.create_model('{model_name}', "
        f'pretrained=True)"` and copy the cache folder ({cache}) here (or set HF_HOME).'
    )
    if not allow_download:
        raise WeightsUnavailableError(name, filename, cache, fetch, "Hugging Face hub cache")
    try:
        return timm.create_model(model_name, pretrained=True)
    except Exception as e:  # offline: connection errors, missing files on the hub
        raise WeightsUnavailableError(name, filename, cache, fetch, "Hugging Face hub cache", type(e).__name__) from e
