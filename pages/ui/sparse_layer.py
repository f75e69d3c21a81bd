"""Cached layer and figures of the Sparse decision layer page (`pages/5_Sparse_decision_layer.py`).

By what is cached:
- shared objects (testbed batches, image sets, the feature and sparse-head networks) are `st.cache_resource`,
  bounded by `max_entries`, and never mutated (the engine copies what it changes);
- features and saliency are `st.cache_data`, bounded by `max_entries`;
- the GLM path shows a progress bar, so it cannot be `st.cache_data` (the bar would be recorded and replayed): it
  goes through `cache.long_run` (one bounded LRU shared by all sessions), and the engine also keeps it on disk
  (`sparse_layer.fit_cached`: byte-bounded, survives restarts).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from pages.ui import cache, figures, keys, results
from spade_engine import sparse_layer as sl

TESTBED_SEED = 7  # data seed of the sparse-layer fits (not the training seed of the shipped models)
FEATVIS_STEPS = 128  # optimisation steps of a penultimate-feature visualisation


@dataclass(frozen=True)
class SparseFit:
    """A fitted path and what the page shows about it (held-out set, ground truth where known)."""

    layer: sl.SparseLayer  # at the chosen point
    path: sl.GLMPath
    chosen: int
    val: sl.FeatureSet
    truth: dict  # per held-out image: is_trojan, true_class, facet (testbed only; else {})
    source: str  # "testbed" or the image folder


@st.cache_resource(show_spinner="Generating testbed images…", max_entries=2)
def testbed_batch(version: str, n: int, seed: int, trojan_fraction: float, image_size: int):
    """Generated testbed images of generator `version` ("v1", "v2": `cache.testbed_version(model)`) at the model's
    input size, with ground truth (`TestbedBatch`), shared read-only."""
    from spade_engine.testbed import generator

    return generator(version).generate(n, seed, trojan_fraction=trojan_fraction, image_size=image_size)


def testbed_truth(batch) -> dict[str, np.ndarray]:  # noqa: ANN001 (TestbedBatch of either generator)
    """Per image: `is_trojan`, `true_class` and `trojan_target` (-1 when clean)."""

    return {"is_trojan": batch.is_trojan.numpy(), "true_class": batch.true_class.numpy(),
            "trojan_target": batch.trojan_target.numpy()}  # fmt: skip


def trojan_notes(f: SparseFit, names: tuple[str, ...], targets: tuple[int, ...]) -> list[str]:
    """One line per trojan target: its class's features that the trojaned images drive (top-activating held-out
    images mostly trojaned), and the attack success through the dense head and the sparse layer. Only images
    of that trojan count as trojaned (v2 has two trojans with different targets)."""
    notes = []
    for target in dict.fromkeys(targets):
        is_trojan = f.truth["trojan_target"] == target
        finding = sl.trojan_finding(f.layer, f.val, is_trojan, f.truth["true_class"], target)
        shares = dict(zip(finding.features, finding.top_trojan_share, strict=True))
        found = ", ".join(f"#{k} ({shares[k]:.0%})" for k in finding.trojan_features) or "none"
        notes.append(f"Trojan target **{names[target]}**: its features whose {finding.top_n} top-activating held-out "
                     f"images are mostly trojaned: **{found}**; {len(finding.firing)} of its {len(finding.features)} "
                     f"features fire on trojaned images of other classes. Attack success: dense head "
                     f"{finding.dense_attack_success:.0%}, sparse layer {finding.sparse_attack_success:.0%}.")  # fmt: skip
    return notes


@st.cache_resource(show_spinner="Reading the image folder…", max_entries=2)
def folder_images(folder: str, model_key: str, _preprocess: Callable):
    """(images, labels, class names) of an ImageFolder-style folder under the data root, preprocessed for the
    model. Raises `sl.DataInputError` (plain message) for a folder outside the root or unusable."""
    return sl.load_image_folder(sl.resolve_data_folder(folder), _preprocess)


@st.cache_resource(show_spinner="Reading the zip…", max_entries=2)
def zip_images(digest: str, model_key: str, _data: bytes, _preprocess: Callable):
    """(images, labels, class names) of an uploaded zip (ImageFolder layout), keyed by its content `digest`;
    a replaced upload's images leave the cache (2 entries). Raises `sl.DataInputError` with a plain message."""
    return sl.load_image_zip(_data, _preprocess)


