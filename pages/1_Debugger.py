"""Debugger: prune the network to one sample with SPADE, then compare predictions and saliency maps of the dense
and the pruned network (arXiv 2310.04519). Widgets, caching and figures live in `pages/ui/`."""

from dataclasses import replace

import streamlit as st

from pages.ui import cache, command, figures, keys
from pages.ui.model_picker import model_picker
from pages.ui.results import SpadeProgress, download_buttons, palette_picker, reduction_picker, show_predictions
from pages.ui.sample_picker import demo_note, sample_caption, sample_picker, to_uint8
from pages.ui.spade_controls import spade_controls

st.title("SPADE Debugger")
st.caption("Prune the network to the connections that matter for one sample, then explain that sparse network.")
model = model_picker()
sample = sample_picker(model)
settings = spade_controls(keys.DEBUGGER, model_name=model.loaded.info.name)
st.caption(sample_caption(sample, model.class_names))
if ood := cache.out_of_domain(model.loaded.info.name, sample.meta):
    st.warning(ood, icon=":material/warning:")
if note := demo_note(sample.meta):
    st.caption(note)

# ---- SPADE: prepare (the engine caches the trace per sample) and prune (cached per setting)
progress = SpadeProgress()
config = cache.prune_config(settings)
try:
    run = cache.run_spade(
        model.key, model.device, model.model, sample.image, settings.n_aug, settings.seed, config, progress,
        settings.augment_config(), defer_prefetch=True,
    )  # fmt: skip
except Exception as e:  # an architecture the engine cannot prune: say so instead of a traceback
    st.error(f"SPADE could not prune this model: {type(e).__name__}: {e}", icon=":material/error:")
    st.stop()
progress.finish(run.summary())
result, names = run.result, model.class_names
spade_label = settings.label
show_predictions(result, names, spade_label)
if result.view_agreement < 0.5:
    st.warning(f"Only {result.view_agreement:.0%} of the calibration views keep the dense prediction: SPADE then "
               "reconstructs what the network does on the *other* views, not the evidence for this prediction "
               "(e.g. crops that cut away a small trigger). Fewer crops or a lower sparsity keep it closer.",
               icon=":material/crop:")  # fmt: skip
cannot = {n: why for n, why in result.dense_layers.items() if "settings" not in why}
if cannot:
    shown = "; ".join(f"`{n}` is {why}" for n, why in list(cannot.items())[:3])
    st.info(f"{len(cannot)} weight layers stay dense, since SPADE prunes only the Conv2d / Linear modules its hooks "
            f"see: {shown}{' …' if len(cannot) > 3 else ''}. The per-layer table below lists them all.",
            icon=":material/layers:")  # fmt: skip

# ---- saliency: dense vs SPADE side by side, one colour scale per method
st.subheader("Saliency: dense vs SPADE")
methods = cache.saliency_methods()
if not methods:
    st.info("The saliency registry (`spade_engine.saliency`) is not available.")
    st.stop()
left, mid, colours, right = st.columns([3, 2, 2, 2])
chosen = left.multiselect("Methods", methods, default=methods[:2], key=keys.DEBUGGER_METHODS)
reduction = reduction_picker(mid)
palette = palette_picker(colours)
dense_cls = result.dense_top5[0][0]
target = right.selectbox(
    "Explain class",
    range(len(names)),
    index=dense_cls,
    format_func=lambda c: names[c] + (" (dense prediction)" if c == dense_cls else ""),
    key=f"{keys.DEBUGGER_TARGET}.{model.key}.{sample.sample_hash}",  # a new sample starts at its prediction
)
layer = None
if cache.takes_layer(chosen) and st.toggle("Choose the GradCAM layer", key=keys.DEBUGGER_PICK_LAYER):
    # the default: the last feature map / token grid
    default, layers = cache.gradcam_layers(model.key, sample.sample_hash, model.model, sample.batch)
    options = [None, *layers]
    layer = st.selectbox("GradCAM layer", options, format_func=lambda n: n or f"default ({default})",
                         key=f"{keys.DEBUGGER_LAYER}.{model.key}", index=0)  # fmt: skip
settings = replace(settings, methods=tuple(chosen), reduction=reduction)  # what `spade explain` would be given
image_u8, mask = to_uint8(sample.image), sample.trojan_mask
with st.spinner("Computing the saliency maps of the dense and the pruned network…"):
    comparison = cache.compare_maps(model.key, sample.sample_hash, cache.spade_variant(settings), model.model,
                                    run.pruned, sample.batch, target, chosen, reduction, layer, mask, palette)  # fmt: skip
for refusal in comparison.refused:  # a method that cannot explain this model: say why, keep the others
    if refusal.failed:
        st.error(refusal.message, icon=":material/error:")
    else:
        st.warning(refusal.message, icon=":material/block:")
for pair in comparison.pairs:
    st.markdown(f"**{pair.method}**")
    chart_key = keys.scoped(keys.DEBUGGER_SALIENCY_CHART, pair.method)
    st.plotly_chart(figures.saliency_figure(image_u8, pair, spade_label, mask), key=chart_key)
if not chosen:
    st.info("Pick one or more saliency methods.")

# ---- per-layer numbers
with st.expander("Per-layer sparsity and reconstruction error"):
    layers = figures.layer_figure(result.layer_sparsity, result.layer_error, result.layer_target)
    st.plotly_chart(layers, key=keys.DEBUGGER_LAYERS_CHART)
    if result.dense_layers:
        st.dataframe({"dense layer": list(result.dense_layers), "why": list(result.dense_layers.values())})

# ---- export
info = model.loaded.info
command.run_over_folder(info, settings)
pairs, shown = list(comparison.pairs), {"model": info.name, "sample": sample.name, "sample_hash": sample.sample_hash}
rep = figures.report({**shown, **settings.__dict__}, names, result, pairs, target)
header = f"{info.title} · {sample.name} · target {names[target]} · {spade_label}, {settings.n_aug} views"
png, csv_text = cache.exports(sample.name, sample.sample_hash, names, result, target, comparison, chosen, image_u8,
                              spade_label, header, mask)  # fmt: skip
stem = f"spade_{sample.sample_hash[:8]}_{round(settings.sparsity * 100)}"
download_buttons(stem, png, csv_text, figures.report_json(rep))

# ---- the page is drawn: pre-prune the slider's neighbours in the background (exact OBC solves included)
run.prefetch()
