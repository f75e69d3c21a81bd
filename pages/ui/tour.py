"""Streamlit layer of the Teaching tour (pages/2_Teaching_tour.py): its testbed sample and the figures of its
steps (calibration views, a layer's Hessian and mask, the outlined trojan, the neuron step); its session-state
keys are in `keys` (`TOUR_…`). The tour reuses the engine and the `cache`, `figures` and `neurons` layers.
"""

from __future__ import annotations

import streamlit as st

from pages.ui import keys

TOUR_MODEL = "testbed_v2_resnet"  # models.DEFAULT_MODEL: the testbed where SPADE's effect was measured


@st.cache_data(show_spinner=False, max_entries=64)
def tour_sample(version: str, cls: int, facet: int, seed: int, size: int, trojan: int | None = None):
    """A trojaned testbed image of generator `version` ("v1", "v2"), class `cls` / `facet`, with trojan `trojan`
    (an index into the generator's trojans; None: one its class can carry, picked by the seed).

    Returns:
        The image (3, S, S), its trojan mask (S, S) bool, the trojan's target class and the trojan's name.
    """
    from spade_engine import testbed

    data = testbed.generator(version)
    chosen = testbed.sample_trojan(data, cls, seed, trojan)
    batch = data.make_sample(cls, facet, seed, trojan=chosen, image_size=size)
    name = testbed.trojan_names(data)[testbed.trojan_index(data, chosen)]
    return batch.images[0], batch.trojan_mask[0].numpy(), int(batch.trojan_target[0]), name


def demo_entry(version: str) -> dict | None:
    """The shipped demo sample of testbed `version` (`testbed.examples.DEMO_RULE`), or None when none ships."""
    from pages.ui import cache

    return next((e for e in cache.all_examples().values() if "demo" in e and e.get("testbed", "v1") == version), None)


@st.cache_data(show_spinner="Drawing the demo sample…", max_entries=4)
def tour_demo(version: str, size: int):
    """The demo sample of testbed `version`, regenerated from its protocol batch (`demo_entry`), as `tour_sample`
    returns it, plus its class and facet.

    Returns:
        (image (3, S, S), trojan mask (S, S) bool, target class, trojan name, class, facet).
    """
    from spade_engine import testbed
    from spade_engine.testbed.examples import demo_sample

    entry, data = demo_entry(version), testbed.generator(version)
    b = demo_sample(data, entry["demo"]["batch_size"], entry["seed"], entry["demo"]["sample"], size)
    name = testbed.trojan_names(data)[testbed.trojan_index(data, int(b.trojan[0]))]
    target = int(b.trojan_target[0])
    return b.images[0], b.trojan_mask[0].numpy(), target, name, int(b.true_class[0]), int(b.facet[0])


def tour_trojan(version: str, cls: int) -> int:
    """The trojan of the tour's sample: a sidebar choice among those class `cls` can carry when the generator
    has several (v2), else the one."""
    from spade_engine import testbed

    data = testbed.generator(version)
    choices, names = testbed.trojans_for(data, cls), testbed.trojan_names(data)
    if len(choices) == 1:
        return choices[0]
    return st.sidebar.radio("Trojan", choices, key=f"{keys.TOUR_TROJAN}.{cls}", format_func=lambda t: names[t])


