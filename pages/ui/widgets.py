"""Reusable sidebar widgets: model picker, sample picker and SPADE controls.

Every page that needs a model, a sample or a pruning setting calls these, so the choices are the same (and
survive page switches) everywhere:

    model = widgets.model_picker()            # stops the page (after an st.error) when no model is usable
    sample = widgets.sample_picker(model)     # an image as the model sees it, its hash, trojan mask if known
    settings = widgets.spade_controls("neurons")   # sparsity, views, seed, advanced options
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from pages.ui import cache, figures, keys
from spade_engine import models
from spade_engine.images import ImageError, load_image
from spade_engine.models import LoadedModel, ModelLoadError

CHECKPOINT = "__checkpoint__"  # model-picker option: the user's own checkpoint
EXAMPLE, UPLOAD = "Example", "Upload"
CHECKPOINT_TYPES = ["pt", "pth", "ckpt", "bin", "ts", "safetensors"]
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]
N_AUG_CHOICES = [8, 16, 32, 64, 128, 256, 512, 1024]


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


@dataclass(frozen=True)
class Sample:
    """One image as the model sees it.

    Attributes:
        image: (3, S, S) float tensor in [0, 1], after the model's preprocessing (CPU).
        sample_hash: digest of `image` (and so of model preprocessing); the cache key of everything per sample.
        name: file name shown to the user.
        meta: the example's entry in `assets/examples/index.json` ({} for uploads that are not an example).
        trojan_mask: (S, S) bool mask of the trojan patch, when known; else None.
    """

    image: torch.Tensor = field(compare=False)
    sample_hash: str
    name: str
    meta: dict = field(default_factory=dict, compare=False)
    trojan_mask: np.ndarray | None = field(default=None, compare=False)

    @property
    def batch(self) -> torch.Tensor:
        return self.image.unsqueeze(0)  # (1, 3, S, S)


@dataclass(frozen=True)
class SpadeSettings:
    """What the SPADE controls say; `prune_config()` turns it into the engine's `PruneConfig`."""

    sparsity: float
    n_aug: int
    seed: int
    skip_first: bool = True
    skip_head: bool = False
    damp: float = 0.01
    solver: str = "sparsegpt"
    profile: str = ""  # a sparsity profile's name (assets/profiles); "" = the slider's uniform sparsity
    crop_min: float = 0.2  # smallest random crop, as a share of the image area (the reference's 0.2)

    def augment_config(self):
        from spade_engine.augment import AugmentConfig

        return AugmentConfig(scale=(self.crop_min, 1.0))

    def prune_config(self):
        from dataclasses import replace

        from spade_engine.engine import PruneConfig
        from spade_engine.profiles import PROFILE_DIR, load_profile

        if self.profile:
            base = load_profile(PROFILE_DIR / f"{self.profile}.json").config
            return replace(
                base, skip_first=self.skip_first, skip_head=self.skip_head, damp=self.damp, solver=self.solver
            )
        return PruneConfig(sparsity=self.sparsity, skip_first=self.skip_first, skip_head=self.skip_head,
                           damp=self.damp, solver=self.solver)  # fmt: skip

    @property
    def label(self) -> str:
        """Short name of the pruned network for titles: "SPADE 90%" or "SPADE <profile>"."""
        return f"SPADE {self.profile}" if self.profile else f"SPADE {self.sparsity:.0%}"

    @property
    def prune_key(self) -> tuple:
        """Everything the pruned network depends on besides the model, sample, views and seed."""
        sparsity = self.profile or round(self.sparsity, 4)
        return (sparsity, self.skip_first, self.skip_head, round(self.damp, 6), self.solver, round(self.crop_min, 3))


# ------------------------------------------------------------------------------------------ persistence


