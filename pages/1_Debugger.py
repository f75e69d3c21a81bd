"""Debugger: prune the network to one sample with SPADE, then compare predictions and saliency maps of the dense
and the pruned network (arXiv 2310.04519). Widgets, caching and figures live in `pages/ui/`."""

import streamlit as st

from pages.ui import cache, command, figures, keys, widgets
from spade_engine import saliency

PICK_LAYER, LAYER = keys.scoped(keys.DEBUGGER, "pick_gradcam_layer"), keys.scoped(keys.DEBUGGER, "gradcam_layer")

st.title("SPADE Debugger")
st.caption("Prune the network to the connections that matter for one sample, then explain that sparse network.")
model = widgets.model_picker()
sample = widgets.sample_picker(model)
settings = widgets.spade_controls(keys.DEBUGGER, model_name=model.loaded.info.name)
st.caption(widgets.sample_caption(sample, model.class_names))
if note := widgets.demo_note(sample.meta):
    st.caption(note)

# ---- SPADE: prepare (the engine caches the trace per sample) and prune (cached per setting)
progress = widgets.SpadeProgress()
config = settings.prune_config()
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
widgets.show_predictions(result, names, spade_label)
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
reduction = widgets.reduction_picker(mid)
palette = widgets.palette_picker(colours)
dense_cls = result.dense_top5[0][0]
target = right.selectbox(
    "Explain class",
    range(len(names)),
    index=dense_cls,
    format_func=lambda c: names[c] + (" (dense prediction)" if c == dense_cls else ""),
    key=f"{keys.DEBUGGER_TARGET}.{model.key}.{sample.sample_hash}",  # a new sample starts at its prediction
)
layer = None
if set(chosen) & set(saliency.LAYER_METHODS) and st.toggle("Choose the GradCAM layer", key=PICK_LAYER):
    default, layers = saliency.gradcam_layers(model.model, sample.batch)  # the default: last feature map / token grid
    options = [None, *layers]
    layer = st.selectbox("GradCAM layer", options, format_func=lambda n: n or f"default ({default})",
                         key=f"{LAYER}.{model.key}", index=0)  # fmt: skip
variant = f"spade:{settings.n_aug}:{settings.seed}:{settings.prune_key}"
image_u8, mask, pairs = widgets.to_uint8(sample.image), sample.trojan_mask, []
refused = saliency.unsupported_methods(model.model, chosen)  # layer types a method has no faithful rule for
for method in chosen:
    if method in refused:
        st.warning(refused[method], icon=":material/block:")
        continue
    name = saliency.with_layer(method, layer)
    try:
        with st.spinner(f"Computing {method} on the dense and the pruned network…"):
            args = (target, model.model, sample.batch, reduction)
            dense = cache.saliency(model.key, sample.sample_hash, "dense", name, *args)
            spade = cache.saliency(model.key, sample.sample_hash, variant, name, target, run.pruned, *args[2:])
    except saliency.UnsupportedModelError as e:  # a failed conservation / completeness check: no wrong map
        st.warning(str(e), icon=":material/block:")
        continue
    except Exception as e:  # a method may not support this model (e.g. TorchScript): say so, keep the others
        st.error(f"{method} failed on this model: {type(e).__name__}: {e}", icon=":material/error:")
        continue
    aucs = cache.trojan_auc(dense, mask), cache.trojan_auc(spade, mask)
    pair = figures.MapPair(method, dense, spade, *aucs, cache.method_reduction(method, reduction), palette)
    pairs.append(pair)
    st.markdown(f"**{method}**")
    st.plotly_chart(figures.saliency_figure(image_u8, pair, spade_label, mask), key=f"debugger.sal.{method}")
if not chosen:
    st.info("Pick one or more saliency methods.")

# ---- per-layer numbers
with st.expander("Per-layer sparsity and reconstruction error"):
    layers = figures.layer_figure(result.layer_sparsity, result.layer_error, result.layer_target)
    st.plotly_chart(layers, key="debugger.layers")
    if result.dense_layers:
        st.dataframe({"dense layer": list(result.dense_layers), "why": list(result.dense_layers.values())})

# ---- export
info = model.loaded.info
command.run_over_folder(info, settings, chosen, reduction)
rep = figures.report(
    {"model": info.name, "sample": sample.name, "sample_hash": sample.sample_hash, **settings.__dict__},
    names,
    result,
    pairs,
    target,
)
header = f"{info.title} · {sample.name} · target {names[target]} · {spade_label}, {settings.n_aug} views"
png = figures.panel_png(image_u8, pairs, spade_label, header, mask) if pairs else None
stem = f"spade_{sample.sample_hash[:8]}_{round(settings.sparsity * 100)}"
widgets.download_buttons(stem, png, figures.report_csv(rep), figures.report_json(rep))

# ---- the page is drawn: pre-prune the slider's neighbours in the background (exact OBC solves included)
run.prefetch()
