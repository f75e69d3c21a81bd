"""Model registry: the shipped testbed models, torchvision and timm ImageNet classifiers, and users' own checkpoints.

Every model is returned as a `Classifier`: normalisation is its first module, so all engine code feeds images
in [0, 1] (saliency baselines, trojan patches, Lucent and Sobol perturbations live in pixel space).

Model sources (`load_model(name)`): a testbed name (`assets/models/`); any torchvision classification model by
its builder name (`"resnet18"`, `"vit_b_16"`, `"swin_t"`, or `"torchvision:<name>"`), weights from the torch hub
cache; any timm model as `"timm:<name>"` (needs the optional `timm` package), weights from the Hugging Face hub
cache. `list_models()` lists the testbed models and a curated set of both (`TORCHVISION_MODELS`, `TIMM_MODELS`).
User files go through `load_checkpoint` (reading and unwrapping: `spade_engine.checkpoints`).

What the app expects of a network's output (`logits_of`, applied by `Classifier` and by every saliency method):
the class logits, shape (B, K). A tuple or list (a named tuple such as torchvision's `GoogLeNetOutputs`, or
`(logits, features)`) gives its **first element** as the logits; a mapping gives its `"logits"` entry. A network
with a **single output logit** is a sigmoid (binary) classifier: `Classifier(binary=True)` (set by
`load_checkpoint`) shows it as two classes with logits (-z/2, z/2), whose softmax is (1 - sigmoid(z), sigmoid(z)).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import functional as TF

ASSETS = Path(__file__).resolve().parent.parent / "assets"
TESTBED_DIR = ASSETS / "models"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Registry of torchvision ImageNet classifiers: registry name -> (torchvision builder name, title).
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
TORCHVISION_PREFIX, TIMM_PREFIX = "torchvision:", "timm:"

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


class ModelLoadError(RuntimeError):
    """A model could not be loaded; `str(e)` is a message for the user."""


class WeightsUnavailableError(ModelLoadError):
    """Pretrained weights are neither in the torch hub cache nor downloadable (offline)."""

    def __init__(self, name: str, filename: str, cache_dir: Path, reason: str = "", hub: str = "torch"):
        """`hub`: "torch" (torchvision weights, `$TORCH_HOME`) or "huggingface" (timm weights, `$HF_HOME`)."""
        self.name, self.filename, self.cache_dir = name, filename, cache_dir
        if hub == "huggingface":
            fetch = f"import timm; timm.create_model('{name.removeprefix(TIMM_PREFIX)}', pretrained=True)"
            where, env = "Hugging Face hub cache", "HF_HOME"
        else:
            fetch = f"import torchvision; torchvision.models.get_model('{name.removeprefix(TORCHVISION_PREFIX)}', weights='DEFAULT')"
            where, env = "torch cache", "TORCH_HOME"
        super().__init__(
            f"Weights for '{name}' are not available: {filename} is not in the {where} ({cache_dir})"
            + (f" and could not be downloaded ({reason})" if reason else "")
            + f'. On a machine with network run `python -c "{fetch}"` '
            f"and copy the cache folder ({cache_dir}) here (or set {env})."
        )


class CheckpointMismatchError(ModelLoadError):
    """A state_dict does not fit the chosen architecture; lists the offending keys."""

    def __init__(self, arch: str, missing: list[str], unexpected: list[str], shapes: list[str]):
        self.missing, self.unexpected, self.shapes = missing, unexpected, shapes
        parts = [f"The checkpoint does not match the '{arch}' architecture."]
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if keys:
                more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
                parts.append(f"{len(keys)} {label}: {', '.join(keys[:5])}{more}.")
        super().__init__(" ".join(parts))


class ModelOutputError(ModelLoadError):
    """A network's output is not class logits (nor a tuple / mapping holding them); `str(e)` says what it returned."""