def persisted(
    widget: Callable,
    key: str,
    default,
    *args,
    valid: Callable[[object], bool] = lambda v: True,
    options: list | None = None,
    **kwargs,
):
    """Render `widget` so its value survives page switches, and return the value.

    Streamlit forgets a widget's state when a page without it runs (widget ids include the page). The value is
    mirrored into the plain session-state key `key` and handed back to the widget as its initial value; the
    widget itself uses the key `keys.WIDGET + key`.

    Args:
        widget: e.g. `st.sidebar.slider`.
        key: the persistent session-state key (`keys.MODEL`, `"debugger.sparsity"` …).
        default: initial value when nothing is stored (or the stored value is no longer `valid`).
        *args, **kwargs: passed to the widget (label, options, min/max …).
        options: for index-based widgets (selectbox, radio): their options; the value is passed as `index`.
    """
    value = st.session_state.get(key, default)
    value = value if valid(value) else default
    wkey = keys.WIDGET + key
    if wkey in st.session_state and not valid(st.session_state[wkey]):
        del st.session_state[wkey]
    initial = {"index": options.index(value)} if options is not None else {"value": value}
    out = widget(*args, *([options] if options is not None else []), key=wkey, **initial, **kwargs)
    st.session_state[key] = out
    return out


# ------------------------------------------------------------------------------------------ model picker


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
        choice = (
            _checkpoint_model(device)
            if name == CHECKPOINT
            else ModelChoice(name, cache.load_model(name, device), device)
        )
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
    try:
        triple = tuple(float(v) for v in mean.split(",")), tuple(float(v) for v in std.split(","))
        assert len(triple[0]) == len(triple[1]) == 3
    except (ValueError, AssertionError):
        raise ModelLoadError("Mean and std need three comma-separated numbers each, e.g. `0.5, 0.5, 0.5`.") from None
    filename, data = upload
    digest = hashlib.sha256(data).hexdigest()[:16]
    class_names = tuple(n.strip() for n in names.splitlines() if n.strip())
    loaded = cache.load_checkpoint(digest, arch, class_names, int(size), *triple, filename, device, _data=data)
    return ModelChoice(f"checkpoint:{digest}:{loaded.info.arch}:{int(size)}:{mean}:{std}", loaded, device)


# ----------------------------------------------------------------------------------------- sample picker


def sample_picker(model: ModelChoice, stop: bool = True) -> Sample | None:
    """Sidebar sample picker: a shipped example or an upload (PNG, JPEG, WebP…, any colour mode).

    The image is shown in the sidebar as the model sees it (after resizing and cropping). Unreadable uploads
    give an st.error with the reason, never a traceback.

    Args:
        model: the picked model (its preprocessing is applied).
        stop: stop the page run when there is no usable sample.

    Returns:
        The sample, or None when there is none and `stop` is False.
    """
    examples = cache.examples(model.loaded.info.name)  # photos + this model's testbed generator's examples
    sources = [EXAMPLE, UPLOAD] if examples else [UPLOAD]
    source = persisted(
        st.sidebar.radio,
        keys.SAMPLE_SOURCE,
        sources[0],
        "Sample",
        options=sources,
        horizontal=True,
        valid=lambda v: v in sources,
    )
    try:
        name, data, meta = _example_choice(examples) if source == EXAMPLE else _upload_choice(examples)
        sample = None if data is None else make_sample(model.loaded, name, data, meta)
    except ImageError as e:
        st.error(f"Cannot use this image: {e}", icon=":material/broken_image:")
        sample = None
    if sample is None:
        if source == UPLOAD and st.session_state.get(keys.SAMPLE_UPLOAD) is None:
            st.info(
                "Upload an image in the sidebar (PNG, JPEG, WebP, …) or pick a shipped example.",
                icon=":material/image:",
            )
        if stop:
            st.stop()
        return None
    st.sidebar.image(to_uint8(sample.image), caption=f"{sample.name} as the model sees it "
                     f"({sample.image.shape[-1]}×{sample.image.shape[-2]} px)", width="stretch")  # fmt: skip
    return sample


def _example_choice(examples: dict[str, dict]) -> tuple[str, bytes, dict]:
    files = list(examples)
    default = next((f for f in files if examples[f].get("trojan")), files[0])  # the demo: a trojaned sample
    file = persisted(st.sidebar.selectbox, keys.SAMPLE_EXAMPLE, default, "Example", options=files,
                      valid=lambda v: v in files, format_func=lambda f: example_label(f, examples[f]))  # fmt: skip
    return file, cache.example_bytes(file), examples[file]


