"""Neurons of a layer: which ones fire for a sample, which dataset patches drive them, which are multifaceted.

A *neuron* here is a channel of a conv layer's output or an output feature of a linear layer (the layers listed by
`list_layers`). A Linear applied to channels-last maps (ConvNeXt's pointwise convs, (B, H, W, C)) or to tokens (a
ViT's MLP, (B, T, C)) has its features as neurons, with the grid or the tokens as positions (`featvis.capture`
puts the features on dim 1). The multifaceted-neuron finder follows the SPADE paper's motivation (arXiv 2310.04519, sec. 1):
a multifaceted neuron fires for several unrelated feature combinations. For a neuron we take its top-activating
inputs, describe each by *how the layer below drives it* (per input channel: the neuron's weights times the input
features in its receptive field at the most active position), split them into two groups with 2-means, and score
how different the two groups are, weighted by how evenly the inputs split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from spade_engine import hooks
from spade_engine.featvis import LOGITS, capture, is_scripted, resolve_layer
from spade_engine.model_state import eval_mode

SCORE_EXPLANATION = (
    "Multifaceted score = how different the two groups of the neuron's top-activating inputs are "
    "(1 − cosine similarity of the average per-channel drive from the layer below, after 2-means clustering) "
    "× how evenly the inputs split between the groups: near 1, the neuron fires for two unrelated reasons; "
    "near 0, for one consistent reason."
)


@dataclass(frozen=True)
class LayerInfo:
    """An addressable layer: dotted `name`, `kind` ("conv": a spatial map, also a channels-last Linear; "tokens":
    a Linear on (B, T, C) tokens; "linear"), output `channels` (neurons), `spatial` (H, W) of a map, else None."""

    name: str
    kind: str
    channels: int
    spatial: tuple[int, int] | None


def list_layers(model: nn.Module, input_size: int, device: str | torch.device = "cpu") -> list[LayerInfo]:
    """Conv and linear layers in execution order, with their output shapes for a square input of `input_size`.

    Returns:
        One `LayerInfo` per layer; none for a TorchScript model (its layers take no hooks: the reason in words is
        `featvis.TORCHSCRIPT_LAYERS`).
    """
    if is_scripted(model):
        return []
    x = torch.full((1, 3, input_size, input_size), 0.5, device=device)
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with eval_mode(model), torch.no_grad(), capture(model, names) as store:
        model(x)  # dicts keep insertion order: the order in which the hooks fired
    infos = []
    for name in store:
        shape = tuple(store[name].shape[1:])  # neurons first: (C, H, W), (C, T) or (C,)
        kind = {3: "conv", 2: "tokens"}.get(len(shape), "linear")
        infos.append(LayerInfo(name, kind, int(shape[0]), tuple(shape[1:]) if kind == "conv" else None))
    return infos


def late_layers(layers: list[LayerInfo], stages: int = 2) -> list[str]:
    """Layers of the last `stages` resolution stages (output area at most the `stages`-th smallest) and the
    linear layers after them, in execution order: SPADE's setting for feature visualisation prunes only late
    blocks and the head (reference: ResNet-50 layer3.4-5, layer4, fc). Without conv layers: the last third."""
    areas = sorted({info.spatial[0] * info.spatial[1] for info in layers if info.spatial})
    if not areas:
        return [info.name for info in layers[-max(1, len(layers) // 3) :]]
    cut = areas[min(stages, len(areas)) - 1]
    late = lambda info: info.spatial is None or info.spatial[0] * info.spatial[1] <= cut  # noqa: E731
    first = next(i for i, info in enumerate(layers) if info.spatial and late(info))
    return [info.name for info in layers[first:] if late(info)]


def late_prune_config(layers: list[LayerInfo], sparsity: float = 0.95, stages: int = 2, base=None, **overrides):
    """A `PruneConfig` that prunes only `late_layers(layers, stages)` at `sparsity`; the rest stays dense.

    Args:
        base: a `PruneConfig` whose options (solver, calibration, dampening, BatchNorm correction) the late-only
            configuration keeps, e.g. `SpadeSettings.prune_config()` with the model card's asymmetric calibration;
            its own sparsity and per-layer targets are replaced. None: the engine's defaults.
        overrides: `PruneConfig` fields set on top.
    """
    from dataclasses import replace

    from spade_engine.engine import PruneConfig

    late = tuple((n, float(sparsity)) for n in late_layers(layers, stages))
    return replace(base or PruneConfig(), sparsity=0.0, layer_sparsity=late, **overrides)


# ------------------------------------------------------------------------------- neurons of a sample


@dataclass(frozen=True)
class NeuronRanking:
    """Per channel of `layer` for one sample: mean activation, attribution (activation × gradient of the
    `target` logit, summed over positions or tokens) and the most active position (row, col); for token layers
    (token, 0); zeros for linear layers."""

    layer: str
    target: int
    activation: np.ndarray  # (C,)
    attribution: np.ndarray  # (C,)
    position: np.ndarray  # (C, 2) int; zeros for linear layers

    def top(self, by: str = "activation", k: int = 10) -> list[int]:
        """Indices of the `k` neurons with the largest `by` ("activation" | "attribution")."""
        values = self.activation if by == "activation" else self.attribution
        return [int(i) for i in np.argsort(-values, kind="stable")[:k]]


def rank_neurons(
    model: nn.Module, x: torch.Tensor, layer: str, target: int | None = None, device: str | torch.device = "cpu"
) -> NeuronRanking:
    """Rank the neurons of `layer` for the sample `x` (3, H, W) in [0, 1].

    Attribution is the neuron contribution `a * dy/da` of Khakzar et al. (arXiv 2103.16886), summed over space.
    `target` defaults to the predicted class.
    """
    with eval_mode(model), capture(model, [layer]) as store, torch.enable_grad():
        logits = model(x[None].to(device).requires_grad_(True))  # (1, K); grad flows though weights are frozen
        act = store[layer] if layer != LOGITS else logits
        target = int(logits.argmax()) if target is None else int(target)
        (grad,) = torch.autograd.grad(logits[0, target], act)
    act, grad = act[0].detach(), grad[0]  # (C, H, W), (C, T) or (C,)
    contrib = act * grad
    if act.dim() == 1:
        zeros = np.zeros((len(act), 2), dtype=int)
        return NeuronRanking(layer, target, act.cpu().numpy(), contrib.cpu().numpy(), zeros)
    flat = act.flatten(1)  # (C, H*W) or (C, T)
    arg = flat.argmax(1).cpu().numpy()
    width = act.shape[2] if act.dim() == 3 else 1  # tokens: (token, 0)
    position = np.stack([arg // width, arg % width], axis=1)
    return NeuronRanking(layer, target, flat.mean(1).cpu().numpy(), contrib.flatten(1).sum(1).cpu().numpy(), position)


# ------------------------------------------------------------------------------ dataset activations


@dataclass(frozen=True)
class DatasetActivations:
    """Per image and channel of `layer`: the maximum over positions and where it is (row, col); for token
    layers over tokens, (token, 0), with `spatial` None."""

    layer: str
    value: np.ndarray  # (N, C)
    position: np.ndarray  # (N, C, 2) int
    spatial: tuple[int, int] | None

    def top(self, channel: int, k: int) -> np.ndarray:
        """Indices of the `k` images that activate `channel` most, best first."""
        return np.argsort(-self.value[:, channel], kind="stable")[:k]


def dataset_activations(
    model: nn.Module, images: torch.Tensor, layer: str, device: str | torch.device = "cpu", batch_size: int = 128
) -> DatasetActivations:
    """Max activation of every channel of `layer` on every image (N, 3, H, W) in [0, 1]."""
    values, positions, spatial = [], [], None
    with eval_mode(model), torch.no_grad(), capture(model, [layer]) as store:
        for start in range(0, len(images), batch_size):
            logits = model(images[start : start + batch_size].to(device))
            act = store[layer] if layer != LOGITS else logits  # (B, C, H, W), (B, C, T) or (B, C)
            if act.dim() == 2:
                values.append(act.cpu())
                positions.append(torch.zeros((*act.shape, 2), dtype=torch.long))
                continue
            spatial = tuple(act.shape[2:]) if act.dim() == 4 else None
            width = act.shape[3] if act.dim() == 4 else 1  # tokens: (token, 0)
            best, arg = act.flatten(2).max(2)  # (B, C)
            values.append(best.cpu())
            positions.append(torch.stack([arg // width, arg % width], -1).cpu())
    return DatasetActivations(layer, torch.cat(values).numpy(), torch.cat(positions).numpy(), spatial)


# ------------------------------------------------------------------------------------ top patches


@dataclass(frozen=True)
class Patches:
    """Top-activating crops for one neuron: `images` (k, h, w, 3) in [0, 1], dataset `indices`, `values`,
    `boxes` (x0, y0, x1, y1) in input pixels."""

    images: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    boxes: list[tuple[int, int, int, int]]


def receptive_field(model: nn.Module, layer: str, input_size: int, device: str | torch.device = "cpu") -> int:
    """Side in pixels of the input region that can affect the centre unit of `layer` (gradient support)."""
    x = torch.rand((1, 3, input_size, input_size), generator=torch.Generator().manual_seed(0)).to(device)
    x.requires_grad_(True)
    with eval_mode(model), capture(model, [layer]) as store, torch.enable_grad():
        logits = model(x)
        act = store[layer] if layer != LOGITS else logits
        if act.dim() != 4:  # linear and token layers see the whole image
            return input_size
        h, w = act.shape[2:]
        (grad,) = torch.autograd.grad(act[0, :, h // 2, w // 2].sum(), x)
    rows = torch.nonzero(grad[0].abs().sum((0, 2)) > 0)
    cols = torch.nonzero(grad[0].abs().sum((0, 1)) > 0)
    if len(rows) == 0:
        return input_size
    return int(max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1))


def top_patches(
    images: torch.Tensor, acts: DatasetActivations, channel: int, k: int = 8, rf: int | None = None
) -> Patches:
    """Crops of the `k` top-activating images around the most active position (whole images when `rf` is None
    or covers the image, and for linear layers)."""
    idx = acts.top(channel, k)
    size = images.shape[-1]
    side = size if (rf is None or acts.spatial is None) else min(rf, size)
    crops, boxes = [], []
    for i in idx:
        box = _box(acts.position[i, channel], acts.spatial, size, side)
        x0, y0, x1, y1 = box
        crops.append(images[i, :, y0:y1, x0:x1].permute(1, 2, 0).numpy())  # (side, side, 3)
        boxes.append(box)
    return Patches(np.stack(crops).astype(np.float32), idx, acts.value[idx, channel], boxes)


def _box(pos: np.ndarray, spatial: tuple[int, int] | None, size: int, side: int) -> tuple[int, int, int, int]:
    if spatial is None or side >= size:
        return (0, 0, size, size)
    cy, cx = (pos[0] + 0.5) * size / spatial[0], (pos[1] + 0.5) * size / spatial[1]
    y0 = int(np.clip(round(cy - side / 2), 0, size - side))
    x0 = int(np.clip(round(cx - side / 2), 0, size - side))
    return (x0, y0, x0 + side, y0 + side)


# -------------------------------------------------------------------------------- facet descriptors


def _drive(layer: nn.Module, inp: torch.Tensor, channel: int, pos: np.ndarray, weighted: bool) -> torch.Tensor:
    """Per input channel, how the layer input drives `channel` at `pos`: (C_in / groups,)."""
    if isinstance(layer, nn.Linear):
        if inp.dim() == 3:  # channels-last map (H, W, C_in)
            inp = inp[int(pos[0]), int(pos[1])]
        elif inp.dim() == 2:  # tokens (T, C_in)
            inp = inp[int(pos[0])]
        return layer.weight[channel] * inp if weighted else inp  # (C_in,)
    kh, kw = layer.kernel_size
    (sh, sw), (dh, dw) = layer.stride, layer.dilation
    ph, pw = layer.padding if isinstance(layer.padding, tuple) else (0, 0)
    padded = F.pad(inp, [pw, pw, ph, ph])  # (C_in, H + 2ph, W + 2pw); 'same' padding unsupported
    r0, c0 = int(pos[0]) * sh, int(pos[1]) * sw
    window = padded[:, r0 : r0 + dh * (kh - 1) + 1 : dh, c0 : c0 + dw * (kw - 1) + 1 : dw]  # (C_in, kh, kw)
    group = channel // (layer.out_channels // layer.groups)
    per_group = layer.in_channels // layer.groups
    window = window[group * per_group : (group + 1) * per_group]  # (C_in / groups, kh, kw)
    return (layer.weight[channel] * window).sum((1, 2)) if weighted else window.mean((1, 2))


# One line per descriptor: "contribution" weighs the layer-below features with the neuron's weights.
DESCRIPTORS: dict[str, bool] = {"contribution": True, "input": False}


def facet_descriptors(
    model: nn.Module,
    images: torch.Tensor,
    acts: DatasetActivations,
    channels: list[int],
    top_k: int = 32,
    descriptor: str = "contribution",
    device: str | torch.device = "cpu",
    batch_size: int = 64,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For each channel: (indices of its `top_k` images, descriptors (top_k, C_in)) from the layer's input."""
    layer = resolve_layer(model, acts.layer)
    if not isinstance(layer, (nn.Conv2d, nn.Linear)):
        raise ValueError(f"{acts.layer} is not a conv or linear layer.")
    tops = {c: acts.top(c, top_k) for c in channels}
    needed = np.unique(np.concatenate(list(tops.values())))
    rows = {int(i): [] for i in needed}
    for c, idx in tops.items():
        for rank, i in enumerate(idx):
            rows[int(i)].append((c, rank))
    out = {c: np.zeros((len(idx), 0), dtype=np.float32) for c, idx in tops.items()}
    store: dict[int, dict[int, torch.Tensor]] = {c: {} for c in channels}
    with torch.no_grad():
        for start in range(0, len(needed), batch_size):
            batch = needed[start : start + batch_size]
            inputs = _layer_inputs(model, layer, images[torch.as_tensor(batch)].to(device))
            for inp, i in zip(inputs, batch, strict=True):
                for c, rank in rows[int(i)]:
                    vec = _drive(layer, inp, c, acts.position[i, c], DESCRIPTORS[descriptor])
                    store[c][rank] = vec.float().cpu()
    for c, idx in tops.items():
        out[c] = torch.stack([store[c][r] for r in range(len(idx))]).numpy()
    return {c: (tops[c], out[c]) for c in channels}


