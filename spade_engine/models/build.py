"""Building networks from weights: the architectures a checkpoint can be loaded into, strict loading with a
key-by-key report, the head-size probe, and `load_checkpoint` for a user's file (weights or TorchScript)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from spade_engine.classifier import IMAGENET_MEAN, IMAGENET_STD, describe_output, logits_of
from spade_engine.errors import CheckpointMismatchError, ModelLoadError, ModelOutputError
from spade_engine.models import checkpoints
from spade_engine.models.info import LoadedModel, ModelInfo, wrap
from spade_engine.models.timm import TIMM_MODELS, TIMM_PREFIX, timm_available, timm_data_config, timm_module
from spade_engine.models.torchvision import TORCHVISION_MODELS


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
            archs[name] = lambda k, name=name: timm_module().create_model(name.removeprefix(TIMM_PREFIX), num_classes=k)
    return archs


def build_architecture(arch: str, num_classes: int) -> nn.Module:
    """A randomly initialised `arch` (a key of `architectures()` or any `"timm:<name>"`) with `num_classes` outputs.

    Raises:
        ModelLoadError: unknown architecture, or a timm name without the `timm` package.
    """
    if arch.startswith(TIMM_PREFIX) and arch not in TIMM_MODELS:
        timm_data_config(arch)  # raises for unknown names
        return timm_module().create_model(arch.removeprefix(TIMM_PREFIX), num_classes=num_classes)
    builders = architectures()
    if arch not in builders:
        raise ModelLoadError(f"Unknown architecture '{arch}'. Known: {', '.join(builders)}, or 'timm:<name>'.")
    return builders[arch](num_classes)


PROBE_CLASSES = 997  # head size of the meta-device probe that finds an architecture's head keys (a prime no layer has)
NOT_WEIGHTS = ("num_batches_tracked",)  # BatchNorm step counters: some exporters drop them


def load_strict(net: nn.Module, state: dict[str, torch.Tensor], arch: str) -> None:
    """Load `state` into `net`, every key and shape checked (BatchNorm step counters may be absent).

    Raises:
        CheckpointMismatchError: missing or unexpected keys, or shapes that differ (listed by key).
    """
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
    check_normalisation(mean, std)
    if checkpoints.is_torchscript(data):
        net, arch = checkpoints.load_torchscript(data), "torchscript"
        num_classes = _probe_classes(net, input_size)
    else:
        net, num_classes = _build_from_weights(data, arch, num_classes)
        check_input_size(net, input_size, arch)
    binary = num_classes == 1
    names = _class_names(tuple(class_names), 2 if binary else num_classes)
    info = ModelInfo(
        name, f"{name} ({arch})", "checkpoint", arch, input_size, input_size, names, tuple(mean), tuple(std)
    )
    return LoadedModel(info, wrap(net, info, binary)).to(device)


def _build_from_weights(data: bytes, arch: str, num_classes: int | None) -> tuple[nn.Module, int]:
    """`arch` with the file's weights loaded, and its number of outputs (read from the head when not given)."""
    probe = _meta_build(arch, num_classes or PROBE_CLASSES)
    state = checkpoints.align_state_dict(checkpoints.read_state_dict(data), probe.state_dict())
    if num_classes is None:
        num_classes = _head_classes(state, probe.state_dict(), arch)
    net = build_architecture(arch, num_classes)
    load_strict(net, state, arch)
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


def _head_classes(state: dict[str, torch.Tensor], probe: dict[str, torch.Tensor], arch: str) -> int:
    """Outputs of the checkpoint's head: the first dimension of the weight that has `PROBE_CLASSES` rows in the
    probe; the last 2-D weight of the checkpoint when the probe has no such key.

    Raises:
        CheckpointMismatchError: the probe's head is not among the checkpoint's keys: the keys do not match
            `arch` (the message lists missing and unexpected keys with examples).
        ModelLoadError: no head and no 2-D weight in the checkpoint.
    """
    heads = [k for k, v in probe.items() if v.dim() >= 1 and v.shape[0] == PROBE_CLASSES]
    found = [k for k in heads if k in state]
    if found:
        return int(state[found[0]].shape[0])
    if heads:
        missing = sorted(k for k in set(probe) - set(state) if k.rsplit(".", 1)[-1] not in NOT_WEIGHTS)
        raise CheckpointMismatchError(arch, missing, sorted(set(state) - set(probe)), [])
    mats = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    if not mats:
        raise ModelLoadError(
            f"The checkpoint holds no weight matrix from which to read the number of classes of '{arch}'."
        )
    return int(mats[-1].shape[0])


def check_input_size(net: nn.Module, size: int, arch: str) -> None:
    """Run `net` once on a blank `size` × `size` image, so that a model built for one input size (a ViT with
    learned position embeddings for 224 px) is refused at load time in words, not at first use with a raw error.

    Raises:
        ModelLoadError: the forward pass fails; the message names the size to set (the timm model's own
            `pretrained_cfg` input size when known).
    """
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, 3, size, size))
    except Exception as e:
        cfg = getattr(net, "pretrained_cfg", None) or {}
        native = cfg.get("input_size", (None,))[-1] if isinstance(cfg, dict) else None
        hint = f" ({arch} is built for {native}×{native} px)" if native and native != size else ""
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200].rstrip(".")
        raise ModelLoadError(
            f"The model does not run on {size}×{size} px images{hint}: {reason}. Set the input size (the checkpoint "
            "form's 'Input size', or --input-size) to the size the model was trained on."
        ) from None


def _probe_classes(net: nn.Module, size: int) -> int:
    """Classes of a TorchScript model: the width of its logits on a blank `size` image."""
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
    """`given` when it names every class, ("not n", "n") for one name of a two-class sigmoid head, "class i"
    when none are given.

    Raises:
        ModelLoadError: a number of names that is not the number of classes.
    """
    if len(given) == k:
        return given
    if k == 2 and len(given) == 1:  # a sigmoid head named by its positive class
        return (f"not {given[0]}", given[0])
    if given:
        raise ModelLoadError(
            f"{len(given)} class names were given, but the model has {k} classes: give one name per class, in the "
            "order of the model's outputs (one per line), or none."
        )
    return tuple(f"class {i}" for i in range(k))


def check_normalisation(mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """Check a checkpoint's input normalisation `(x - mean) / std` for images `x` in [0, 1].

    Args:
        mean, std: one value per colour channel (R, G, B).

    Raises:
        ModelLoadError: not three values each, a std that is not positive, or values on a 0–255 scale (a mean
            above 1, or a std above 10: the pixels here are in [0, 1]); the message gives the values to type.
    """
    if len(mean) != 3 or len(std) != 3:
        raise ModelLoadError(f"Mean and std need three values each (R, G, B); got {len(mean)} and {len(std)}.")
    if min(std) <= 0:
        raise ModelLoadError(f"Std must be positive in every channel (inputs are divided by it); got {tuple(std)}.")
    if max(mean) > 1 or max(std) > 10:
        scaled = lambda v: ", ".join(f"{x / 255:.3f}" for x in v)  # noqa: E731
        raise ModelLoadError(
            f"The mean {tuple(mean)} and std {tuple(std)} look like values on a 0–255 scale, but images here are "
            f"in [0, 1]: divide both by 255 (mean {scaled(mean)}, std {scaled(std)})."
        )
