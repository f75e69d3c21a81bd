"""Sparse decision layer (Wong, Santurkar & Madry, ICML 2021, arXiv 2105.04857): the dense head replaced by an
elastic-net GLM over standardised penultimate features, so each class is explained by a handful of features."""

import numpy as np
import streamlit as st

from pages.ui import cache, figures, keys
from pages.ui import sparse_layer as ui
from pages.ui.model_picker import model_picker
from pages.ui.sample_picker import sample_picker, to_uint8
from spade_engine import sparse_layer as sl

st.title("Sparse decision layer")
st.caption("A few deep features per class, each shown by the images that activate it most — spurious features "
           "(such as a trojan patch) become visible as a feature of the class they trigger.")  # fmt: skip
model = model_picker()
info, side = model.loaded.info, st.sidebar
side.subheader("Sparse layer")
budget = side.slider("Features per class (budget)", 1, 50, 10, key=keys.SPARSE_BUDGET)
n_lambdas = side.select_slider("Path points (λ values)", [10, 20, 40, 60, 100], 40, key=keys.SPARSE_LAMBDAS)
targets = ()
if info.family == "testbed":
    from spade_engine import testbed

    version = cache.testbed_version(model.key)  # the model's own generator: v1, or v2 with two trojans
    n = side.select_slider("Testbed images", [200, 500, 1000, 2000, 4000], 2000, key=keys.SPARSE_N)
    frac = side.slider("Trojaned share (as in training)", 0.0, 0.5, float(info.card.get("trojan", {}).get("fraction", 0.1)),
                       0.05, key=keys.SPARSE_TROJAN)  # fmt: skip
    batch = ui.testbed_batch(version, n, ui.TESTBED_SEED, frac, info.input_size)
    gen = testbed.generator(version)
    images, labels, names, targets = batch.images, batch.labels.numpy(), gen.CLASS_NAMES, testbed.target_classes(gen)
    truth, source = ui.testbed_truth(batch), ("testbed", version, n, ui.TESTBED_SEED, frac)
else:
    images, labels, names, source = ui.user_images(model.key, model.loaded.preprocess)
    truth = {}
data = ui.features(model.key, source, model.device, model.model, images, labels, names)
fit = ui.fit(model.key, source, data, truth, n_lambdas, budget)
same_classes = tuple(names) == tuple(model.class_names)

# ---- accuracy along the path
cols = st.columns(4)
cols[0].metric("Dense head accuracy", f"{fit.val.dense_accuracy:.1%}" if same_classes else "—")
cols[1].metric("Sparse layer accuracy", f"{fit.layer.accuracy(fit.val):.1%}")
cols[2].metric("Features per class", f"{fit.layer.features_per_class.mean():.1f}")
cols[3].metric(
    "Features used", int((np.abs(fit.layer.weight) > 1e-5).any(0).sum()), help=f"of {fit.layer.weight.shape[1]}"
)
st.plotly_chart(ui.path_figure(fit), width="stretch")
st.caption(f"Held-out accuracy ({len(fit.val)} images) along the regularisation path; the chosen point (star) is the "
           f"most accurate one with at most {budget} features per class (λ = {fit.layer.lam:.3g}).")  # fmt: skip
if targets and fit.truth:
    for note in ui.trojan_notes(fit, names, targets):
        st.info(note)

# ---- per class: its features, their top-activating images and visualisations
first = targets[0] if targets else 0
c = st.selectbox("Class", range(len(names)), index=first, format_func=lambda i: names[i], key=keys.SPARSE_CLASS)
feats = fit.layer.class_features(c)
if not feats:
    st.info("This class has no feature at this budget: raise the budget in the sidebar.")
    st.stop()
st.plotly_chart(ui.bars_figure([f"#{k}" for k, _ in feats], [w for _, w in feats], "weight on the standardised feature"),
                width="stretch")  # fmt: skip
show_vis = st.checkbox("Feature visualisations (Lucent; slow the first time)", key=keys.SPARSE_FEATVIS)
for k, w in feats[:6]:
    left, right = st.columns([1, 4])
    left.markdown(f"**Feature #{k}** · weight {w:+.2f}")
    if show_vis:
        left.image(
            ui.feature_vis(model.key, model.device, model.model, k, info.input_size, ui.FEATVIS_STEPS), width="stretch"
        )
    top = sl.top_activating(fit.layer, data, k, n=8)
    right.image(
        ui.images_uint8(images[top]), width=64, caption=[ui.image_caption(names, labels, truth, i) for i in top]
    )

# ---- per sample: contributions W[c, k] * z_k
sample = sample_picker(model, stop=False)
if sample is None:
    st.stop()
z = ui.sample_features(model.key, sample.sample_hash, model.device, model.model, sample.batch)
pred = int(fit.layer.logits(z[None]).argmax())
contrib = fit.layer.contributions(z)[pred]
order = [int(k) for k in np.argsort(-np.abs(contrib))[:10] if contrib[k] != 0]
st.subheader(f"Why this sample is “{figures.class_name(names, pred)}” for the sparse layer")
st.plotly_chart(ui.bars_figure([f"#{k}" for k in order], [float(contrib[k]) for k in order], "contribution W[c,k]·z_k"),
                width="stretch")  # fmt: skip
methods = cache.saliency_methods() if same_classes else []
if methods:
    st.subheader("Saliency through the dense head vs through the sparse FC")
    method = st.selectbox("Saliency method", methods, key=keys.SPARSE_METHOD)
    fit_key = (source, n_lambdas, fit.chosen)
    maps = ui.sparse_fc_saliency(model.key, fit_key, sample.sample_hash, method, pred, model.model, fit.layer,
                                 sample.batch.to(model.device))  # fmt: skip
    panels = [("Dense head", maps[0]), ("Sparse FC", maps[1])]
    st.plotly_chart(figures.overlay_figure(to_uint8(sample.image), panels, "saliency", mask=sample.trojan_mask),
                    width="stretch")  # fmt: skip