def _layer_inputs(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with hooks.capture({"layer": layer}, "input") as captured, eval_mode(model):
        model(x)
    return captured["layer"][0]


# ------------------------------------------------------------------------------- 2-means and score


def two_means(points: np.ndarray) -> np.ndarray:
    """2-means labels in {0, 1} for (n, d) points: scikit-learn's `KMeans` (k-means++, 10 seeded restarts)."""
    from sklearn.cluster import KMeans

    if len(points) < 2:
        return np.zeros(len(points), dtype=int)
    return KMeans(n_clusters=2, n_init=10, random_state=0).fit_predict(points).astype(int)


def silhouette(points: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient (Euclidean; scikit-learn's `silhouette_score`) of a 2-cluster labelling; 0 if a
    cluster is empty or a singleton."""
    from sklearn.metrics import silhouette_score

    if min((labels == 0).sum(), (labels == 1).sum()) < 2:
        return 0.0
    return float(silhouette_score(points, labels))


@dataclass(frozen=True)
class FacetScore:
    """How multifaceted one neuron is. `facets`: dataset indices of the two groups, most activating first."""

    channel: int
    score: float
    separation: float  # 1 - cosine similarity of the two group means, clipped to [0, 1]
    balance: float  # min group size / (n / 2)
    silhouette: float
    facets: tuple[np.ndarray, np.ndarray]


def score_facets(channel: int, indices: np.ndarray, descriptors: np.ndarray) -> FacetScore:
    """Cluster a neuron's top inputs (`descriptors` (n, d), rows ordered by activation) into two facets."""
    unit = descriptors / np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-12)
    labels = two_means(unit)
    groups = [np.flatnonzero(labels == j) for j in (0, 1)]
    if min(len(g) for g in groups) == 0:
        return FacetScore(channel, 0.0, 0.0, 0.0, 0.0, (indices, indices[:0]))
    m0, m1 = unit[groups[0]].mean(0), unit[groups[1]].mean(0)
    cos = float(m0 @ m1 / max(np.linalg.norm(m0) * np.linalg.norm(m1), 1e-12))
    separation = float(np.clip(1 - cos, 0, 1))
    balance = float(min(len(g) for g in groups) / (len(labels) / 2))
    groups.sort(key=lambda g: g[0])  # the facet holding the top image first; rows are sorted by activation
    facets = (indices[groups[0]], indices[groups[1]])
    return FacetScore(channel, separation * balance, separation, balance, silhouette(unit, labels), facets)


def find_multifaceted(
    model: nn.Module,
    images: torch.Tensor,
    layer: str,
    channels: list[int] | None = None,
    top_k: int = 32,
    descriptor: str = "contribution",
    device: str | torch.device = "cpu",
    acts: DatasetActivations | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[FacetScore]:
    """Rank the neurons of `layer` by how multifaceted they are on `images` (N, 3, H, W), best first.

    Args:
        channels: neurons to score (default: all).
        top_k: top-activating images per neuron that are clustered.
        descriptor: a key of `DESCRIPTORS`.
        acts: precomputed `dataset_activations` of `layer` on `images`.

    Returns:
        FacetScore per neuron, sorted by score; explanation for users: `SCORE_EXPLANATION`.
    """
    acts = acts or dataset_activations(model, images, layer, device)
    channels = list(range(acts.value.shape[1])) if channels is None else list(channels)
    described = facet_descriptors(model, images, acts, channels, top_k, descriptor, device)
    scores = []
    for n, c in enumerate(channels):
        scores.append(score_facets(c, *described[c]))
        if progress is not None:
            progress(n + 1, len(channels))
    return sorted(scores, key=lambda s: -s.score)


def facet_recovery_table(rows: pd.DataFrame) -> pd.DataFrame:
    """How often a neuron's visualisation shows the facet of the sample it was made for, per judge and network.

    Args:
        rows: `benchmarks/facet_recovery_real.py`'s rows: one per (channel, facet, sparsity) with `facet` and, per
            judge, `dense_facet` / `spade_facet` (contribution judge) and `dense_facet_features` /
            `spade_facet_features` (features judge).

    Returns:
        One row per (sparsity, judge, network): `shows_facet` k, n, share and its Wilson 95% interval (`lo`, `hi`),
        and for SPADE `channels_split`: channels whose two facets' SPADE visualisations are judged different (the
        dense visualisation is one image per channel, so it never splits).
    """
    from spade_engine.metrics import wilson_interval

    out = []
    for sparsity, g in rows.groupby("sparsity"):
        for judge, suffix in (("contribution", ""), ("features", "_features")):
            for network in ("dense", "spade"):
                col = f"{network}_facet{suffix}"
                if col not in g:
                    continue
                k, n = int((g[col] == g["facet"]).sum()), len(g)
                lo, hi = wilson_interval(k, n)
                split = int(g.groupby("channel")[col].nunique().eq(2).sum()) if network == "spade" else 0
                out.append(dict(sparsity=sparsity, judge=judge, network=network, shows_facet=k, n=n, share=k / n,
                                lo=lo, hi=hi, channels_split=split, channels=g["channel"].nunique()))  # fmt: skip
    return pd.DataFrame(out)
