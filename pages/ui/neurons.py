"""Cached layer of the Neuron explorer (`pages/3_Neuron_explorer.py`): layers, neuron rankings, testbed patches,
the multifaceted-neuron finder and feature visualisations (disk-cached by `spade_engine.featvis`).

Models are shared `st.cache_resource` objects: nothing here mutates them; feature visualisation optimises an image
only and holds the model's lock (`cache.model_lock`) while it runs.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from pages.ui import cache
from spade_engine import featvis, neurons
from spade_engine.featvis import FeatVis, FeatVisConfig, Target

# Session-state keys of this page (namespaced "neurons.").
PREFIX = "neurons"
LAYER, PICK, INDEX, OBJECTIVE, LATE_ONLY = (
    "neurons.layer",
    "neurons.pick",
    "neurons.index",
    "neurons.objective",
    "neurons.late",
)
STEPS, SIZE, LR, VIS_SEED, FACET_NEURON = (
    "neurons.steps",
    "neurons.size",
    "neurons.lr",
    "neurons.vis_seed",
    "neurons.facet",
)
TESTBED_SEED = 2024
PICKS = ("Most activated", "Most attributed", "By index")
STEP_CHOICES = [8, 32, 64, 128, 256, 512]


def testbed_count(image_size: int) -> int:
    """Testbed images scanned for patches and facets (fewer for large inputs, to bound memory)."""
    return 512 if image_size <= 96 else 128


@st.cache_data(show_spinner=False, max_entries=32)
def layers(model_key: str, input_size: int, device: str, _model: torch.nn.Module) -> list[neurons.LayerInfo]:
    """Conv and linear layers of the model in execution order."""
    with cache.model_lock(model_key):
        return neurons.list_layers(_model, input_size, device)


@st.cache_data(show_spinner=False, max_entries=256)
def ranking(
    model_key: str, sample_hash: str, layer: str, device: str, _model, _x: torch.Tensor
) -> neurons.NeuronRanking:
    """Neurons of `layer` ranked for the sample (activation; activation × gradient of the predicted class)."""
    with cache.model_lock(model_key):
        return neurons.rank_neurons(_model, _x, layer, device=device)


@st.cache_resource(show_spinner="Generating testbed images…", max_entries=2)
def testbed(n: int, image_size: int, version: str):
    """Testbed images of generator `version` ("v1", "v2": `cache.testbed_version(model)`) with their ground truth
    (`TestbedBatch`), shared read-only."""
    from spade_engine.testbed import generator

    return generator(version).generate(n, TESTBED_SEED, image_size=image_size)


@st.cache_data(show_spinner="Scanning the testbed images…", max_entries=32)
def dataset_acts(
    model_key: str, layer: str, n: int, image_size: int, version: str, device: str, _model
) -> neurons.DatasetActivations:
    """Max activation of every neuron of `layer` on every testbed image (generator `version`)."""
    with cache.model_lock(model_key):
        return neurons.dataset_activations(_model, testbed(n, image_size, version).images, layer, device)


@st.cache_data(show_spinner=False, max_entries=32)
def receptive_field(model_key: str, layer: str, input_size: int, device: str, _model) -> int:
    """Receptive-field side of `layer` in pixels."""
    with cache.model_lock(model_key):
        return neurons.receptive_field(_model, layer, input_size, device)


@st.cache_data(show_spinner="Looking for multifaceted neurons…", max_entries=32)
def multifaceted(
    model_key: str, layer: str, n: int, image_size: int, version: str, top_k: int, device: str, _model
) -> list[neurons.FacetScore]:
    """Neurons of `layer` ranked by the multifaceted score (`neurons.SCORE_EXPLANATION`) on the testbed images
    of generator `version`."""
    acts = dataset_acts(model_key, layer, n, image_size, version, device, _model)
    with cache.model_lock(model_key):
        return neurons.find_multifaceted(
            _model, testbed(n, image_size, version).images, layer, top_k=top_k, device=device, acts=acts
        )


def visualise(
    model_key: str, network: str, prune_key: str, target: Target, config: FeatVisConfig, device: str, model, label: str
) -> FeatVis:
    """A feature visualisation from the disk cache, or optimised now with a progress bar.

    Args:
        network: "dense" or the SPADE sample hash (with views and seed); prune_key: the prune configuration.
    """
    bar = st.empty()

    def progress(done: int, total: int) -> None:
        if done == 1 or done == total or done % max(1, total // 50) == 0:  # about 50 updates per run
            bar.progress(done / total, text=f"{label}: optimising the image, step {done}/{total}")

    with cache.model_lock(model_key):
        result = featvis.render_cached(model, target, config, device, model_name=model_key, variant=network,
                                       sparsity=prune_key, progress=progress)  # fmt: skip
    bar.empty()
    return result


def grid(images: np.ndarray, columns: int = 4, cell: int = 64) -> np.ndarray:
    """(k, h, w, 3) floats in [0, 1] -> one uint8 image, `columns` wide, each cell resized to `cell` px."""
    cells = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # (k, 3, h, w)
    cells = torch.nn.functional.interpolate(cells, size=(cell, cell), mode="nearest")
    rows = max(1, -(-len(cells) // columns))  # an empty facet gives one blank row
    out = torch.ones((3, rows * (cell + 2), columns * (cell + 2)))
    for i, c in enumerate(cells):
        r, k = divmod(i, columns)
        out[:, r * (cell + 2) : r * (cell + 2) + cell, k * (cell + 2) : k * (cell + 2) + cell] = c
    return featvis.to_uint8(out.permute(1, 2, 0).numpy())


def score_chart(scores: list[neurons.FacetScore], label, current: int | None, k: int = 20) -> go.Figure:
    """Bar chart of the `k` most multifaceted neurons; `label(channel) -> str`; the current neuron in red."""
    top = scores[:k]
    colours = ["#d62728" if s.channel == current else "#1f77b4" for s in top]
    fig = go.Figure(go.Bar(x=[label(s.channel) for s in top], y=[s.score for s in top], marker_color=colours,
                           customdata=[[s.separation, s.balance, s.silhouette] for s in top],
                           hovertemplate="%{x}<br>score %{y:.2f}<br>separation %{customdata[0]:.2f}"
                           "<br>balance %{customdata[1]:.2f}<br>silhouette %{customdata[2]:.2f}<extra></extra>"))  # fmt: skip
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=10, b=10), yaxis=dict(title="multifaceted score", range=[0, 1]),
                      xaxis=dict(type="category"))  # fmt: skip
    return fig


def facet_caption(batch, indices: np.ndarray, version: str) -> str:
    """Ground truth of testbed images of generator `version`: how many show each facet, most frequent first."""
    from collections import Counter

    from spade_engine.testbed import generator

    facets = generator(version).FACETS
    counts = Counter(facets[int(batch.true_class[i])][int(batch.facet[i])] for i in indices)
    return ", ".join(f"{name} ×{n}" for name, n in counts.most_common(4))
