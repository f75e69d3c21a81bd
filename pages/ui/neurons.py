"""Cached layer of the Neuron explorer (`pages/3_Neuron_explorer.py`): layers, neuron rankings, testbed patches,
the multifaceted-neuron finder and feature visualisations (disk-cached by `spade_engine.featvis`).

Models are shared `st.cache_resource` objects: nothing here mutates them; feature visualisation optimises an image
only and holds the model's lock (`cache.model_lock`) while it runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from pages.ui import cache, keys
from spade_engine import featvis, neurons
from spade_engine.featvis import FeatVis, FeatVisConfig, Target

# The page's session-state keys under their short names (values in keys.py, the one home of every key string).
PREFIX, LAYER, PICK, INDEX = keys.NEURONS, keys.NEURONS_LAYER, keys.NEURONS_PICK, keys.NEURONS_INDEX
OBJECTIVE, LATE_ONLY, STEPS, SIZE = (
    keys.NEURONS_OBJECTIVE,
    keys.NEURONS_LATE_ONLY,
    keys.NEURONS_STEPS,
    keys.NEURONS_SIZE,
)
LR, VIS_SEED, FACET_NEURON = keys.NEURONS_LR, keys.NEURONS_VIS_SEED, keys.NEURONS_FACET
TESTBED_SEED = 2024
PHOTOS, ZIP = "Shipped photos", "Your images (zip)"
PHOTO_CROPS = 6  # samples per shipped photo: the photo and five square crops (`spade_engine.photos.photo_crops`)
MAX_PROBE_IMAGES = 512  # images of a user's zip used as the probe set (each is kept at the model's input size)
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


@dataclass(frozen=True)
class ProbeSet:
    """The images the explorer scans for top patches and facets: `images` (N, 3, S, S) in [0, 1], `names` (one
    per image: its photo or file), `testbed` (the generator's ground truth, testbed models only), `key` (names
    it in the caches) and `title` (said on the page)."""

    key: str
    images: torch.Tensor
    names: tuple[str, ...]
    title: str
    testbed: object | None = None


def testbed_probe(image_size: int, version: str) -> ProbeSet:
    """The testbed images of generator `version` at `image_size`, with their ground truth."""
    n = testbed_count(image_size)
    batch = testbed(n, image_size, version)
    return ProbeSet(f"testbed:{version}:{n}:{image_size}", batch.images, (), f"{n} testbed images", batch)


@st.cache_resource(show_spinner="Preparing the shipped photos…", max_entries=4)
def photo_probe(model_key: str, input_size: int, _preprocess) -> ProbeSet:
    """The offline photos and their crops (`spade_engine.photos`) at the model's input size."""
    from spade_engine.photos import offline_photos, photo_crops

    samples = photo_crops(offline_photos(), PHOTO_CROPS)
    images = torch.stack([_preprocess(img) for _, img in samples])  # (N, 3, S, S)
    names = tuple(n.split("@")[0] for n, _ in samples)
    title = f"{len(samples)} crops of {len(set(names))} shipped photos"
    return ProbeSet(f"photos:{model_key}:{input_size}", images, names, title)


@st.cache_resource(show_spinner="Reading your images…", max_entries=2)
def zip_probe(model_key: str, digest: str, _data: bytes, _preprocess) -> ProbeSet:
    """A user's zip of images (any layout; the Sparse decision layer's limits) at the model's input size.

    Raises:
        DataInputError: not a zip, too large, or no readable image (the message says which).
    """
    from spade_engine.sparse_layer.io import load_image_zip

    images, labels, classes = load_image_zip(_data, _preprocess, MAX_PROBE_IMAGES, min_classes=1)
    names = tuple(classes[int(k)] for k in labels)
    return ProbeSet(f"zip:{model_key}:{digest}", images, names, f"{len(images)} images of your zip")


def probe_set(model, version: str) -> ProbeSet:
    """The probe set for a model: a testbed model's own generator; for a real network the shipped photos or the
    user's zip (a sidebar choice). Stops the page with a message when the zip cannot be used."""
    size = model.loaded.info.input_size
    if model.loaded.info.family == "testbed":
        return testbed_probe(size, version)
    source = st.sidebar.radio("Probe images", [PHOTOS, ZIP], key=keys.NEURONS_PROBE_SOURCE, horizontal=True,
                              help="The images scanned for each neuron's top patches and facets.")  # fmt: skip
    if source == PHOTOS:
        return photo_probe(model.key, size, model.loaded.preprocess)
    upload = st.sidebar.file_uploader("Zip of images (any folders)", type=["zip"], key=keys.NEURONS_PROBE_ZIP)
    if upload is None:
        st.info("Upload a zip of images in the sidebar, or choose the shipped photos.", icon=":material/folder_zip:")
        st.stop()
    data = upload.getvalue()
    from spade_engine.sparse_layer.io import DataInputError

    try:
        return zip_probe(model.key, hashlib.sha256(data).hexdigest()[:16], data, model.loaded.preprocess)
    except DataInputError as e:
        st.error(f"Cannot use this zip: {e}", icon=":material/error:")
        st.stop()


@st.cache_resource(show_spinner="Generating testbed images…", max_entries=2)
def testbed(n: int, image_size: int, version: str):
    """Testbed images of generator `version` ("v1", "v2": `cache.testbed_version(model)`) with their ground truth
    (`TestbedBatch`), shared read-only."""
    from spade_engine.testbed import generator

    return generator(version).generate(n, TESTBED_SEED, image_size=image_size)


@st.cache_data(show_spinner="Scanning the probe images…", max_entries=32)
def dataset_acts(
    model_key: str, layer: str, probe_key: str, device: str, _model, _probe: ProbeSet
) -> neurons.DatasetActivations:
    """Max activation of every neuron of `layer` on every probe image (`probe_key` names the set)."""
    with cache.model_lock(model_key):
        return neurons.dataset_activations(_model, _probe.images, layer, device)


@st.cache_data(show_spinner=False, max_entries=32)
def receptive_field(model_key: str, layer: str, input_size: int, device: str, _model) -> int:
    """Receptive-field side of `layer` in pixels."""
    with cache.model_lock(model_key):
        return neurons.receptive_field(_model, layer, input_size, device)


@st.cache_data(show_spinner="Looking for multifaceted neurons…", max_entries=32)
def multifaceted(
    model_key: str, layer: str, probe_key: str, top_k: int, device: str, _model, _probe: ProbeSet
) -> list[neurons.FacetScore]:
    """Neurons of `layer` ranked by the multifaceted score (`neurons.SCORE_EXPLANATION`) on the probe images."""
    acts = dataset_acts(model_key, layer, probe_key, device, _model, _probe)
    with cache.model_lock(model_key):
        return neurons.find_multifaceted(_model, _probe.images, layer, top_k=top_k, device=device, acts=acts)


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


def facet_caption(probe: ProbeSet, indices: np.ndarray, version: str) -> str:
    """What the probe images at `indices` show, most frequent first: a testbed's ground-truth facets (generator
    `version`), or the photos / files they come from."""
    from collections import Counter

    if probe.testbed is not None:
        from spade_engine.testbed import generator

        facets, batch = generator(version).FACETS, probe.testbed
        counts = Counter(facets[int(batch.true_class[i])][int(batch.facet[i])] for i in indices)
    else:
        counts = Counter(probe.names[int(i)] for i in indices)
    return ", ".join(f"{name} ×{n}" for name, n in counts.most_common(4))
