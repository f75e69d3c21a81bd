"""Model registry: the shipped testbed models, torchvision ImageNet classifiers and users' own checkpoints.

Every model is returned as a `Classifier`: normalisation is its first module, so all engine code feeds images
in [0, 1] (saliency baselines, trojan patches, Lucent and Sobol perturbations live in pixel space).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable
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
}


class ModelLoadError(RuntimeError):
    """A model could not be loaded; `str(e)` is a message for the user."""


class WeightsUnavailableError(ModelLoadError):
    """Pretrained weights are neither in the torch hub cache nor downloadable (offline)."""

    def __init__(self, name: str, filename: str, cache_dir: Path, reason: str = ""):
        self.name, self.filename, self.cache_dir = name, filename, cache_dir
        super().__init__(
            f"Weights for '{name}' are not available: {filename} is not in the torch cache ({cache_dir})"
            + (f" and could not be downloaded ({reason})" if reason else "")
            + ". On a machine with network run "
            f"`python -c \"import torchvision; torchvision.models.get_model('{name}', weights='DEFAULT')\"` "
            f"and copy {filename} into {cache_dir} here (or set TORCH_HOME)."
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


class Normalize(nn.Module):
    """Per-channel normalisation as a module, so the model takes images in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """`normalize` then `net`: maps images in [0, 1], (B, 3, H, W), to logits (B, K)."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model before loading it."""

    name: str
    title: str
    family: str  # "testbed" | "torchvision" | "checkpoint"
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

    weights = get_model_weights(TORCHVISION_MODELS[name][0]).DEFAULT
    tf = weights.transforms()
    return ModelInfo(
        name=name,
        title=TORCHVISION_MODELS[name][1],
        family="torchvision",
        arch=name,
        input_size=int(tf.crop_size[0]),
        resize=int(tf.resize_size[0]),
        class_names=tuple(weights.meta["categories"]),
        mean=tuple(tf.mean),
        std=tuple(tf.std),
    )


def list_models() -> list[ModelInfo]:
    """All registered models: shipped testbed models first (the defaults), then torchvision's."""
    return _testbed_infos() + [_torchvision_info(n) for n in TORCHVISION_MODELS]


def get_info(name: str) -> ModelInfo:
    """The registry entry called `name` (raises `ModelLoadError` for unknown names)."""
    for info in _testbed_infos():
        if info.name == name:
            return info
    if name in TORCHVISION_MODELS:
        return _torchvision_info(name)
    raise ModelLoadError(f"Unknown model '{name}'. Known: {', '.join(i.name for i in list_models())}.")


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


def spade_augment(name: str | None, crop_min: float | None = None):
    """The calibration views' `AugmentConfig` for a model: random resized crops of area `crop_min`..1, with the
    model card's `crop_min` when none is given (see `spade_defaults`). Every entry point (Debugger, protocol,
    benchmarks, study stimuli) builds its views through this one function."""
    from spade_engine.augment import AugmentConfig

    crop = spade_defaults(name)["crop_min"] if crop_min is None else float(crop_min)
    return AugmentConfig(scale=(crop, 1.0))


def architectures() -> dict[str, Callable[[int], nn.Module]]:
    """Builders for every registered architecture, `arch -> f(num_classes) -> nn.Module` (random init)."""
    from torchvision.models import get_model

    from spade_engine.testbed.archs import ARCHS

    archs: dict[str, Callable[[int], nn.Module]] = dict(ARCHS)
    for name, (tv_name, _) in TORCHVISION_MODELS.items():
        archs[name] = lambda k, tv_name=tv_name: get_model(tv_name, weights=None, num_classes=k)
    return archs