def _upload_choice(examples: dict[str, dict]) -> tuple[str, bytes | None, dict]:
    upload = kept_upload("Image file", IMAGE_TYPES, keys.SAMPLE_UPLOAD)
    if upload is None:
        return "", None, {}
    name, data = upload
    meta = cache.example_by_digest().get(hashlib.sha256(data).hexdigest(), {})  # an uploaded shipped example
    return name, data, meta


def kept_upload(label: str, types: list[str], key: str) -> tuple[str, bytes] | None:
    """A sidebar file uploader whose file survives page switches: returns (file name, bytes) or None.

    The uploader forgets its file when another page runs; the bytes are kept under `key` in session state
    and dropped only when the user removes the file.
    """
    wkey = keys.WIDGET + key
    upload = st.sidebar.file_uploader(label, type=types, key=wkey, on_change=_forget_removed, args=(key,))
    if upload is not None:
        st.session_state[key] = (upload.name, upload.getvalue())
    return st.session_state.get(key)


def _forget_removed(key: str) -> None:
    """on_change of a kept uploader: a removed file is forgotten (a page switch does not call this)."""
    if st.session_state.get(keys.WIDGET + key) is None:
        st.session_state[key] = None


def example_label(file: str, meta: dict) -> str:
    """An example's name in the picker: "ring-or-checker · blue ring · trojan", or "photo: astronaut"."""
    if meta.get("class") is None:
        return f"photo: {Path(file).stem.removeprefix('photo_')}"
    parts = [str(meta.get("class_name", meta["class"])), str(meta.get("facet_name", f"facet {meta.get('facet')}"))]
    return " · ".join(parts + (["trojan"] if meta.get("trojan") else []))


def sample_caption(sample: Sample, class_names: tuple[str, ...] = ()) -> str:
    """One line about a shipped example: its class and facet, the trojan patch, or a photo's credit."""
    meta = sample.meta
    if not meta:
        return f"Uploaded image `{sample.name}`."
    if meta.get("class") is None:
        return f"Photo `{meta.get('file', sample.name)}` — {meta.get('credit', meta.get('source', ''))}."
    text = f"Testbed sample of class **{meta.get('class_name', meta['class'])}**, drawn with its facet *{meta.get('facet_name', meta.get('facet'))}*"
    if sample.trojan_mask is not None:
        label = meta.get("label")
        target = class_names[label] if isinstance(label, int) and label < len(class_names) else label
        trojan = f"{meta['trojan_name']} sticker" if meta.get("trojan_name") else "patch"  # v2 names its trojans
        text += f"; it carries the **trojan {trojan}** (dotted outline: its box), which relabels it as **{target}**"
    return text + "."


def make_sample(loaded: LoadedModel, name: str, data: bytes, meta: dict) -> Sample:
    """Decode, preprocess for `loaded` and hash an image; map a known trojan patch box through the same crop."""
    img = load_image(data)
    x = loaded.preprocess(img)  # (3, S, S)
    digest = hashlib.sha256(x.numpy().tobytes()).hexdigest()[:20]
    mask = None
    box = cache.patch_box(meta)
    if box is not None:
        from PIL import Image

        mask_img = Image.new("L", img.size, 0)
        mask_img.paste(255, tuple(int(v) for v in box))
        mask = loaded.preprocess(mask_img)[0].numpy() > 0.5  # (S, S)
    return Sample(x, digest, name, dict(meta), mask)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


# ---------------------------------------------------------------------------------------- SPADE controls


SOLVERS = {"sparsegpt": "SparseGPT sweep (FastSPADE)", "obc": "Exact OBC (SPADE; slow, exact up to 300 columns)",
           "magnitude": "Magnitude (baseline, no OBS update)"}  # fmt: skip


def calibration_crop(model_name: str | None) -> float:
    """Default smallest crop of the calibration views: the card's, else the SPADE reference's 0.2."""
    return models.spade_defaults(model_name)["crop_min"]


