"""Feature visualisation with Lucent (Olah et al., https://distill.pub/2017/feature-visualization/).

The only module that imports Lucent (`torch-lucent` 0.1.8). Lucent's objectives (`channel`, `neuron`) are used
as they are; its renderer, image parameterisation and transforms are replaced here because, with our stack:

- `param.spatial`, `param.color` and `transform` pick `cuda:0` at import (or inside a call) whenever CUDA exists,
  so a model on another device fails with a device mismatch: here the device is passed in;
- transforms draw from numpy's global RNG and the init from torch's global RNG, so a run is neither
  reproducible per seed nor thread-safe under Streamlit: here one `torch.Generator` per call drives both;
- `render_vis` registers a forward hook on every submodule and never removes it (they pile up on a cached
  model), upsamples anything under 224 px to 224 px, adds ImageNet normalisation by default (ours is inside
  the model), swallows `RuntimeError`s of the forward pass (the loss is then read from stale activations),
  and returns no loss trace and only a tqdm bar: here hooks live in a context manager, sizes and the
  normalisation are ours, errors propagate, and a `progress(done, total)` callback and the trace come back;
- `random_rotate` goes through kornia 0.4.1 (deprecated `torch.jit.script` paths); rotation here uses
  `affine_grid`/`grid_sample`, same maths.

The parameterisation (FFT spectrum with 1/f scaling, decorrelated colour, sigmoid) and the standard transforms
(pad, jitter, random scale, random rotation, jitter) follow Lucent's defaults; the pixel sizes of pad and jitter
are scaled from Lucent's 224 px to the image size. Finished visualisations are cached on disk (`render_cached`), in
a folder bounded in bytes (least recently used removed first, `disk_cache`); concurrent requests for the same
missing visualisation optimise it once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from lucent.optvis import objectives as lucent_objectives
from lucent.optvis.param.color import color_correlation_normalized
from torch import nn

from spade_engine.disk_cache import DiskCache
from spade_engine.engine import sample_hash  # noqa: F401  (re-exported: one content hash for every cache key)
from spade_engine.hooks import forward_hooks
from spade_engine.model_state import eval_mode

Progress = Callable[[int, int], None]
LOGITS = "logits"  # layer name of the model's output (class logits)
DEFAULT_CACHE_DIR = Path("~/.cache/spade_debugger/featvis")


@dataclass(frozen=True)
class FeatVisConfig:
    """Optimisation settings. `input_size`: side the model sees after the transforms (default `image_size`)."""

    image_size: int = 64
    steps: int = 256
    lr: float = 0.05
    seed: int = 0
    fft: bool = True
    decorrelate: bool = True
    transforms: bool = True
    input_size: int | None = None


@dataclass(frozen=True)
class Target:
    """What to maximise: `kind` is a key of `OBJECTIVES`; `index` the channel (or class); `position` (row, col)."""

    kind: str
    layer: str
    index: int
    position: tuple[int, int] | None = None

    def describe(self) -> str:
        where = f" at {self.position}" if self.kind == "unit" and self.position is not None else ""
        return f"{self.kind} {self.index} of {self.layer}{where}"


@dataclass(frozen=True)
class FeatVis:
    """A finished visualisation: `image` (H, W, 3) float32 in [0, 1], `trace` the loss per step."""

    image: np.ndarray
    trace: np.ndarray
    target: Target
    config: FeatVisConfig
    seconds: float
    from_cache: bool = False


# ------------------------------------------------------------------------------------------ objectives


def _channel(t: Target):
    return lucent_objectives.channel(t.layer, t.index)


def _unit(t: Target):
    if t.position is None:
        return _channel(t)  # 1-D outputs (linear layers) have no position: the unit is the channel
    row, col = t.position
    return lucent_objectives.neuron(t.layer, t.index, x=col, y=row)  # explicit: Lucent's defaults swap x/y


def _class_logit(t: Target):
    return lucent_objectives.channel(LOGITS, t.index)


# One line per objective; the UI's select box and the tests read the keys.
OBJECTIVES: dict[str, Callable[[Target], Callable]] = {"channel": _channel, "unit": _unit, "class": _class_logit}


def channel_target(layer: str, index: int) -> Target:
    """Mean activation of channel `index` of `layer` (a unit of a linear layer)."""
    return Target("channel", layer, index)


def unit_target(layer: str, index: int, position: tuple[int, int] | None = None) -> Target:
    """One neuron: channel `index` of `layer` at spatial `position` (row, col); default the centre."""
    return Target("unit", layer, index, position)


def class_target(index: int) -> Target:
    """The logit of class `index` (the model's output)."""
    return Target("class", LOGITS, index)


# ---------------------------------------------------------------------------------------------- layers


def resolve_layer(model: nn.Module, name: str) -> nn.Module | None:
    """The submodule called `name`: dotted (`net.layer3.0.conv1`) or Lucent-style (`net_layer3_0_conv1`).

    Returns None for `"logits"` (the model's own output). Raises KeyError with the known names otherwise.
    """
    if name == LOGITS:
        return None
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    by_lucent_name = {k.replace(".", "_"): m for k, m in modules.items() if k}
    if name in by_lucent_name:
        return by_lucent_name[name]
    raise KeyError(f"Unknown layer '{name}'. Layers: {', '.join(k for k in modules if k)}.")


TORCHSCRIPT_LAYERS = (
    "Layers of a TorchScript model cannot be inspected: feature visualisation of a layer's neurons and neuron "
    "rankings need hooks on the model's layers, which TorchScript does not allow. Upload the weights as a "
    "state_dict with their architecture to explore neurons."
)


def is_scripted(model: nn.Module) -> bool:
    """Whether `model` is or contains a TorchScript module (no forward hooks can run there)."""
    return any(isinstance(m, torch.jit.ScriptModule) for m in model.modules())


def channels_first(module: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """A layer's output with its neurons on dim 1: a Linear's features are on the last dim, so its
    (B, H, W, C) output (ConvNeXt's pointwise convs) becomes (B, C, H, W) and its (B, T, C) output (a ViT's token
    MLP) becomes (B, C, T); conv outputs and (B, C) outputs are returned as they are."""
    if isinstance(module, nn.Linear) and isinstance(output, torch.Tensor) and output.dim() > 2:
        return output.movedim(-1, 1)
    return output


def _record(store: dict[str, torch.Tensor], name: str, module: nn.Module, output: torch.Tensor):
    """Store the output neurons-first; a moved output is handed back to the forward as a view of the stored
    tensor, so that gradients with respect to `store[name]` reach the logits."""
    moved = channels_first(module, output)
    store[name] = moved
    return moved.movedim(1, -1) if moved is not output else None


@contextmanager
def capture(model: nn.Module, names: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named layers on every forward pass; hooks are removed on exit.

    Yields a dict filled by the forward pass: `name -> output` with the neurons on dim 1 (`channels_first`):
    (B, C, H, W) for spatial layers, (B, C, T) for token layers, (B, C) otherwise. `"logits"` is filled by the
    caller.

    Raises:
        ValueError: a named layer is inside a TorchScript model (`TORCHSCRIPT_LAYERS`).
    """
    store: dict[str, torch.Tensor] = {}
    modules = {name: resolve_layer(model, name) for name in names}
    if any(isinstance(m, torch.jit.ScriptModule) for m in modules.values()):
        raise ValueError(TORCHSCRIPT_LAYERS)
    watched = {name: m for name, m in modules.items() if m is not None}
    with forward_hooks(watched, lambda name, m, i, o: _record(store, name, m, o)):
        yield store


def canonical_layer(model: nn.Module, name: str) -> str:
    """The dotted name of a layer given dotted or Lucent-style (`_`) names; `"logits"` stays."""
    module = resolve_layer(model, name)
    if module is None:
        return LOGITS
    return next(k for k, m in model.named_modules() if m is module)


def layer_output_shape(model: nn.Module, layer: str, input_size: int, device: str | torch.device = "cpu") -> tuple:
    """Shape of one sample's output of `layer`, neurons first: (C, H, W) for convs and channels-last Linear
    layers, (C, T) for token layers, (K,) for linear layers and logits."""
    x = torch.full((1, 3, input_size, input_size), 0.5, device=device)
    with torch.no_grad(), capture(model, [layer]) as store:
        store[LOGITS] = model(x)
    return tuple(store[layer].shape[1:])


def check_target(model: nn.Module, target: Target, input_size: int, device: str | torch.device = "cpu") -> None:
    """Raise ValueError with a user message if the target's channel or position is out of range."""
    if target.kind not in OBJECTIVES:
        raise ValueError(f"Unknown objective '{target.kind}'. Known: {', '.join(OBJECTIVES)}.")
    shape = layer_output_shape(model, target.layer, input_size, device)
    if not 0 <= target.index < shape[0]:
        raise ValueError(
            f"{target.layer} has {shape[0]} channels: neuron {target.index} is out of range (0–{shape[0] - 1})."
        )
    if target.kind == "unit" and target.position is not None:
        if len(shape) != 3:
            raise ValueError(f"{target.layer} has no spatial positions: use a channel objective (position None).")
        row, col = target.position
        if not (0 <= row < shape[1] and 0 <= col < shape[2]):
            raise ValueError(f"{target.layer} is {shape[1]}×{shape[2]}: position {target.position} is outside it.")


# ------------------------------------------------------------------------------------ parameterisation


def _fft_image(size: int, gen: torch.Generator, device, sd: float = 0.01, decay_power: float = 1.0):
    """Lucent's `fft_image`: a (1, 3, size, size) image from a 1/f-scaled random spectrum."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[: size // 2 + 1 + (size % 2)]
    freqs = np.sqrt(fx * fx + fy * fy)  # (size, size//2+1)
    spectrum = (torch.randn((1, 3, *freqs.shape, 2), generator=gen) * sd).to(device).requires_grad_(True)
    scale = torch.tensor(1.0 / np.maximum(freqs, 1.0 / size) ** decay_power, dtype=torch.float32, device=device)

    def image() -> torch.Tensor:
        scaled = torch.view_as_complex(scale[None, None, ..., None] * spectrum)
        return torch.fft.irfftn(scaled, s=(size, size), norm="ortho")[:, :, :size, :size] / 4.0  # Lucid's magic 4

    return [spectrum], image


def _pixel_image(size: int, gen: torch.Generator, device, sd: float = 0.01):
    pixels = (torch.randn((1, 3, size, size), generator=gen) * sd).to(device).requires_grad_(True)
    return [pixels], lambda: pixels


def image_param(config: FeatVisConfig, gen: torch.Generator, device) -> tuple[list[torch.Tensor], Callable]:
    """Parameters to optimise and `image_f() -> (1, 3, S, S)` in [0, 1] (Lucent's `param.image`)."""
    make = _fft_image if config.fft else _pixel_image
    params, raw = make(config.image_size, gen, device)
    corr = torch.tensor(color_correlation_normalized.T, device=device)

    def image_f() -> torch.Tensor:
        img = raw()
        if config.decorrelate:
            img = (img.permute(0, 2, 3, 1) @ corr).permute(0, 3, 1, 2)  # (1, 3, S, S)
        return torch.sigmoid(img)

    return params, image_f


# ------------------------------------------------------------------------------------------ transforms


def _randint(gen: torch.Generator, n: int) -> int:
    return int(torch.randint(n, (1,), generator=gen))


def _jitter(d: int, gen: torch.Generator):
    def inner(img: torch.Tensor) -> torch.Tensor:  # Lucid's jitter: random crop losing d-1 pixels
        dx, dy = _randint(gen, d), _randint(gen, d)
        h, w = img.shape[-2:]
        return img[..., dy : dy + h - d + 1, dx : dx + w - d + 1]

    return inner


def _pad(w: int):
    return lambda img: F.pad(img, [w] * 4, mode="constant", value=0.5)


def _random_scale(scales: list[float], gen: torch.Generator):
    def inner(img: torch.Tensor) -> torch.Tensor:
        s = scales[_randint(gen, len(scales))]
        h, w = img.shape[-2:]
        return F.interpolate(img, size=(math.ceil(s * h), math.ceil(s * w)), mode="bilinear", align_corners=True)

    return inner


def _random_rotate(degrees: list[float], gen: torch.Generator):
    def inner(img: torch.Tensor) -> torch.Tensor:
        a = math.radians(degrees[_randint(gen, len(degrees))])
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], device=img.device)
        grid = F.affine_grid(theta[None].expand(img.shape[0], 2, 3), list(img.shape), align_corners=False)
        return F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    return inner


def standard_transforms(image_size: int, gen: torch.Generator) -> list[Callable]:
    """Lucent's `standard_transforms`, pixel sizes scaled from 224 px to `image_size`."""
    f = image_size / 224
    return [
        _pad(max(1, round(12 * f))),
        _jitter(max(2, round(8 * f)), gen),
        _random_scale([1 + (i - 5) / 50.0 for i in range(11)], gen),
        _random_rotate(list(range(-10, 11)) + 5 * [0], gen),
        _jitter(max(2, round(4 * f)), gen),
    ]


# -------------------------------------------------------------------------------------------- renderer


def render(
    model: nn.Module,
    target: Target,
    config: FeatVisConfig = FeatVisConfig(),
    device: str | torch.device = "cpu",
    progress: Progress | None = None,
) -> FeatVis:
    """Optimise an image that maximises `target` in `model` (weights untouched; deterministic per seed).

    Args:
        model: takes images in [0, 1] (it normalises itself); already on `device`.
        target: channel, unit or class logit (`OBJECTIVES`).
        config: image size, steps, learning rate, seed, parameterisation, transforms.
        device: where the image lives (the model's device).
        progress: called as `progress(done_steps, total_steps)`.

    Returns:
        FeatVis with the image (H, W, 3) in [0, 1] and the loss per step (negative activation).
    """
    input_size = config.input_size or config.image_size
    with eval_mode(model):
        check_target(model, target, input_size, device)
    gen = torch.Generator().manual_seed(config.seed)
    params, image_f = image_param(config, gen, device)
    tfs = standard_transforms(config.image_size, gen) if config.transforms else []
    optimizer = torch.optim.Adam(params, lr=config.lr)
    objective = OBJECTIVES[target.kind](target)
    trace, start = [], time.perf_counter()
    with eval_mode(model), capture(model, [target.layer]) as store:
        for step in range(config.steps):
            loss = _step(model, image_f, tfs, input_size, objective, store, params, optimizer)
            trace.append(loss)
            if progress is not None:
                progress(step + 1, config.steps)
    with torch.no_grad():
        image = image_f()[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)  # (S, S, 3)
    return FeatVis(image, np.asarray(trace, dtype=np.float32), target, config, time.perf_counter() - start)


def _step(model, image_f, tfs, input_size, objective, store, params, optimizer) -> float:
    x = image_f()
    for tf in tfs:
        x = tf(x)
    if x.shape[-1] != input_size or x.shape[-2] != input_size:
        x = F.interpolate(x, size=(input_size, input_size), mode="bilinear", align_corners=True)
    store[LOGITS] = model(x)
    loss = objective(lambda name: store[name])
    grads = torch.autograd.grad(loss, params)  # only the image: the model's .grad stays untouched
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    optimizer.step()
    return float(loss.detach())


# ----------------------------------------------------------------------------------------------- cache


def cache_dir(override: str | Path | None = None) -> Path:
    """Cache folder: `override`, else `$SPADE_CACHE_DIR/featvis`, else `~/.cache/spade_debugger/featvis`."""
    if override is not None:
        return Path(override).expanduser()
    root = os.environ.get("SPADE_CACHE_DIR")
    return Path(root).expanduser() / "featvis" if root else DEFAULT_CACHE_DIR.expanduser()


def weights_fingerprint(model: nn.Module) -> str:
    """A cheap fingerprint of the weights (shapes, sums and a few values per tensor), so that a retrained or
    re-shipped model under the same name does not hit stale cache entries."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            flat = t.detach().flatten().double()
            stats = [flat.sum(), flat.abs().sum(), (flat * flat).sum()] if flat.numel() else []
            h.update(f"{name}{tuple(t.shape)}{[round(float(v), 9) for v in stats]}".encode())
            h.update(flat[:8].cpu().numpy().tobytes() + flat[-8:].cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def cache_key(
    model_name: str, target: Target, variant: str, sparsity: float | str, config: FeatVisConfig, weights: str = ""
) -> str:
    """File stem for (model, weights fingerprint, layer, neuron, sample hash or "dense", sparsity, settings)."""
    key = {"model": model_name, "target": asdict(target), "variant": variant, "sparsity": str(sparsity)}
    key["weights"] = weights
    key["config"] = asdict(replace(config, input_size=config.input_size or config.image_size))
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def render_cached(
    model: nn.Module,
    target: Target,
    config: FeatVisConfig = FeatVisConfig(),
    device: str | torch.device = "cpu",
    *,
    model_name: str,
    variant: str = "dense",
    sparsity: float | str = 0.0,
    directory: str | Path | None = None,
    progress: Progress | None = None,
) -> FeatVis:
    """`render` through the disk cache: a finished visualisation is loaded, not optimised again.

    Args:
        model_name, variant, sparsity: identify the network: variant "dense" or the sample hash of the
            SPADE sample; sparsity a number or a description of the prune configuration. A fingerprint of
            the weights joins the key, so a retrained model never gets stale images.
        directory: cache folder (`cache_dir()` when None).

    Returns:
        FeatVis; `from_cache` tells whether it was loaded.
    """
    target = replace(target, layer=canonical_layer(model, target.layer))
    key = cache_key(model_name, target, variant, sparsity, config, weights_fingerprint(model))
    store = disk_cache(directory)
    with store.locks.hold(key):  # a second request for the same visualisation waits, then loads it
        cached = _load(store, key, target, config)
        if cached is not None:
            return cached
        result = render(model, target, config, device, progress)
        store.put(key, lambda f: np.savez_compressed(f, image=result.image, trace=result.trace, seconds=result.seconds))
    return result


_CACHES: dict[Path, DiskCache] = {}
_CACHES_LOCK = threading.Lock()


def disk_cache(directory: str | Path | None = None) -> DiskCache:
    """The bounded cache of folder `cache_dir(directory)` (one object, and so one set of locks, per folder)."""
    root = cache_dir(directory)
    with _CACHES_LOCK:
        return _CACHES.setdefault(root, DiskCache(root, ".npz"))


def _load(store: DiskCache, key: str, target: Target, config: FeatVisConfig) -> FeatVis | None:
    path = store.hit(key)
    if path is None:
        return None
    try:
        with np.load(path) as z:
            return FeatVis(z["image"], z["trace"], target, config, float(z["seconds"]), from_cache=True)
    except FileNotFoundError:  # evicted by another process between the hit and the read
        return None
    except (OSError, ValueError, KeyError):
        path.unlink(missing_ok=True)  # damaged file: render again
        return None


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> uint8 for display or PNG."""
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