def weights_cache_dir() -> Path:
    """Where torchvision looks for downloaded weights (`$TORCH_HOME/hub/checkpoints`)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def load_model(name: str, device: str | torch.device = "cpu", allow_download: bool | None = None) -> LoadedModel:
    """Load a registered model in eval mode.

    Args:
        name: a registry name (`list_models()`).
        device: where to put it.
        allow_download: try the network when torchvision weights are not cached; default: unless
            the environment sets `SPADE_OFFLINE=1`.

    Raises:
        WeightsUnavailableError: torchvision weights neither cached nor downloadable.
        ModelLoadError: unknown name or a damaged shipped checkpoint.
    """
    info = get_info(name)
    if info.family == "testbed":
        net = architectures()[info.arch](len(info.class_names))
        state = _read_state_dict(TESTBED_DIR / info.card["weights"])
        _load_strict(net, state, info.arch)
    else:
        net = _load_torchvision(name, allow_download)
    return LoadedModel(info, _wrap(net, info)).to(device)


def _wrap(net: nn.Module, info: ModelInfo) -> Classifier:
    model = Classifier(net, info.mean, info.std).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _load_torchvision(name: str, allow_download: bool | None) -> nn.Module:
    from torchvision.models import get_model, get_model_weights

    tv_name = TORCHVISION_MODELS[name][0]
    weights = get_model_weights(tv_name).DEFAULT
    filename = os.path.basename(weights.url)
    cache = weights_cache_dir()
    if allow_download is None:
        allow_download = os.environ.get("SPADE_OFFLINE", "0") != "1"
    if not (cache / filename).exists() and not allow_download:
        raise WeightsUnavailableError(name, filename, cache)
    try:
        return get_model(tv_name, weights=weights)
    except Exception as e:  # offline: URLError, socket errors, partial downloads
        raise WeightsUnavailableError(name, filename, cache, reason=f"{type(e).__name__}: {e}") from e


# ------------------------------------------------------------------------------------- checkpoints


def _read_state_dict(source: bytes | str | Path) -> dict[str, torch.Tensor]:
    buf = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        obj = torch.load(buf, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelLoadError(
            f"Could not read the checkpoint as a weights-only state_dict ({type(e).__name__}: {e})."
        ) from e
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError("The checkpoint is not a state_dict (a mapping of parameter names to tensors).")
    for prefix in ("module.", "net."):
        if obj and all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return {k: v for k, v in obj.items() if k not in ("normalize.mean", "normalize.std")}


def _load_strict(net: nn.Module, state: dict[str, torch.Tensor], arch: str) -> None:
    own = net.state_dict()
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


def _is_torchscript(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except zipfile.BadZipFile:
        return False


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
    """Load a user's checkpoint: a state_dict for a registered architecture, or a TorchScript file.

    Args:
        data: the file's bytes.
        arch: a key of `architectures()`; ignored for TorchScript files.
        num_classes: classes of the head; default: read from the state_dict's last 2-D weight.
        class_names: optional names; default "class 0", "class 1", ...
        input_size, mean, std: preprocessing (images are resized to `input_size` and centre-cropped).

    Raises:
        CheckpointMismatchError: keys or shapes do not fit `arch` (listed by key).
        ModelLoadError: unreadable file, unknown architecture.
    """
    if _is_torchscript(data):
        try:
            net = torch.jit.load(io.BytesIO(data), map_location="cpu")
        except Exception as e:
            raise ModelLoadError(f"Could not load the TorchScript file ({type(e).__name__}: {e}).") from e
        arch = "torchscript"
        with torch.no_grad():
            num_classes = int(net(torch.zeros(1, 3, input_size, input_size)).shape[-1])
    else:
        builders = architectures()
        if arch not in builders:
            raise ModelLoadError(f"Unknown architecture '{arch}'. Known: {', '.join(builders)}.")
        state = _read_state_dict(data)
        if num_classes is None:
            num_classes = _head_classes(state)
        net = builders[arch](num_classes)
        _load_strict(net, state, arch)
    names = tuple(class_names) if len(class_names) == num_classes else tuple(f"class {i}" for i in range(num_classes))
    info = ModelInfo(
        name, f"{name} ({arch})", "checkpoint", arch, input_size, input_size, names, tuple(mean), tuple(std)
    )
    return LoadedModel(info, _wrap(net, info)).to(device)


def _head_classes(state: dict[str, torch.Tensor]) -> int:
    mats = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    if not mats:
        raise ModelLoadError("Cannot tell the number of classes from the checkpoint; please give it.")
    return int(mats[-1].shape[0])
