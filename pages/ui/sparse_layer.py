"""Cached layer and figures of the related-method pages: sparse decision layer (`pages/5_...`), critical
pathways (`pages/6_...`) and Sobol regions (`pages/7_...`).

One caching scheme, by what is cached:
- shared objects (testbed batches, image sets, derived networks) are `st.cache_resource`, bounded by
  `max_entries`, and never mutated (the engine copies what it changes);
- results that are quick to compute or show no progress (features, pathways, region maps, saliency) are
  `st.cache_data`, bounded by `max_entries`;
- long runs that show a progress bar (the GLM path, Sobol designs) cannot be `st.cache_data` (the bar would be
  recorded and replayed): they go through `long_run`, one bounded LRU shared by all sessions with one lock
  per key, so two sessions asking for the same result compute it once. GLM paths are also kept on disk by
  the engine (`sparse_layer.fit_cached`: byte-bounded, survives restarts).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from plotly.subplots import make_subplots

from pages.ui import cache, figures
from spade_engine import pathways, sobol
from spade_engine import sparse_layer as sl
from spade_engine.disk_cache import KeyedLocks

# Session-state keys of the three pages (namespaced per page).
SPARSE_N, SPARSE_TROJAN, SPARSE_BUDGET, SPARSE_LAMBDAS = "sparse.n", "sparse.trojan", "sparse.budget", "sparse.lambdas"
SPARSE_FOLDER, SPARSE_CLASS, SPARSE_FEATVIS = "sparse.folder", "sparse.class", "sparse.featvis"
SPARSE_ZIP = "sparse.zip"
SPARSE_METHOD = "sparse.method"
PATH_KEEP, PATH_GRAN, PATH_SEL, PATH_TARGET = (
    "pathways.keep",
    "pathways.granularity",
    "pathways.selection",
    "pathways.target",
)
SOBOL_PREFIX = "sobol"
SOBOL_REGIONS, SOBOL_GRID, SOBOL_SEGMENTS, SOBOL_N = "sobol.regions", "sobol.grid", "sobol.segments", "sobol.n"
SOBOL_PERTURB, SOBOL_TARGET, SOBOL_SPADE, SOBOL_RUN = "sobol.perturb", "sobol.target", "sobol.spade", "sobol.run"
TESTBED_SEED = 7  # data seed of the sparse-layer fits (not the training seed of the shipped models)
FEATVIS_STEPS = 128  # optimisation steps of a penultimate-feature visualisation


# ---------------------------------------------------------------------------------------------- memo


class _Memo:
    """A thread-safe LRU of finished long runs shared by all sessions, with one lock per key."""

    def __init__(self, size: int = 32):
        self.size, self.items, self.lock, self.keys = size, OrderedDict(), threading.Lock(), KeyedLocks()

    def get(self, key: tuple):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
            return self.items.get(key)

    def put(self, key: tuple, value) -> None:
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)


@st.cache_resource(show_spinner=False)
def _memo() -> _Memo:
    return _Memo()


def long_run(key: tuple, compute: Callable[[], object]):
    """The result of a long run (with its own progress bar) from the shared LRU, or `compute()` now; a session
    asking for a result another session is computing waits for it instead of computing it again."""
    memo = _memo()
    result = memo.get(key)
    if result is not None:
        return result
    with memo.keys.hold(repr(key)):
        result = memo.get(key)
        if result is None:
            result = compute()
            memo.put(key, result)
    return result


class Bar:
    """An `st.progress` bar usable as `progress(done, total)` or `progress(phase, done, total)`."""

    def __init__(self, label: str):
        self.slot, self.label = st.empty(), label

    def __call__(self, *args) -> None:
        done, total = args[-2:]
        phase = f" · {args[0]}" if len(args) == 3 else ""
        self.slot.progress(min(done / max(total, 1), 1.0), text=f"{self.label}{phase} ({done}/{total})")

    def clear(self) -> None:
        self.slot.empty()


# ------------------------------------------------------------------------------------- sparse layer


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
    from spade_engine.testbed import trojan_targets

    return {"is_trojan": batch.is_trojan.numpy(), "true_class": batch.true_class.numpy(),
            "trojan_target": trojan_targets(batch).numpy()}  # fmt: skip


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
    folder = side.text_input(f"Image folder under the data root `{root}`", key=SPARSE_FOLDER) if root else ""
    upload = side.file_uploader("…or a zip of images (one sub-folder per class)", type=["zip"], key=SPARSE_ZIP,
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
            bar = Bar("Fitting the elastic-net path (glm-saga)")
            fitted = sl.fit_sparse_layer(data.subset(tr), data.subset(va), sl.GLMConfig(n_lambdas=n_lambdas),
                                         max_features_per_class=budget, progress=bar)  # fmt: skip
            bar.clear()
            return fitted

        return sl.fit_cached("|".join(map(str, (*key[:2], *source, n_lambdas))), fit_now)

    layer, path = long_run(key, compute)
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

    bar = Bar(f"Visualising feature {feature}")
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


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """(k, 3, H, W) in [0, 1] -> list of (H, W, 3) uint8."""
    return list((images.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))


# ---------------------------------------------------------------------------------------- pathways


@st.cache_data(show_spinner="Tracing the critical pathway…", max_entries=64)
def pathway(model_key: str, sample_hash: str, target: int, keep: float, granularity: str, selection: str,
            _model: torch.nn.Module, _x: torch.Tensor):  # fmt: skip
    """(PathwaySummary, |pathway gradient| map (H, W), |plain gradient| map (H, W)) for one sample."""
    with cache.model_lock(model_key):
        summary = pathways.pathway_summary(_model, _x, target, keep, granularity, selection)
        path = pathways.critical_pathway(_model, _x, target, keep, granularity, selection)
        grad = pathways.pathway_gradient(_model, _x, target, pathway=path)
        plain = pathways.pathway_gradient(_model, _x, target, keep=1.0)
    return summary, grad[0].abs().sum(0).numpy(), plain[0].abs().sum(0).numpy()


def layers_figure(s: pathways.PathwaySummary) -> go.Figure:
    """Kept fraction of neurons per ReLU call (bars; kept / total in the hover)."""
    text = [f"{k} / {n}" for k, n in zip(s.kept, s.sizes, strict=True)]
    fig = go.Figure(go.Bar(x=list(s.names), y=s.fractions, text=text, textposition="none", marker_color=figures.SPADE_COLOUR,
                           hovertemplate="%{x}<br>%{y:.1%} kept (%{text})<extra></extra>"))  # fmt: skip
    fig.update_layout(yaxis=dict(title="neurons kept", tickformat=".0%"), height=320, margin=dict(l=0, r=0, t=10, b=0))
    return fig


def curve_figure(s: pathways.PathwaySummary) -> go.Figure:
    """Target logit of the gated network (relative to the dense one) vs the pathway size."""
    colours = ["#2ca02c" if a else figures.SPADE_COLOUR for a in s.curve_agrees]
    fig = go.Figure(go.Scatter(x=s.curve_keep, y=s.curve_preserved, mode="lines+markers", marker_color=colours,
                               customdata=s.curve_logit, hovertemplate="keep %{x:.0%}<br>logit %{customdata:.3g}"
                               " (%{y:.0%} of dense)<extra></extra>"))  # fmt: skip
    fig.add_vline(x=s.keep, line_dash="dot")
    fig.update_layout(xaxis=dict(title="pathway size (fraction of neurons kept)", tickformat=".0%", type="log"),
                      yaxis=dict(title="logit / dense logit", tickformat=".0%"), height=320,
                      margin=dict(l=0, r=0, t=10, b=0))  # fmt: skip
    return fig


def overlay_figure(image_u8: np.ndarray, panels: list[tuple[str, np.ndarray]], bar_title: str, cols: int = 2,
                   mask: np.ndarray | None = None) -> go.Figure:  # fmt: skip
    """Maps over the sample, one shared colour scale (`figures.shared_vmax`), optional trojan box."""
    rows = -(-len(panels) // cols)
    fig = make_subplots(
        rows, cols, subplot_titles=[t for t, _ in panels], horizontal_spacing=0.04, vertical_spacing=0.08
    )
    base, box = figures.base_image(image_u8), figures.mask_box(mask)
    for i, (_, values) in enumerate(panels):
        r, c = divmod(i, cols)
        fig.add_trace(go.Image(z=base, hoverinfo="skip"), r + 1, c + 1)
        fig.add_trace(go.Heatmap(z=np.clip(values, 0, None), coloraxis="coloraxis",
                                 hovertemplate="x %{x}, y %{y}<br>%{z:.3g}<extra></extra>"), r + 1, c + 1)  # fmt: skip
        if box is not None:
            fig.add_shape(type="rect", x0=box[0] - 0.5, y0=box[1] - 0.5, x1=box[2] + 0.5, y1=box[3] + 0.5,
                          row=r + 1, col=c + 1, line=dict(color=figures.PATCH_COLOUR, width=2, dash="dot"))  # fmt: skip
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", constrain="domain")
    vmax = figures.shared_vmax(*[v for _, v in panels])
    fig.update_layout(coloraxis=dict(colorscale=figures.plotly_colorscale(), cmin=0, cmax=vmax,
                                     colorbar=dict(title=dict(text=bar_title, side="right"), thickness=14)),
                      height=330 * rows, margin=dict(l=0, r=0, t=36, b=0), plot_bgcolor="white")  # fmt: skip
    return fig


# ------------------------------------------------------------------------------------------- Sobol


@st.cache_data(show_spinner=False, max_entries=64)
def regions(sample_hash: str, kind: str, size: int, _x: torch.Tensor) -> np.ndarray:
    """Region label map (H, W): a `size x size` grid or about `size` SLIC superpixels."""
    h, w = _x.shape[-2:]
    return sobol.grid_regions(h, w, size) if kind == "grid" else sobol.superpixel_regions(_x, n_segments=size)


def sobol_run(model_key: str, variant: str, sample_hash: str, target: int, spec: tuple, n: int, perturbation: str,
              device: str, model: torch.nn.Module, x: torch.Tensor, labels: np.ndarray) -> sobol.SobolResult:  # fmt: skip
    """Sobol indices from memory, or computed now with a progress bar (`variant`: "dense" or the SPADE key)."""
    key = ("sobol", model_key, variant, sample_hash, target, spec, n, perturbation)

    def compute() -> sobol.SobolResult:
        bar = Bar(f"Sobol design on the {variant.split(':')[0]} network: forward passes")
        with cache.model_lock(model_key):
            result = sobol.sobol_regions(model, x, target, labels, n=n, perturbation=perturbation, device=device,
                                         progress=bar)  # fmt: skip
        bar.clear()
        return result

    return long_run(key, compute)


def sobol_done(
    model_key: str, variant: str, sample_hash: str, target: int, spec: tuple, n: int, perturbation: str
) -> bool:
    """Whether these Sobol indices are already computed (the page then shows them without a click)."""
    return _memo().get(("sobol", model_key, variant, sample_hash, target, spec, n, perturbation)) is not None


def shares_figure(results: dict[str, sobol.SobolResult]) -> go.Figure:
    """Per region first-order and interaction (`ST - S`) shares, stacked, for each network."""
    fig = make_subplots(1, len(results), subplot_titles=list(results), shared_yaxes=True)
    for i, res in enumerate(results.values()):
        regions_ = [f"r{k}" for k in range(res.d)]
        fig.add_bar(x=regions_, y=res.first_order, name="first order S", marker_color="#1f77b4",
                    showlegend=i == 0, row=1, col=i + 1)  # fmt: skip
        fig.add_bar(x=regions_, y=res.interaction, name="interactions ST − S", marker_color=figures.SPADE_COLOUR,
                    showlegend=i == 0, row=1, col=i + 1)  # fmt: skip
    fig.update_layout(barmode="relative", height=300, margin=dict(l=0, r=0, t=30, b=0), yaxis_title="share of Var f")
    return fig