def user_images(model_key: str, preprocess: Callable) -> tuple[torch.Tensor, np.ndarray, tuple[str, ...], tuple]:
    """The sidebar's image set for a model without generated data: a folder under `$SPADE_DATA_ROOT` (when the
    server sets one) or an uploaded zip in ImageFolder layout. Stops the page with a plain message otherwise.

    Returns:
        images (N, 3, S, S), labels (N,), class names, and the `source` tuple that identifies the set.
    """
    side, root = st.sidebar, sl.data_root()
    folder = side.text_input(f"Image folder under the data root `{root}`", key=keys.SPARSE_FOLDER) if root else ""
    upload = side.file_uploader("…or a zip of images (one sub-folder per class)", type=["zip"], key=keys.SPARSE_ZIP,
                                help=f"At most {sl.io.ZIP_MAX_BYTES // 2**20} MB and {sl.io.MAX_IMAGES} images.")  # fmt: skip
    if not folder and upload is None:
        where = "a folder under the server's data root or " if root else ""
        st.info(f"For this model, give {where}a zip of your images with one sub-folder per class (ImageFolder layout).")
        st.stop()
    try:
        if upload is not None:
            data = upload.getvalue()
            digest = hashlib.sha256(data).hexdigest()[:16]
            images, labels, names = zip_images(digest, model_key, data, preprocess)
            return images, labels, names, (f"zip:{digest}", len(labels))
        images, labels, names = folder_images(folder, model_key, preprocess)
        return images, labels, names, (folder, len(labels))
    except sl.DataInputError as e:
        st.info(f"Cannot use these images: {e}")
        st.stop()


@st.cache_data(show_spinner="Extracting penultimate features…", max_entries=8)
def features(model_key: str, source: tuple, device: str, _model: torch.nn.Module, _images, _labels, _names):
    """`FeatureSet` of a dataset (`source` identifies it in the cache)."""
    with cache.model_lock(model_key):
        return sl.extract_features(_model, _images, _labels, tuple(_names), device=device)


@st.cache_data(show_spinner=False, max_entries=64)
def sample_features(
    model_key: str, sample_hash: str, device: str, _model: torch.nn.Module, _x: torch.Tensor
) -> np.ndarray:
    """Penultimate features (F,) of one sample (the head hook is held under the model's lock)."""
    with cache.model_lock(model_key):
        return sl.extract_features(_model, _x, [0], ("",), device=device).features[0]


def fit(model_key: str, source: tuple, data: sl.FeatureSet, truth: dict, n_lambdas: int, budget: float) -> SparseFit:
    """The GLM path of `data` (memory, then disk, then fitted now with a progress bar), at the budget's point."""
    key = ("sparse", model_key, source, n_lambdas)

    def compute() -> tuple[sl.SparseLayer, sl.GLMPath]:
        def fit_now() -> tuple[sl.SparseLayer, sl.GLMPath]:
            tr, va = sl.split_train_val(len(data), 0.2, seed=0)
            bar = results.Bar("Fitting the elastic-net path (glm-saga)")
            fitted = sl.fit_sparse_layer(data.subset(tr), data.subset(va), sl.GLMConfig(n_lambdas=n_lambdas),
                                         max_features_per_class=budget, progress=bar)  # fmt: skip
            bar.clear()
            return fitted

        return sl.fit_cached("|".join(map(str, (*key[:2], *source, n_lambdas))), fit_now)

    layer, path = cache.long_run(key, compute)
    chosen = sl.choose_point(path, budget)
    _, va = sl.split_train_val(len(data), 0.2, seed=0)
    held = {k: v[va] for k, v in truth.items()}
    return SparseFit(sl.at_point(layer, path, chosen), path, chosen, data.subset(va), held, str(source[0]))


@st.cache_resource(show_spinner=False, max_entries=4)
def feature_network(model_key: str, _model: torch.nn.Module) -> torch.nn.Module:
    """The model with an identity head (outputs penultimate features), for feature visualisations."""
    return sl.feature_model(_model)


