"""The sidebar sample picker, and a sample as the model sees it: decoded, preprocessed, hashed.

    sample = sample_picker(model)   # an image as the model sees it, its hash, the trojan mask if known

The sample's hash (of the preprocessed pixels) keys every per-sample cache; a shipped example's trojan patch box
is mapped through the same preprocessing into a pixel mask.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from pages.ui import cache, keys
from pages.ui.model_picker import ModelChoice
from pages.ui.state import drop_upload, kept_upload, persisted
from spade_engine.images import ImageError, load_image
from spade_engine.models import LoadedModel

EXAMPLE, UPLOAD = "Example", "Upload"
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]


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
        name, data, meta = _example_choice(examples, model) if source == EXAMPLE else _upload_choice(examples)
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


def _example_choice(examples: dict[str, dict], model: ModelChoice) -> tuple[str, bytes, dict]:
    drop_upload(keys.SAMPLE_UPLOAD)  # a shipped example replaces an uploaded image
    files = list(examples)
    default = next((f for f in files if "demo" in examples[f]), None)  # the testbed's demo sample (its rule below)
    default = default or next((f for f in files if examples[f].get("trojan")), None)
    photos = tuple(f for f in files if examples[f].get("class") is None)
    if default is None and photos:  # a real network opens on a photo, by a stated rule (shown under the image)
        default, label, p = cache.default_photo(model.key, photos, model.loaded)
        st.session_state[keys.SAMPLE_RULE] = (default, f"**Why this photo:** it is {cache.PHOTO_RULE}: "
                                              f"{label}, {p:.0%}.")  # fmt: skip
    default = default or files[0]
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


def example_label(file: str, meta: dict) -> str:
    """An example's name in the picker: "ring-or-checker · blue ring · trojan", or "photo: astronaut"."""
    if meta.get("class") is None:
        return f"photo: {Path(file).stem.removeprefix('photo_')}"
    parts = [str(meta.get("class_name", meta["class"])), str(meta.get("facet_name", f"facet {meta.get('facet')}"))]
    return " · ".join(["demo"] * ("demo" in meta) + parts + (["trojan"] if meta.get("trojan") else []))


def demo_note(meta: dict) -> str | None:
    """How the demo sample was chosen (its rule and figures), or None for any other sample."""
    demo = meta.get("demo")
    if not demo:
        rule = st.session_state.get(keys.SAMPLE_RULE)  # a real network's default photo (`cache.PHOTO_RULE`)
        return rule[1] if rule and meta.get("file") == rule[0] else None
    return (f"**Why this sample:** it is {demo['rule']} (`{demo['protocol']}`, sample {demo['sample']}: rank "
            f"{demo['rank']} of {demo['n']}; mean trojan AUC {100 * demo['dense']:.1f}% dense, "
            f"{100 * demo['spade']:.1f}% SPADE-exact). Typical, not the best case.")  # fmt: skip


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
    """Decode, preprocess for `loaded` and hash an image; map a known trojan patch box through the same crop.

    Args:
        loaded: the model whose preprocessing applies.
        name: the file name shown to the user.
        data: the encoded image (any format Pillow reads).
        meta: the example's index entry ({} for a plain upload); its `patch_box` becomes the trojan mask.

    Returns:
        The sample.

    Raises:
        ImageError: the bytes are not a readable image (the message says why).
    """
    img = load_image(data)
    x = loaded.preprocess(img)  # (3, S, S)
    digest = hashlib.sha256(x.numpy().tobytes()).hexdigest()[:20]
    mask_img = _patch_mask_image(meta, img.size)
    mask = None if mask_img is None else loaded.preprocess(mask_img)[0].numpy() > 0.5  # (S, S)
    return Sample(x, digest, name, dict(meta), mask)


def _patch_mask_image(meta: dict, size: tuple[int, int]):  # noqa: ANN202 (PIL image or None)
    """The trojan's pixels at the image's size: the exact shipped mask (the protocol's and the tour's), else the
    patch box filled."""
    from PIL import Image

    exact = cache.patch_mask_bytes(meta)
    if exact is not None:
        mask_img = Image.open(io.BytesIO(exact)).convert("L")
        if mask_img.size == size:
            return mask_img
    box = cache.patch_box(meta)
    if box is None:
        return None
    mask_img = Image.new("L", size, 0)
    mask_img.paste(255, tuple(int(v) for v in box))
    return mask_img


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