def logits_of(output: object) -> torch.Tensor:
    """The class logits in a network's output, by the app's one rule.

    A tensor is the logits; a tuple or list (named tuples included: torchvision's `GoogLeNetOutputs`,
    `InceptionOutputs`, `(logits, features)` models) gives its first element; a mapping (Hugging Face
    `ModelOutput`) its `"logits"` entry. torch.fx proxies pass through, so a `Classifier` stays traceable.

    Raises:
        ModelOutputError: the output holds no logits by that rule (the message names what it holds).
    """
    if isinstance(output, Mapping):
        if "logits" in output:
            return output["logits"]
    elif isinstance(output, (tuple, list)):
        if output and isinstance(output[0], (torch.Tensor, torch.fx.Proxy)):
            return output[0]
    else:
        return output  # a tensor (or an fx proxy while tracing)
    from spade_engine.checkpoints import describe_output

    raise ModelOutputError(
        f"The model returns {describe_output(output)}, not class logits. The app takes the first element of a "
        "tuple or list, or the 'logits' entry of a mapping, as the logits (B, K); make the model's forward "
        "return them first."
    )


def two_class_logits(logit: torch.Tensor) -> torch.Tensor:
    """A sigmoid head's one logit z, (B, 1), as two-class logits (-z/2, z/2), (B, 2).

    Their softmax is (1 - sigmoid(z), sigmoid(z)) exactly, and their difference is z, so probabilities,
    predictions and the class-1 evidence are those of the sigmoid classifier (captum #475: a softmax over one
    logit is always 1).
    """
    return torch.cat([-logit / 2, logit / 2], dim=-1)  # (B, 2)


class Normalize(nn.Module):
    """Per-channel normalisation as a module, so the model takes images in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """`normalize` then `net`: maps images in [0, 1], (B, 3, H, W), to logits (B, K).

    `net`'s output goes through `logits_of` (a tuple's first element, a mapping's "logits"). With `binary=True`
    `net` is a sigmoid classifier with one logit, shown as two classes (`two_class_logits`: K = 2).
    """

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], binary: bool = False):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net
        self.binary = bool(binary)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = logits_of(self.net(self.normalize(x)))
        return two_class_logits(logits) if getattr(self, "binary", False) else logits


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model before loading it."""

    name: str
    title: str
    family: str  # "testbed" | "torchvision" | "timm" | "checkpoint"
    arch: str
    input_size: int
    resize: int
    class_names: tuple[str, ...] = ()
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    card: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass
class LoadedModel:
    """A ready classifier (eval mode) with its preprocessing and class names."""

    info: ModelInfo
    model: Classifier

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        """Resize (shorter side), centre-crop and convert to a (3, S, S) tensor in [0, 1]."""
        img = img.convert("RGB")
        img = TF.resize(img, self.info.resize, antialias=True)
        img = TF.center_crop(img, self.info.input_size)
        return TF.to_tensor(img)

    def to(self, device: str | torch.device) -> LoadedModel:
        self.model.to(device)
        return self


# ----------------------------------------------------------------------------------------- registry


def _testbed_infos() -> list[ModelInfo]:
    infos = []
    for card_path in sorted(TESTBED_DIR.glob("*.json")):
        card = json.loads(card_path.read_text())
        size = int(card["image_size"])
        infos.append(
            ModelInfo(
                name=card["name"],
                title=card.get("title", card["name"]),
                family="testbed",
                arch=card["arch"],
                input_size=size,
                resize=size,
                class_names=tuple(card["class_names"]),
                mean=tuple(card.get("mean", (0.5, 0.5, 0.5))),
                std=tuple(card.get("std", (0.25, 0.25, 0.25))),
                card=card,
            )
        )
    return infos


def _torchvision_info(name: str) -> ModelInfo:
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


def timm_available() -> bool:
    """Whether the optional `timm` package is installed (without importing it)."""
    return importlib.util.find_spec("timm") is not None


def _timm_module():
    if not timm_available():
        raise ModelLoadError(
            "timm models need the optional `timm` package: `pip install timm` (or the `models` extra)."
        )
    import timm

    return timm