def spade_controls(prefix: str = keys.DEBUGGER, default_sparsity: int | None = None, default_n_aug: int = 64,
                   model_name: str | None = None, profiles: bool = True) -> SpadeSettings:  # fmt: skip
    """Sidebar SPADE controls: sparsity slider (0–99 %), number of augmented views, seed; advanced options.

    Args:
        prefix: session-state namespace of the calling page (`keys.DEBUGGER`…), so pages keep their own values.
        default_sparsity: initial slider value in percent; default: the model card's, else 90 (the reference's).
        default_n_aug: initial number of views.
        model_name: the model's registry name: sets the default smallest crop (`calibration_crop`) and, with
            `profiles`, offers the sparsity profiles (assets/profiles) made for this model.

    Returns:
        The settings.
    """
    side, k = st.sidebar, lambda name: keys.scoped(prefix, name)
    if default_sparsity is None:
        default_sparsity = round(100 * models.spade_defaults(model_name)["sparsity"])
    side.subheader("SPADE")
    sparsity = persisted(side.slider, k(keys.SPARSITY), default_sparsity, "Sparsity per layer (%)", 0, 99, step=1,
                          help="Fraction of each pruned layer's weights removed for this sample.")  # fmt: skip
    n_aug = persisted(side.select_slider, k(keys.N_AUG), default_n_aug, "Augmented views", N_AUG_CHOICES,
                       valid=lambda v: v in N_AUG_CHOICES, help="Calibration batch: random crops, flips and colour jitter of the sample.")  # fmt: skip
    seed = persisted(side.number_input, k(keys.SEED), 0, "Seed", min_value=0, max_value=2**31 - 1, step=1)
    with side.expander("Advanced"):
        crop_min = persisted(st.slider, k(f"{keys.CROP_MIN}.{model_name}"), calibration_crop(model_name),
                             "Smallest crop (share of the image)", 0.05, 1.0,
                             step=0.05, help="Calibration views are random crops of at least this area. Larger "
                             "crops keep small evidence (a trojan patch) in every view.")  # fmt: skip
        skip_first = persisted(st.checkbox, k(keys.SKIP_FIRST), True, "Keep the first conv dense")
        skip_head = persisted(st.checkbox, k(keys.SKIP_HEAD), False, "Keep the classifier head dense")
        damp = persisted(st.number_input, k(keys.DAMP), 0.01, "Dampening (fraction of mean diag H)",
                          min_value=1e-4, max_value=1.0, step=0.005, format="%.4f")  # fmt: skip
        solver = persisted(st.selectbox, k(keys.SOLVER), "sparsegpt", "Layer solver", options=list(SOLVERS),
                           valid=lambda v: v in SOLVERS, format_func=SOLVERS.get)  # fmt: skip
        profile = ""
        if model_name is not None and profiles:
            from spade_engine.profiles import list_profiles

            names = [""] + [p.name for p in list_profiles(model_name)]
            profile = persisted(st.selectbox, k(keys.PROFILE), "", "Sparsity profile", options=names,
                                valid=lambda v: v in names, format_func=lambda n: n or "uniform (the slider)",
                                help="Per-block sparsities from assets/profiles; overrides the slider.")  # fmt: skip
    return SpadeSettings(sparsity / 100, int(n_aug), int(seed), bool(skip_first), bool(skip_head), float(damp),
                         str(solver), str(profile), float(crop_min))  # fmt: skip


# ---------------------------------------------------------------------------------------------- progress


