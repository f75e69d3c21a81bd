"""Neuron explorer: Lucent feature visualisations of a neuron, dense vs SPADE for the current sample (arXiv
2310.04519, sec. 5), the testbed patches that drive it, and a finder for multifaceted neurons."""

import streamlit as st

from pages.ui import cache, figures, keys
from pages.ui import neurons as ui
from pages.ui.model_picker import model_picker
from pages.ui.results import SpadeProgress
from pages.ui.sample_picker import sample_picker
from pages.ui.spade_controls import spade_controls
from pages.ui.state import persisted
from spade_engine import featvis, neurons

st.title("Neuron explorer")
st.caption(
    "A multifaceted neuron's dense visualisation mixes its facets; SPADE's, pruned to one sample, shows the facet that sample uses."
)
model = model_picker()
sample = sample_picker(model)
settings = spade_controls(keys.NEURONS, default_sparsity=95, model_name=model.loaded.info.name)
late_only = persisted(
    st.sidebar.checkbox, keys.NEURONS_LATE_ONLY, True, "Prune only late layers (reference setting for visualisations)"
)
size = model.loaded.info.input_size
with st.sidebar.expander("Feature visualisation"):
    steps = persisted(
        st.select_slider, keys.NEURONS_STEPS, 128, "Steps", ui.STEP_CHOICES, valid=lambda v: v in ui.STEP_CHOICES
    )
    vis_size = persisted(st.number_input, keys.NEURONS_SIZE, size, "Image size (px)", 16, 512, step=8)
    lr = persisted(st.number_input, keys.NEURONS_LR, 0.05, "Learning rate", 0.001, 1.0, format="%.3f")
    vis_seed = persisted(st.number_input, keys.NEURONS_VIS_SEED, 0, "Seed", 0, 2**31 - 1)
config = featvis.FeatVisConfig(int(vis_size), int(steps), float(lr), int(vis_seed), input_size=size)

# ---- layer and neuron
infos = ui.layers(model.key, size, model.device, model.model)
if not infos:  # a TorchScript model: its layers take no hooks
    st.info(
        featvis.TORCHSCRIPT_LAYERS if featvis.is_scripted(model.model) else "This model has no conv or linear layers."
    )
    st.stop()
by_name = {i.name: i for i in infos}
layer = persisted(st.selectbox, keys.NEURONS_LAYER, infos[-1].name, "Layer", options=list(by_name), valid=lambda v: v in by_name,
                          format_func=lambda n: f"{n} ({by_name[n].kind}, {by_name[n].channels} neurons)")  # fmt: skip
info, is_head = by_name[layer], layer == infos[-1].name
ranking = ui.ranking(model.key, sample.sample_hash, layer, model.device, model.model, sample.image)
name = lambda c: f"{c} · {figures.class_name(model.class_names, c)}" if is_head else f"neuron {c}"  # noqa: E731
label = lambda c: f"{name(c)} (act {ranking.activation[c]:.2f}, attr {ranking.attribution[c]:+.2f})"  # noqa: E731
pick = st.radio("Pick the neuron", ui.PICKS, horizontal=True, key=keys.NEURONS_PICK)
if pick == ui.PICKS[2]:
    neuron = int(
        st.number_input(
            f"Neuron index (0–{info.channels - 1})", min_value=0, value=0, step=1, key=f"{keys.NEURONS_INDEX}.{layer}"
        )
    )
    if neuron >= info.channels:
        st.warning(f"{layer} has {info.channels} neurons: index {neuron} is out of range (0–{info.channels - 1}).")
        st.stop()
else:
    order = ranking.top("activation" if pick == ui.PICKS[0] else "attribution", 10)
    neuron = st.selectbox(
        f"{pick} for this sample", order, format_func=label, key=f"{keys.NEURONS_PICK}.{layer}.{pick}"
    )