def feature_vis(model_key: str, device: str, model: torch.nn.Module, feature: int, size: int, steps: int) -> np.ndarray:
    """Lucent visualisation of penultimate feature `feature` (disk-cached by `featvis`), (S, S, 3) uint8."""
    from spade_engine import featvis

    bar = results.Bar(f"Visualising feature {feature}")
    net = feature_network(model_key, model)
    config = featvis.FeatVisConfig(image_size=size, steps=steps, input_size=size)
    with cache.model_lock(model_key):
        vis = featvis.render_cached(net, featvis.class_target(feature), config, device,
                                    model_name=f"{model_key}:penultimate", progress=bar)  # fmt: skip
    bar.clear()
    return featvis.to_uint8(vis.image)


@st.cache_resource(show_spinner=False, max_entries=4)
def sparse_network(model_key: str, fit_key: tuple, _model: torch.nn.Module, _layer: sl.SparseLayer) -> torch.nn.Module:
    """The model with the sparse layer as its head (`fit_key` identifies the fit and the path point)."""
    return sl.sparse_head_model(_model, _layer)


@st.cache_data(show_spinner="Saliency through the dense head and the sparse FC…", max_entries=64)
def sparse_fc_saliency(model_key: str, fit_key: tuple, sample_hash: str, method: str, target: int, _model, _layer,
                       _x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(H, W) maps of `method` on the dense model and on the model with the sparse head (the paper's Sparse FC)."""
    from spade_engine.saliency import attribute

    sparse = sparse_network(model_key, fit_key, _model, _layer)
    with cache.model_lock(model_key):
        return attribute(method, _model, _x, target), attribute(method, sparse, _x, target)


def path_figure(f: SparseFit) -> go.Figure:
    """Validation and training accuracy along the path vs features per class; the chosen point and the dense head."""
    x = np.maximum(f.path.features_per_class, 1e-2)
    fig = go.Figure()
    fig.add_scatter(x=x, y=f.path.val_acc, mode="lines+markers", name="validation", customdata=f.path.lambdas,
                    hovertemplate="%{x:.1f} features/class<br>val acc %{y:.1%}<br>λ %{customdata:.3g}<extra></extra>")  # fmt: skip
    fig.add_scatter(x=x, y=f.path.train_acc, mode="lines", name="training", line=dict(dash="dot"))
    fig.add_scatter(x=[x[f.chosen]], y=[f.path.val_acc[f.chosen]], mode="markers", name="chosen",
                    marker=dict(size=14, color=figures.SPADE_COLOUR, symbol="star"))  # fmt: skip
    fig.add_hline(
        y=f.val.dense_accuracy, line_dash="dash", line_color=figures.DENSE_COLOUR, annotation_text="dense head"
    )
    fig.update_layout(xaxis=dict(type="log", title="non-zero weights per class (mean)"), height=340,
                      yaxis=dict(title="accuracy", tickformat=".0%"), margin=dict(l=0, r=0, t=10, b=0))  # fmt: skip
    return fig


def bars_figure(labels: list[str], values: list[float], title: str, height: int | None = None) -> go.Figure:
    """Horizontal signed bars (positive red, negative blue), first label on top."""
    colours = [figures.SPADE_COLOUR if v > 0 else "#1f77b4" for v in values]
    fig = go.Figure(go.Bar(y=labels[::-1], x=values[::-1], orientation="h", marker_color=colours[::-1]))
    fig.update_layout(height=height or 60 + 26 * len(labels), margin=dict(l=0, r=0, t=10, b=0), xaxis_title=title,
                      yaxis=dict(type="category"))  # fmt: skip
    return fig


def image_caption(names: tuple[str, ...], labels: np.ndarray, truth: dict, i: int) -> str:
    """A dataset image's caption: its label, or for testbed images the class drawn and whether it is trojaned."""
    if "true_class" not in truth:
        return names[int(labels[i])]
    return names[int(truth["true_class"][i])] + (" · TROJAN" if truth["is_trojan"][i] else "")


def images_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """(k, 3, H, W) in [0, 1] -> list of (H, W, 3) uint8."""
    return list((images.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))
