"""The sidebar model picker: shipped testbed models, torchvision / timm models, or the user's own checkpoint.

    model = model_picker()   # stops the page (after an st.error / st.info) when no model is usable

A checkpoint comes with its preprocessing (input size, mean and std) and optional class names, typed into the
sidebar; `checkpoint_normalisation` turns the typed mean and std into numbers or says in plain words what is wrong.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import streamlit as st
import torch

from pages.ui import cache, keys
from pages.ui.state import drop_upload, kept_upload, persisted
from spade_engine import models
from spade_engine.models import LoadedModel, ModelLoadError

CHECKPOINT = "__checkpoint__"  # model-picker option: the user's own checkpoint
CHECKPOINT_TYPES = ["pt", "pth", "ckpt", "bin", "ts", "safetensors"]


@dataclass(frozen=True)
class ModelChoice:
    """The model the user picked: `key` names it in every cache (registry name or checkpoint digest)."""

    key: str
    loaded: LoadedModel = field(compare=False)
    device: str

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.loaded.class_names


def model_picker(device: str | None = None, stop: bool = True) -> ModelChoice | None:
    """Sidebar model picker: shipped testbed models first (default), torchvision models, or an uploaded checkpoint.

    Args:
        device: where to load the model; default `cache.default_device()`.
        stop: stop the page run when no model is usable (an st.error / st.info says why).

    Returns:
        The chosen model, or None when unusable and `stop` is False.
    """
    device = device or cache.default_device()
    infos = {i.name: i for i in cache.model_infos()}
    options = [*infos, CHECKPOINT]
    name = persisted(
        st.sidebar.selectbox, keys.MODEL, options[0], "Model", options=options,
        valid=lambda v: v in options, format_func=lambda n: _model_label(infos.get(n)),
        help="Shipped testbed models have ground truth (facets, trojan patch); torchvision and timm models need "
        "their ImageNet weights in the torch / Hugging Face cache. Your own weights: the last entry.",
    )  # fmt: skip
    try:
        if name == CHECKPOINT:
            choice = _checkpoint_model(device)
        else:
            drop_upload(keys.CKPT_FILE)  # a shipped model replaces an uploaded checkpoint
            choice = ModelChoice(name, cache.load_model(name, device), device)
    except ModelLoadError as e:  # WeightsUnavailableError and CheckpointMismatchError included
        st.error(str(e), icon=":material/error:")
        choice = None
    if choice is None and stop:
        st.stop()
    return choice


def _model_label(info) -> str:
    if info is None:
        return "Upload your own checkpoint…"
    if info.family == "torchvision" and not cache.weights_cached(info.name):
        return f"{info.title} — weights not downloaded"
    if info.family == "timm" and models.timm_weights_file(info.name) is None:
        return f"{info.title} — weights not downloaded"
    return info.title


def checkpoint_normalisation(mean: str, std: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Parse the typed per-channel normalisation of a checkpoint's inputs, `(x - mean) / std`.

    Args:
        mean: three comma-separated numbers (R, G, B), e.g. "0.485, 0.456, 0.406".
        std: three comma-separated positive numbers.

    Returns:
        (mean, std), each a triple of floats.

    Raises:
        ModelLoadError: not three numbers each, a number that is not finite, or a std that is not positive (the
            message says which, in plain words).
    """
    triples = []
    for what, text in (("Mean", mean), ("Std", std)):
        parts = [p.strip() for p in text.split(",")]
        try:
            values = tuple(float(p) for p in parts)
        except ValueError:
            raise ModelLoadError(f"{what} needs three comma-separated numbers (R, G, B), e.g. `0.5, 0.5, 0.5`; "
                                 f"got `{text}`.") from None  # fmt: skip
        if len(values) != 3 or not all(math.isfinite(v) for v in values):
            raise ModelLoadError(f"{what} needs exactly three finite numbers (R, G, B), e.g. `0.5, 0.5, 0.5`; "
                                 f"got {len(values)} in `{text}`.")  # fmt: skip
        triples.append(values)
    if min(triples[1]) <= 0:
        raise ModelLoadError(f"Std must be positive in every channel (inputs are divided by it); got `{std}`.")
    return triples[0], triples[1]


def _checkpoint_model(device: str) -> ModelChoice | None:
    """Upload form for a user checkpoint: weights for a known architecture (PyTorch or .safetensors, any training
    script's wrapper), or a TorchScript file."""
    side = st.sidebar
    upload = kept_upload("Checkpoint (.pt, .pth, .ckpt, .safetensors, TorchScript)", CHECKPOINT_TYPES, keys.CKPT_FILE)
    archs = cache.architecture_names()
    arch = persisted(
        side.selectbox,
        keys.CKPT_ARCH,
        archs[0],
        "Architecture (ignored for TorchScript)",
        options=archs,
        valid=lambda v: v in archs,
    )
    with side.expander("Checkpoint preprocessing and classes"):
        size = persisted(st.number_input, keys.CKPT_SIZE, 224, "Input size (px)", min_value=16, max_value=1024, step=8)
        mean = persisted(st.text_input, keys.CKPT_MEAN, "0.485, 0.456, 0.406", "Mean (R, G, B)")
        std = persisted(st.text_input, keys.CKPT_STD, "0.229, 0.224, 0.225", "Std (R, G, B)")
        names = persisted(st.text_area, keys.CKPT_CLASSES, "", "Class names (one per line, optional)")
    if upload is None:
        st.info("Upload a checkpoint in the sidebar: weights for one of the listed architectures (`torch.save(model."
                "state_dict(), path)`, a Lightning `.ckpt`, a torchvision training checkpoint or a `.safetensors` file), "
                "or a TorchScript file (`torch.jit.save`). A model with one output logit is shown as a two-class "
                "(sigmoid) classifier; give its two class names.", icon=":material/upload_file:")  # fmt: skip
        return None
    normalisation = checkpoint_normalisation(mean, std)
    filename, data = upload
    digest = hashlib.sha256(data).hexdigest()[:16]
    class_names = tuple(n.strip() for n in names.splitlines() if n.strip())
    loaded = cache.load_checkpoint(digest, arch, class_names, int(size), *normalisation, filename, device, _data=data)
    return ModelChoice(f"checkpoint:{digest}:{loaded.info.arch}:{int(size)}:{mean}:{std}", loaded, device)