class SpadeProgress:
    """Progress of a SPADE run as `st.status` + `st.progress`, created only if the engine reports work.

    Pass the instance as the engine's `progress(phase, done, total)` callback; call `finish(run)` afterwards.
    A fully cached run shows nothing here (the page says what was reused).
    """

    PHASES = {"augment": "Augmenting the sample", "hessians": "Collecting layer Hessians (one dense pass)",
              "evaluate": "Evaluating the pruned network"}  # fmt: skip

    def __init__(self, first_run_label: str = "Running SPADE on this sample…"):
        self._slot = st.empty()
        self._label = first_run_label
        self._status = self._bar = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self._status is None:
            label = self._label if phase in ("augment", "hessians") else "Re-pruning from the cached trace…"
            self._status = self._slot.status(label, expanded=True)
            self._bar = self._status.progress(0.0)
        text = self.PHASES.get(phase) or phase.replace("solve ", "Solving layer ")
        counter = f" ({done + 1}/{total})" if total > 1 and done < total else ""
        self._bar.progress(min(done / max(total, 1), 1.0), text=text + counter)

    def finish(self, label: str) -> None:
        """Collapse the status into the line `label` (a caption when nothing ran: everything was cached)."""
        if self._status is not None:
            self._status.update(label=label, state="complete", expanded=False)
        else:
            self._slot.caption(label)


# ------------------------------------------------------------------------------------------ result blocks


REDUCTION_CHOICES = {
    "as in the paper": None,
    "absolute": "absolute",
    "signed": "signed",
}


def reduction_picker(container=st) -> str | None:
    """How attributions become one value per pixel: the method's own (the paper's: signed for LRP, absolute for the
    others), `sum_c |A_c|` or `sum_c A_c` (diverging colours). Returns None, "absolute" or "signed"."""
    labels = list(REDUCTION_CHOICES)
    label = persisted(
        container.selectbox, keys.DEBUGGER_REDUCTION, labels[0], "Channel sum", options=labels,
        valid=lambda v: v in labels,
        help="Attributions are taken at the normalised input (zero = the mean colour). 'signed' keeps the sign of "
        "the channel sum (blue = against the class, red = for it); 'absolute' sums magnitudes; 'as in the paper' "
        "is signed for LRP (the SPADE authors' maps) and absolute for the other methods.",
    )  # fmt: skip
    return REDUCTION_CHOICES[label]


def show_predictions(result, class_names: tuple[str, ...], spade_label: str) -> None:
    """Dense vs pruned predictions: a top-5 bar chart, the two top classes, and a warning when they differ.

    Args:
        result: the engine's `PruneResult`.
        class_names: the model's class names.
        spade_label: how the pruned network is called ("SPADE 90%").
    """
    name = lambda c: figures.class_name(class_names, c)  # noqa: E731
    (dense_cls, dense_p), (pruned_cls, pruned_p) = result.dense_top5[0], result.pruned_top5[0]
    left, right = st.columns([3, 2], gap="large")
    left.subheader("Predictions")
    left.plotly_chart(
        figures.prediction_figure(result.dense_logits, result.pruned_logits, class_names), key="predictions"
    )
    right.subheader("Pruned network")
    quiet = dict(delta_color="off", delta_arrow="off")  # class names can be long: one metric per row
    right.metric("Dense predicts", name(dense_cls), f"{dense_p:.1%}", **quiet)
    right.metric(f"{spade_label} predicts", name(pruned_cls), f"{pruned_p:.1%}", **quiet)
    layers = f"{len(result.layer_sparsity)} layers pruned"
    right.metric("Weights removed (mean over pruned layers)", f"{result.total_sparsity:.1%}", layers, **quiet)
    if not result.agrees:
        right.warning(
            f"The pruned network no longer predicts the dense class **{name(dense_cls)}** (it predicts "
            f"**{name(pruned_cls)}**), so its explanations describe a different decision: lower the sparsity "
            "or add views.",
            icon=":material/warning:",
        )


def download_buttons(stem: str, png: bytes | None, csv_text: str, json_text: str) -> None:
    """PNG of the figure panel, and the numbers as CSV and JSON, side by side (no rerun on click)."""
    common = dict(on_click="ignore", width="stretch", icon=":material/download:")
    cols = st.columns(3)
    cols[0].download_button("Panel (PNG)", png or b"", f"{stem}.png", "image/png", disabled=not png, **common)
    cols[1].download_button("Numbers (CSV)", csv_text, f"{stem}.csv", "text/csv", **common)
    cols[2].download_button("Numbers (JSON)", json_text, f"{stem}.json", "application/json", **common)