def _imagenet_names() -> tuple[str, ...]:
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.DEFAULT.meta["categories"])  # the standard ImageNet-1k order (timm's too)


def _timm_listed_info(name: str) -> ModelInfo:
    title, size, resize, mean, std = TIMM_MODELS[name]
    return ModelInfo(name, title, "timm", name, size, resize, _imagenet_names(), mean, std)


def timm_data_config(name: str) -> dict:
    """timm's data config of a timm model's default pretrained tag: `input_size` (3, H, W), `crop_pct`,
    `mean`, `std`, `interpolation` (timm.data.resolve_data_config; source: timm's pretrained_cfg)."""
    timm = _timm_module()
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    model_name = name.removeprefix(TIMM_PREFIX)
    if not timm.is_model(model_name):
        raise ModelLoadError(f"timm has no model called '{model_name}' (see `timm.list_models()`).")
    cfg = get_pretrained_cfg(model_name)
    return resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg is not None else {})


def _timm_info(name: str) -> ModelInfo:
    import math

    from timm.models import get_pretrained_cfg

    data = timm_data_config(name)
    size = int(data["input_size"][-1])
    cfg = get_pretrained_cfg(name.removeprefix(TIMM_PREFIX))
    k = getattr(cfg, "num_classes", 1000) or 1000
    names = _imagenet_names() if k == 1000 else tuple(f"class {i}" for i in range(k))
    title = TIMM_MODELS.get(name, (f"{name.removeprefix(TIMM_PREFIX)} (timm)",))[0]
    resize = int(math.floor(size / float(data.get("crop_pct", 0.875))))
    return ModelInfo(name, title, "timm", name, size, resize, names, tuple(data["mean"]), tuple(data["std"]))


# The model the app opens on: testbed v2, where the stored protocol run measured SPADE-exact improving trojan AUC
# and deletion by a resolved margin (v1's dense maps are at the ceiling; assets/benchmarks/*_protocol.csv).
DEFAULT_MODEL = "testbed_v2_resnet"


def list_models() -> list[ModelInfo]:
    """All listed models: shipped testbed models first (`DEFAULT_MODEL`, then by name), then torchvision's curated ImageNet
    classifiers, then the curated timm models when `timm` is installed. `load_model` also takes any other
    torchvision classifier or `"timm:<name>"`."""
    timm = [_timm_listed_info(n) for n in TIMM_MODELS] if timm_available() else []
    testbed = sorted(_testbed_infos(), key=lambda i: i.name != DEFAULT_MODEL)  # the default first, then by name
    return testbed + [_torchvision_info(n) for n in TORCHVISION_MODELS] + timm


def get_info(name: str) -> ModelInfo:
    """The registry entry called `name`: a testbed model, a torchvision classifier (`"resnet18"`,
    `"torchvision:swin_t"`) or a timm model (`"timm:convnext_tiny"`).

    Raises:
        ModelLoadError: unknown name, or a timm name without the `timm` package.
    """
    for info in _testbed_infos():
        if info.name == name:
            return info
    if name.startswith(TIMM_PREFIX):
        return _timm_info(name)
    try:
        return _torchvision_info(name)
    except ModelLoadError:
        pass
    known = ", ".join(i.name for i in list_models())
    raise ModelLoadError(f"Unknown model '{name}'. Known: {known}; also any torchvision classifier or 'timm:<name>'.")


SPADE_DEFAULTS = {"sparsity": 0.9, "crop_min": 0.2}  # the SPADE reference's settings


def spade_defaults(name: str | None) -> dict[str, float]:
    """SPADE settings for a model: the card's `spade` section (testbed models) over the reference's defaults.

    The shipped testbed models were trained without scale augmentation, so rescaled crops break their 8 px
    trojan trigger (7% of views keep the trojan prediction at crop 0.2, 99% at 1.0): their cards say
    `crop_min: 1.0`, and `sparsity: 0.8` (at 0.9 some trojaned samples flip class). Unknown names get the
    reference's defaults.
    """
    try:
        card = get_info(name).card if name else {}
    except ModelLoadError:
        card = {}
    spade = card.get("spade", {})
    return {k: float(spade.get(k, v)) for k, v in SPADE_DEFAULTS.items()}