objectives = ["class"] if is_head else (["channel"] if info.spatial is None else ["channel", "unit"])
kind = st.radio("Objective", objectives, horizontal=True, key=f"{keys.NEURONS_OBJECTIVE}.{len(objectives)}",
                format_func=lambda k: {"class": "class logit", "channel": "whole channel", "unit": "unit at the sample's peak"}[k])  # fmt: skip
position = tuple(int(v) for v in ranking.position[neuron]) if kind == "unit" else None
target = featvis.Target(kind, featvis.LOGITS if kind == "class" else layer, int(neuron), position)

# ---- SPADE network for this sample (late layers only by default)
prune = settings.prune_config()  # the card's solver and calibration, late-only or not
prune = neurons.late_prune_config(infos, settings.sparsity, base=prune) if late_only else prune
progress = SpadeProgress()
run = cache.run_spade(
    model.key,
    model.device,
    model.model,
    sample.image,
    settings.n_aug,
    settings.seed,
    prune,
    progress=progress,
    augment_config=settings.augment_config(),
)
progress.finish(f"SPADE network ready ({run.seconds:.1f} s)")
if not run.result.agrees:
    st.warning("The pruned network no longer predicts the dense class: lower the sparsity or add views.", icon="⚠️")

# ---- dense vs SPADE visualisation, top testbed patches
spade_label = f"SPADE {settings.sparsity:.0%}" + (" (late layers)" if late_only else "")
network = f"{sample.sample_hash}:{settings.n_aug}:{settings.seed}:crop{settings.crop_min:g}"
cols = st.columns(3)
for col, (title, net, key, prune_key) in zip(cols, [("Dense", model.model, "dense", "dense"),
                                                    (spade_label, run.pruned, network, repr(prune))], strict=False):  # fmt: skip
    vis = ui.visualise(model.key, key, prune_key, target, config, model.device, net, f"{title} visualisation")
    col.image(featvis.to_uint8(vis.image), caption=f"{title} · {target.describe()}", width="stretch")
    col.caption(
        ("loaded from cache" if vis.from_cache else f"{len(vis.trace)} steps in {vis.seconds:.1f} s")
        + f" · final objective {-vis.trace[-1]:.2f}"
    )
version = cache.testbed_version(model.key)  # a testbed model's own generator (v1 or v2)
probe = ui.probe_set(model, version)
acts = ui.dataset_acts(model.key, layer, probe.key, model.device, model.model, probe)
rf = ui.receptive_field(model.key, layer, size, model.device, model.model)
patches = neurons.top_patches(probe.images, acts, int(neuron), k=8, rf=rf)
cols[2].image(
    ui.grid(patches.images),
    caption=f"Top patches of {probe.title} (receptive field {min(rf, size)} px)",
    width="stretch",
)
cols[2].caption(ui.facet_caption(probe, patches.indices, version))

# ---- multifaceted neurons of this layer
st.subheader(f"Multifaceted neurons in {layer}")
st.caption(neurons.SCORE_EXPLANATION)
scores = ui.multifaceted(model.key, layer, probe.key, 32, model.device, model.model, probe)
st.plotly_chart(ui.score_chart(scores, name, int(neuron)), key=keys.NEURONS_SCORES_CHART)
choice = st.selectbox(
    "Show the facets of", [s.channel for s in scores[:20]], format_func=name, key=f"{keys.NEURONS_FACET}.{layer}"
)
chosen = next(s for s in scores if s.channel == choice)
for col, facet, letter in zip(st.columns(2), chosen.facets, "AB", strict=True):
    col.image(ui.grid(probe.images[facet[:8]].permute(0, 2, 3, 1).numpy()), width="stretch",
              caption=f"Facet {letter}: {len(facet)} images — {ui.facet_caption(probe, facet, version)}")  # fmt: skip
st.caption(
    f"Score {chosen.score:.2f} = separation {chosen.separation:.2f} × balance {chosen.balance:.2f} (silhouette {chosen.silhouette:.2f})."
)
