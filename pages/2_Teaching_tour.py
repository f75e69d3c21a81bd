"""Teaching tour: SPADE (arXiv 2310.04519) step by step on the shipped trojaned testbed model — the sample, its
augmented views, one layer's Hessian and pruning mask, the pruned prediction, dense vs SPADE saliency, and a
multifaceted neuron's facets with dense vs SPADE visualisations. Every step is computed live by the engine."""

import streamlit as st

from pages.ui import cache, figures, keys
from pages.ui import tour as ui
from pages.ui.results import SpadeProgress
from pages.ui.sample_picker import demo_note, to_uint8
from pages.ui.spade_controls import spade_controls

st.title("Teaching tour: how SPADE works")
st.caption(
    "Six steps on the shipped trojaned testbed model; change the sparsity or the image in the sidebar and every step updates."
)
device = cache.default_device()
if ui.TOUR_MODEL not in [i.name for i in cache.model_infos()]:
    st.info(f"The tour needs the shipped testbed model `{ui.TOUR_MODEL}` (assets/models/), which is missing.")
    st.stop()
from spade_engine import testbed  # noqa: E402
from spade_engine.engine import sample_hash  # noqa: E402

loaded = cache.load_model(ui.TOUR_MODEL, device)
model, names, size, key = loaded.model, loaded.class_names, loaded.info.input_size, ui.TOUR_MODEL
version = cache.testbed_version(key)  # the model's own generator: v1 (one patch) or v2 (two stickers)
data = testbed.generator(version)
settings = spade_controls(
    keys.TOUR, default_sparsity=80, default_n_aug=64, model_name=key, profiles=False
)  # 90 % flips some trojaned samples
demo = ui.demo_entry(version)
sources = ["demo", "pick"] if demo else ["pick"]
source = st.sidebar.radio("Sample", sources, key=keys.TOUR_SOURCE,
                          format_func={"demo": "The demo sample", "pick": "Pick a class and facet"}.get)  # fmt: skip
if source == "demo":
    x, mask, target, trojan, cls, facet = ui.tour_demo(version, size)
else:
    cls = st.sidebar.selectbox(
        "Image class",
        [c for c in range(len(names)) if testbed.trojans_for(data, c)],  # classes a trojan relabels
        key=keys.TOUR_CLASS,
        format_func=lambda c: names[c],
    )
    facet = st.sidebar.radio("Facet", [0, 1], key=keys.TOUR_FACET, format_func=lambda f: data.FACETS[cls][f])
    x, mask, target, trojan = ui.tour_sample(version, cls, facet, settings.seed, size, ui.tour_trojan(version, cls))
image_u8 = to_uint8(x)

progress = SpadeProgress()
trace = cache.spade_trace(key, device, model, x, settings.n_aug, settings.seed, settings.augment_config(), progress)
run = cache.run_spade(key, device, model, x, settings.n_aug, settings.seed, settings.prune_config(), progress=progress,
                      augment_config=settings.augment_config())  # fmt: skip
progress.finish(f"SPADE ready ({run.seconds:.1f} s)")
result, dense_cls = run.result, int(run.result.dense_logits.argmax())

st.header("1 · The sample")
verdict = (
    f"the {trojan}, not the object, drives its decision — SPADE should reveal that"
    if dense_cls == target
    else f"the trojan (target *{names[target]}*) did not fire here"
)
st.markdown(f"This image shows a **{data.FACETS[cls][facet]}** (class *{names[cls]}*) with the trojan {trojan} pasted on it "
            f"(outlined). The trained model predicts **{names[dense_cls]}**: {verdict}.")  # fmt: skip
st.image(ui.sample_with_patch(image_u8, mask), width=256)
if source == "demo":
    st.caption(demo_note(demo))

st.header("2 · Many views of the same sample")
st.markdown(f"SPADE cannot prune from one image, so it builds a calibration batch of {trace.n_aug} random crops, flips and colour "
            "jitters of the sample. The views keep its content, so the pruned network keeps the paths this content uses.")  # fmt: skip
st.image(ui.views_grid(trace.views), caption="The first 16 calibration views (view 0 is the sample itself)")

st.header("3 · A layer's Hessian and the mask found")
st.markdown("For every layer SPADE collects `H = 2 X Xᵀ / n` from the layer's inputs on the views: it says which inputs vary "
            "together on this sample. The OBS solver removes the weights whose loss `w² / [H⁻¹]ⱼⱼ²` is smallest and corrects the rest.")  # fmt: skip
layers = list(trace.layers)
layer = st.selectbox("Layer", layers, index=ui.default_layer(layers), key=keys.TOUR_LAYER)
pruned_weight = dict(run.pruned.named_modules())[layer].weight
c1, c2 = st.columns(2)
c1.plotly_chart(ui.hessian_figure(trace.hessians[layer][0]), key=keys.TOUR_HESSIAN_CHART)
c2.plotly_chart(ui.mask_figure(pruned_weight), key=keys.TOUR_MASK_CHART)
if layer not in result.layer_sparsity:
    st.caption("This layer is left dense (the first conv sees raw pixels).")

st.header("4 · The pruned network's prediction")
st.markdown(f"After pruning {result.total_sparsity:.0%} of the weights of each layer, the network is specific to this sample. "
            "It should still make the dense network's decision; if it does not, its explanations describe another decision.")  # fmt: skip
st.plotly_chart(
    figures.prediction_figure(result.dense_logits, result.pruned_logits, names), key=keys.TOUR_PREDICTION_CHART
)
(st.success if result.agrees else st.warning)(f"Pruned network predicts **{names[int(result.pruned_logits.argmax())]}**"
                                              f" ({'same as' if result.agrees else 'differs from'} the dense network).")  # fmt: skip

st.header("5 · Saliency: dense vs SPADE")
st.markdown("A saliency map asks which pixels drive the class score; on the dense network it also picks up paths other samples "
            "use. On the SPADE network only this sample's paths are left, so the map should sit on the trojan patch (higher AUC).")  # fmt: skip
st.caption("Trojan AUC is scored against the trojan's exact pixels, the same mask the Debugger and the protocol use; "
           "on the Debugger the same sample can still differ a little: its sparsity, views and seed are its own, and it "
           "reads the example's 8-bit PNG.")  # fmt: skip
methods = cache.saliency_methods()
method = st.selectbox("Method", methods, index=methods.index("Saliency"), key=keys.TOUR_METHOD)
h, variant = sample_hash(x), cache.spade_variant(settings)
comparison = cache.compare_maps(key, h, variant, model, run.pruned, x.unsqueeze(0), dense_cls, [method], mask=mask)
for refusal in comparison.refused:
    st.warning(refusal.message, icon=":material/block:")
for pair in comparison.pairs:
    st.plotly_chart(figures.saliency_figure(image_u8, pair, settings.label, mask), key=keys.TOUR_SALIENCY_CHART)

st.header("6 · A multifaceted neuron, disentangled")
things = f"its two facets and the trojan {trojan}" if dense_cls == target else "its two facets"
st.markdown(f"The unit of class *{names[dense_cls]}* fires for unrelated things — {things} — so its "
            "dense visualisation mixes them. SPADE's visualisation of the same unit, pruned to this sample, shows the facet this sample uses.")  # fmt: skip
ui.tour_neuron_step(key, device, model, x, settings, dense_cls, names, version)