def spade_solver(name: str | None) -> str:
    """The layer solver a model's card recommends for SPADE: "obc" (exact) or "sparsegpt" (the column sweep, the
    default for models without a card or without a `spade.solver` entry). The testbed v2 card says "obc" because
    its stored protocol run measured the sweep losing the dense decision on a fifth of the trojaned samples at the
    card's sparsity (`spade.solver_why`)."""
    try:
        card = get_info(name).card if name else {}
    except ModelLoadError:
        card = {}
    solver = (card or {}).get("spade", {}).get("solver", "sparsegpt")
    return solver if solver in ("obc", "sparsegpt") else "sparsegpt"


def spade_augment(name: str | None, crop_min: float | None = None):
    """The calibration views' `AugmentConfig` for a model: random resized crops of area `crop_min`..1, with the
    model card's `crop_min` when none is given (see `spade_defaults`). Every entry point (Debugger, protocol,
    benchmarks, study stimuli) builds its views through this one function."""
    from spade_engine.augment import AugmentConfig

    crop = spade_defaults(name)["crop_min"] if crop_min is None else float(crop_min)
    return AugmentConfig(scale=(crop, 1.0))


def architectures() -> dict[str, Callable[[int], nn.Module]]:
    """Builders for the architectures a checkpoint can be loaded into, `arch -> f(num_classes) -> nn.Module`
    (random init): the testbed's, every torchvision classification model, and the curated timm models when
    timm is installed (`build_architecture` also takes any other `"timm:<name>"`)."""
    import torchvision
    from torchvision.models import get_model
    from torchvision.models import list_models as tv_models

    from spade_engine.testbed.archs import ARCHS, ARCHS_V2

    archs: dict[str, Callable[[int], nn.Module]] = {**ARCHS, **ARCHS_V2}
    for tv_name in [*(v[0] for v in TORCHVISION_MODELS.values()), *tv_models(module=torchvision.models)]:
        archs.setdefault(tv_name, lambda k, tv_name=tv_name: get_model(tv_name, weights=None, num_classes=k))
    if timm_available():
        for name in TIMM_MODELS:
            archs[name] = lambda k, name=name: _timm_module().create_model(
                name.removeprefix(TIMM_PREFIX), num_classes=k
            )
    return archs


def build_architecture(arch: str, num_classes: int) -> nn.Module:
    """A randomly initialised `arch` (a key of `architectures()` or any `"timm:<name>"`) with `num_classes` outputs.

    Raises:
        ModelLoadError: unknown architecture, or a timm name without the `timm` package.
    """
    if arch.startswith(TIMM_PREFIX) and arch not in TIMM_MODELS:
        timm_data_config(arch)  # raises for unknown names
        return _timm_module().create_model(arch.removeprefix(TIMM_PREFIX), num_classes=num_classes)
    builders = architectures()
    if arch not in builders:
        raise ModelLoadError(f"Unknown architecture '{arch}'. Known: {', '.join(builders)}, or 'timm:<name>'.")
    return builders[arch](num_classes)