def default_layer(layers: list[str]) -> int:
    """Index of the tour's default layer: a 3x3 conv (not a 1x1 shortcut) half-way through the network."""
    convs = [i for i, n in enumerate(layers) if "conv" in n and "downsample" not in n] or list(range(len(layers)))
    return convs[len(convs) // 2]


def views_grid(views, k: int = 16, columns: int = 8, cell: int = 72):  # noqa: ANN001 (uint8 (B, 3, H, W))
    """The first `k` calibration views as one uint8 image."""
    from pages.ui import neurons as ui_neurons

    imgs = views[:k].float().div(255).permute(0, 2, 3, 1).numpy()  # (k, H, W, 3)
    return ui_neurons.grid(imgs, columns=columns, cell=cell)


def _pool(matrix, max_side: int):  # noqa: ANN001, ANN202 (torch (r, c) -> block-averaged (<= max_side, <= max_side))
    import torch.nn.functional as F

    r, c = matrix.shape
    kr, kc = max(1, -(-r // max_side)), max(1, -(-c // max_side))
    return F.avg_pool2d(matrix[None, None].float(), (kr, kc), ceil_mode=True)[0, 0], (kr, kc)


def hessian_figure(H, max_side: int = 120):  # noqa: ANN001 (torch (d, d))
    """Heat map of a layer Hessian normalised by its mean diagonal (block-averaged when d > `max_side`)."""
    import plotly.graph_objects as go

    scaled = H / H.diagonal().mean().clamp_min(1e-12)
    pooled, (kr, _) = _pool(scaled, max_side)
    z = pooled.cpu().numpy()
    lim = float(abs(z).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=z, colorscale="RdBu_r", zmin=-lim, zmax=lim, colorbar={"title": "H / mean diag"}))
    title = f"d = {H.shape[0]} inputs" + (f", shown in {kr}×{kr} blocks" if kr > 1 else "")
    fig.update_layout(title=title, height=380, yaxis={"autorange": "reversed", "scaleanchor": "x"},
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})  # fmt: skip
    return fig


def mask_figure(weight):  # noqa: ANN001 (torch (out, in, kh, kw) or (out, in))
    """Kept fraction of weights per (output, input) channel pair of the pruned layer."""
    import plotly.graph_objects as go

    kept = (weight != 0).float()
    kept = kept.flatten(2).mean(-1) if kept.dim() == 4 else kept  # (out, in)
    pooled, _ = _pool(kept, 120)
    fig = go.Figure(go.Heatmap(z=pooled.cpu().numpy(), colorscale="Greys_r", zmin=0, zmax=1,
                               colorbar={"title": "kept"}))  # fmt: skip
    fig.update_layout(title=f"{kept.mean():.1%} of the weights kept", height=380, xaxis_title="input channel",
                      yaxis={"title": "output channel", "autorange": "reversed"}, margin={"l": 10, "r": 10, "t": 40, "b": 10})  # fmt: skip
    return fig


def sample_with_patch(image_u8, mask, size: int = 256):  # noqa: ANN001 ((H, W, 3) uint8, (H, W) bool or None)
    """The sample enlarged to `size` px with the trojan patch outlined."""
    from PIL import Image, ImageDraw

    from pages.ui import figures

    img = Image.fromarray(image_u8).resize((size, size), Image.NEAREST)
    box = figures.mask_box(mask)
    if box is not None:
        s = size / image_u8.shape[1]
        x0, y0, x1, y1 = round(box[0] * s), round(box[1] * s), round((box[2] + 1) * s), round((box[3] + 1) * s)
        ImageDraw.Draw(img).rectangle((x0 - 2, y0 - 2, x1 + 1, y1 + 1), outline=figures.PATCH_COLOUR, width=3)
    return img


def tour_neuron_step(key: str, device: str, model, x, settings, unit: int, names, version: str) -> None:  # noqa: ANN001
    """Step 6 of the tour: the class unit's facets (testbed images of generator `version`) and its dense vs SPADE
    visualisations."""
    from pages.ui import neurons as ui_neurons
    from spade_engine import featvis, neurons
    from spade_engine.engine import sample_hash

    size = x.shape[-1]
    infos = ui_neurons.layers(key, size, device, model)
    head, probe = infos[-1].name, ui_neurons.testbed_probe(size, version)
    scores = ui_neurons.multifaceted(key, head, probe.key, 32, device, model, probe)
    chosen = next(s for s in scores if s.channel == unit)
    rank = [s.channel for s in scores].index(unit) + 1
    st.caption(
        f"Multifaceted score {chosen.score:.2f} (rank {rank} of {len(scores)} units of `{head}`). {neurons.SCORE_EXPLANATION}"
    )
    for col, facet, letter in zip(st.columns(2), chosen.facets, "AB", strict=False):
        col.image(ui_neurons.grid(probe.images[facet[:8]].permute(0, 2, 3, 1).numpy()), width="stretch",
                  caption=f"Facet {letter}: {len(facet)} top images — {ui_neurons.facet_caption(probe, facet, version)}")  # fmt: skip
    steps = st.select_slider("Visualisation steps", [8, 32, 64, 128, 256], 64, key=keys.TOUR_STEPS)
    config = featvis.FeatVisConfig(image_size=size, steps=int(steps), input_size=size)
    prune = neurons.late_prune_config(infos, settings.sparsity, base=settings.prune_config())
    from pages.ui import cache

    run = cache.run_spade(key, device, model, x, settings.n_aug, settings.seed, prune,
                          augment_config=settings.augment_config())  # fmt: skip
    target = featvis.class_target(unit)
    network = f"{sample_hash(x)}:{settings.n_aug}:{settings.seed}:crop{settings.crop_min:g}"
    cols = st.columns(2)
    for col, (title, net, variant, prune_key) in zip(cols, [("Dense", model, "dense", "dense"),
                                                           (f"SPADE {settings.sparsity:.0%} (late layers)", run.pruned, network, repr(prune))], strict=False):  # fmt: skip
        vis = ui_neurons.visualise(key, variant, prune_key, target, config, device, net, f"{title} visualisation")
        col.image(featvis.to_uint8(vis.image), caption=f"{title} · unit {unit} ({names[unit]})", width=256)
