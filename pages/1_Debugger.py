"""Debugger: prune the network to one sample with SPADE, then compare predictions and saliency maps of the dense
and the pruned network (arXiv 2310.04519). Widgets, caching and figures live in `pages/ui/`."""

import streamlit as st

from pages.ui import cache, figures, keys, widgets

st.title("SPADE Debugger")
st.caption("Prune the network to the connections that matter for one sample, then explain that sparse network.")
model = widgets.model_picker()
sample = widgets.sample_picker(model)
settings = widgets.spade_controls(keys.DEBUGGER)
st.caption(widgets.sample_caption(sample, model.class_names))

# ---- SPADE: prepare (cached per sample) and prune (cached per setting)
progress = widgets.SpadeProgress()
run = cache.run_spade(model.key, model.device, model.model, sample.image, settings.n_aug, settings.seed,
                      settings.prune_config(), progress=progress)  # fmt: skip
result, t = run.result, run.result.timings
if run.built_trace:
    timing = f"augment {t.get('augment', 0):.1f} s · Hessians {t.get('hessians', 0):.1f} s · solve {t.get('solve', 0):.1f} s"
    line = f"SPADE ran in {run.seconds:.1f} s ({timing})"
elif run.pruned_now:
    line = f"Reused cached trace · re-pruned in {run.seconds:.2f} s (inverse {t.get('inverse', 0):.2f} s · solve {t.get('solve', 0):.2f} s)"
else:
    line = f"Reused cached trace and pruned network ({run.seconds * 1000:.0f} ms)"
if not progress.finish(line):
    st.caption(line)

# ---- predictions
spade_label = f"SPADE {settings.sparsity:.0%}"
names = model.class_names
dense_cls, pruned_cls = result.dense_top5[0][0], result.pruned_top5[0][0]
left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Predictions")
    st.plotly_chart(figures.prediction_figure(result.dense_logits, result.pruned_logits, names), key="debugger.pred_chart")
with right:
    st.subheader("Pruned network")
    a, b = st.columns(2)
    a.metric("Dense predicts", figures.class_name(names, dense_cls), f"{result.dense_top5[0][1]:.1%}", delta_color="off", delta_arrow="off")
    b.metric(f"{spade_label} predicts", figures.class_name(names, pruned_cls), f"{result.pruned_top5[0][1]:.1%}", delta_color="off", delta_arrow="off")
    st.metric("Weights removed (mean over pruned layers)", f"{result.total_sparsity:.1%}", f"{len(result.layer_sparsity)} layers", delta_color="off", delta_arrow="off")
    if not result.agrees:
        st.warning(f"The pruned network no longer predicts the dense class **{figures.class_name(names, dense_cls)}** "
                   f"(it predicts **{figures.class_name(names, pruned_cls)}**). Its explanations describe a different "
                   "decision: lower the sparsity or add views.", icon=":material/warning:")  # fmt: skip

# ---- saliency: dense vs SPADE, same normalisation per method
st.subheader("Saliency: dense vs SPADE")
methods = cache.saliency_methods()
if not methods:
    st.info("The saliency registry (`spade_engine.saliency`) is not available yet.")
    st.stop()
c1, c2 = st.columns([3, 2])
chosen = c1.multiselect("Methods", methods, default=methods[:2], key=keys.DEBUGGER_METHODS)
target = c2.selectbox("Explain class", range(len(names)), index=dense_cls, format_func=lambda c: f"{names[c]}" + (" (dense prediction)" if c == dense_cls else ""),
                      key=f"{keys.DEBUGGER_TARGET}.{model.key}.{sample.sample_hash}")  # fmt: skip
variant = f"spade:{settings.n_aug}:{settings.seed}:{settings.prune_key}"
image_u8, pairs = widgets.to_uint8(sample.image), []
for method in chosen:
    with st.spinner(f"Computing {method} on the dense and the pruned network…"):
        dense = cache.saliency(model.key, sample.sample_hash, "dense", method, target, model.model, sample.batch)
        spade = cache.saliency(model.key, sample.sample_hash, variant, method, target, run.pruned, sample.batch)
    pair = figures.MapPair(method, dense, spade, cache.trojan_auc(dense, sample.trojan_mask), cache.trojan_auc(spade, sample.trojan_mask))
    pairs.append(pair)
    st.markdown(f"**{method}**")
    st.plotly_chart(figures.saliency_figure(image_u8, pair, spade_label, sample.trojan_mask), key=f"debugger.sal.{method}")
if not chosen:
    st.info("Pick one or more saliency methods.")

# ---- per-layer numbers
with st.expander("Per-layer sparsity and reconstruction error", expanded=False):
    st.plotly_chart(figures.layer_figure(result.layer_sparsity, result.layer_error, result.layer_target), key="debugger.layers")

# ---- export
settings_out = {"model": model.loaded.info.name, "sample": sample.name, "sample_hash": sample.sample_hash, **settings.__dict__}
rep = figures.report(settings_out, names, result, pairs, target)
header = f"{model.loaded.info.title} · {sample.name} · target {names[target]} · {spade_label}, {settings.n_aug} views"
stem = f"spade_{sample.sample_hash[:8]}_{int(settings.sparsity * 100)}"
e1, e2, e3 = st.columns(3)
e1.download_button("Panel (PNG)", figures.panel_png(image_u8, pairs, spade_label, header, sample.trojan_mask) if pairs else b"",
                   f"{stem}.png", "image/png", disabled=not pairs, on_click="ignore", width="stretch", icon=":material/download:")  # fmt: skip
e2.download_button("Numbers (CSV)", figures.report_csv(rep), f"{stem}.csv", "text/csv", on_click="ignore", width="stretch", icon=":material/download:")
e3.download_button("Numbers (JSON)", figures.report_json(rep), f"{stem}.json", "application/json", on_click="ignore", width="stretch", icon=":material/download:")