def weights_cache_dir() -> Path:
    """Where torchvision looks for downloaded weights (`$TORCH_HOME/hub/checkpoints`)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def load_model(name: str, device: str | torch.device = "cpu", allow_download: bool | None = None) -> LoadedModel:
    """Load a registered model in eval mode.

    Args:
        name: a testbed name, a torchvision classifier (`"resnet18"`, `"torchvision:vit_b_16"`) or a timm model
            (`"timm:convnext_tiny"`); see `list_models()` and `get_info`.
        device: where to put it.
        allow_download: try the network when pretrained weights are not cached (torch hub cache for
            torchvision, Hugging Face hub cache for timm); default: unless the environment sets `SPADE_OFFLINE=1`.

    Raises:
        WeightsUnavailableError: pretrained weights neither cached nor downloadable.
        ModelLoadError: unknown name, timm not installed, or a damaged shipped checkpoint.
    """
    from spade_engine import checkpoints

    info = get_info(name)
    if allow_download is None:
        allow_download = os.environ.get("SPADE_OFFLINE", "0") != "1"
    if info.family == "testbed":
        net = architectures()[info.arch](len(info.class_names))
        state = checkpoints.read_state_dict(TESTBED_DIR / info.card["weights"])
        _load_strict(net, state, info.arch)
    elif info.family == "timm":
        net = _load_timm(name, allow_download)
    else:
        net = _load_torchvision(name, allow_download)
    return LoadedModel(info, _wrap(net, info)).to(device)


def _wrap(net: nn.Module, info: ModelInfo, binary: bool = False) -> Classifier:
    model = Classifier(net, info.mean, info.std, binary=binary).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _load_torchvision(name: str, allow_download: bool) -> nn.Module:
    from torchvision.models import get_model, get_model_weights

    tv_name = torchvision_name(name)
    weights = get_model_weights(tv_name).DEFAULT
    filename = os.path.basename(weights.url)
    cache = weights_cache_dir()
    if not (cache / filename).exists() and not allow_download:
        raise WeightsUnavailableError(name, filename, cache)
    try:
        return get_model(tv_name, weights=weights)
    except Exception as e:  # offline: URLError, socket errors, partial downloads
        raise WeightsUnavailableError(name, filename, cache, reason=type(e).__name__) from e


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


def _load_timm(name: str, allow_download: bool) -> nn.Module:
    from huggingface_hub.constants import HF_HUB_CACHE
    from timm.models import get_pretrained_cfg

    timm, model_name = _timm_module(), name.removeprefix(TIMM_PREFIX)
    local = timm_weights_file(name)
    if local is not None:
        return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay={"file": str(local)})
    repo = getattr(get_pretrained_cfg(model_name), "hf_hub_id", None) or model_name
    filename = f"{repo}/model.safetensors"
    if not allow_download:
        raise WeightsUnavailableError(name, filename, Path(HF_HUB_CACHE), hub="huggingface")
    try:
        return timm.create_model(model_name, pretrained=True)
    except Exception as e:  # offline: connection errors, missing files on the hub
        raise WeightsUnavailableError(name, filename, Path(HF_HUB_CACHE), type(e).__name__, hub="huggingface") from e


# ------------------------------------------------------------------------------------- checkpoints

PROBE_CLASSES = 997  # head size of the meta-device probe that finds an architecture's head keys (a prime no layer has)
NOT_WEIGHTS = ("num_batches_tracked",)  # BatchNorm step counters: some exporters drop them


def _load_strict(net: nn.Module, state: dict[str, torch.Tensor], arch: str) -> None:
    own = net.state_dict()
    state = {k: v for k, v in state.items() if k not in ("normalize.mean", "normalize.std")}
    state.update({k: own[k] for k in own if k not in state and k.rsplit(".", 1)[-1] in NOT_WEIGHTS})
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(arch, missing, unexpected, shapes)
    net.load_state_dict(state)


def load_checkpoint(
    data: bytes,
    arch: str,
    num_classes: int | None = None,
    class_names: tuple[str, ...] = (),
    input_size: int = 224,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    name: str = "checkpoint",
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Load a user's checkpoint: weights for a known architecture, or a TorchScript file.

    Weights files: `torch.save` checkpoints (a state_dict, or a training script's wrapper: Lightning `.ckpt`,
    torchvision reference scripts' `{"model", "args": Namespace, ...}`, `{"model_state_dict"}`...) and
    `.safetensors` files, in any precision, with any key prefix (`model.`, `module.`, `_orig_mod.`); see
    `spade_engine.checkpoints`. A network with one output logit becomes a two-class sigmoid classifier
    (`Classifier(binary=True)`).

    Args:
        data: the file's bytes.
        arch: a key of `architectures()` or `"timm:<name>"`; ignored for TorchScript files.
        num_classes: outputs of the head; default: read from the checkpoint's head weights.
        class_names: optional names, one per class (two for a one-logit binary classifier; one name `n` gives
            ("not n", "n")); default "class 0", "class 1", ...
        input_size, mean, std: preprocessing (images are resized to `input_size` and centre-cropped).

    Raises:
        CheckpointMismatchError: keys or shapes do not fit `arch` (listed by key).
        ModelOutputError: a TorchScript model whose output holds no class logits (see `logits_of`).
        ModelLoadError: unreadable or unsafe file, unknown architecture, a TorchScript model that fails on an
            `input_size` image; every message is written for the user.
    """
    from spade_engine import checkpoints

    if checkpoints.is_torchscript(data):
        net, arch = checkpoints.load_torchscript(data), "torchscript"
        num_classes = _probe_classes(net, input_size)
    else:
        net, num_classes = _build_from_weights(data, arch, num_classes)
    binary = num_classes == 1
    names = _class_names(tuple(class_names), 2 if binary else num_classes)
    info = ModelInfo(
        name, f"{name} ({arch})", "checkpoint", arch, input_size, input_size, names, tuple(mean), tuple(std)
    )
    return LoadedModel(info, _wrap(net, info, binary)).to(device)


def _build_from_weights(data: bytes, arch: str, num_classes: int | None) -> tuple[nn.Module, int]:
    """`arch` with the file's weights loaded, and its number of outputs (read from the head when not given)."""
    from spade_engine import checkpoints

    probe = _meta_build(arch, num_classes or PROBE_CLASSES)
    state = checkpoints.align_state_dict(checkpoints.read_state_dict(data), probe.state_dict())
    if num_classes is None:
        num_classes = _head_classes(state, probe.state_dict())
    net = build_architecture(arch, num_classes)
    _load_strict(net, state, arch)
    return net, num_classes


def _meta_build(arch: str, num_classes: int) -> nn.Module:
    """`arch` on the meta device (shapes only: no memory, no initialisation), for its keys and head."""
    try:
        with torch.device("meta"):
            return build_architecture(arch, num_classes)
    except ModelLoadError:
        raise
    except Exception:  # a builder that cannot run on the meta device
        return build_architecture(arch, num_classes)


def _head_classes(state: dict[str, torch.Tensor], probe: dict[str, torch.Tensor]) -> int:
    """Outputs of the checkpoint's head: the first dimension of the weight that has `PROBE_CLASSES` rows in the
    probe; the last 2-D weight of the checkpoint when the probe has no such key."""
    heads = [k for k, v in probe.items() if v.dim() >= 1 and v.shape[0] == PROBE_CLASSES and k in state]
    if heads:
        return int(state[heads[0]].shape[0])
    mats = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    if not mats:
        raise ModelLoadError("Cannot tell the number of classes from the checkpoint; please give it.")
    return int(mats[-1].shape[0])


def _probe_classes(net: nn.Module, size: int) -> int:
    """Classes of a TorchScript model: the width of its logits on a blank `size` image."""
    from spade_engine.checkpoints import describe_output

    try:
        with torch.no_grad():
            out = net(torch.zeros(1, 3, size, size))
    except Exception:
        raise ModelLoadError(
            f"The TorchScript model fails on a test image of {size}×{size} px (3 colour channels). Set the input "
            "size under 'Checkpoint preprocessing and classes' to the size it was trained on."
        ) from None
    logits = logits_of(out)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ModelOutputError(
            f"The model returns {describe_output(logits)}; a classifier must return one score per class, "
            "shape (1, K), for one image."
        )
    return int(logits.shape[-1])


def _class_names(given: tuple[str, ...], k: int) -> tuple[str, ...]:
    if len(given) == k:
        return given
    if k == 2 and len(given) == 1:  # a sigmoid head named by its positive class
        return (f"not {given[0]}", given[0])
    return tuple(f"class {i}" for i in range(k))
