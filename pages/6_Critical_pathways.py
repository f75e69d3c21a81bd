"""Critical pathways (Khakzar et al., CVPR 2021, arXiv 2103.16886): the neurons whose contribution |a · ∂y/∂a| to the
class score is largest, and the input gradient back-propagated only through them (the pathway gradient)."""

import streamlit as st

from pages.ui import cache, figures, keys
from pages.ui import pathways as ui
from pages.ui.model_picker import model_picker
from pages.ui.sample_picker import sample_picker, to_uint8

st.title("Critical pathways")
st.caption("Keep the neurons that contribute most to the class score, gate the rest to zero, and back-propagate "
           "through what is left: the network restricted to the pathway is locally linear around the sample.")  # fmt: skip
model = model_picker()
sample = sample_picker(model)
side = st.sidebar
side.subheader("Pathway")
keep = side.slider("Neurons kept (%)", 1, 100, 15, key=keys.PATHWAYS_KEEP, help="The authors keep the top 15 %.") / 100
granularity = side.radio("Neurons are", ["unit", "channel"], horizontal=True, key=keys.PATHWAYS_GRANULARITY,
                         format_func=lambda g: {"unit": "units", "channel": "channels"}[g])  # fmt: skip
selection = side.radio("Threshold", ["global", "per_layer"], key=keys.PATHWAYS_SELECTION,
                       format_func=lambda s: {"global": "one percentile over all layers", "per_layer": "same fraction per layer"}[s])  # fmt: skip

names = model.class_names
pred = cache.predicted_class(model.key, sample.sample_hash, model.device, model.model, sample.batch)
target = st.selectbox("Class to explain", range(len(names)), index=pred, key=keys.PATHWAYS_TARGET,
                      format_func=lambda c: f"{figures.class_name(names, c)}" + (" (predicted)" if c == pred else ""))  # fmt: skip
try:
    summary, grad, plain = ui.pathway(model.key, sample.sample_hash, int(target), keep, granularity, selection,
                                      model.model, sample.batch.to(model.device))  # fmt: skip
except ValueError as e:  # no ReLU modules (e.g. GELU / SiLU networks)
    st.info(f"Critical pathways are not available for this model: {e}")
    st.stop()

total_kept, total = sum(summary.kept), sum(summary.sizes)
cols = st.columns(3)
cols[0].metric("Pathway size", f"{total_kept:,} / {total:,}", help="neurons kept / all ReLU outputs")
cols[1].metric("Dense logit", f"{summary.dense_logit:.3g}")
cols[2].metric("Gated logit", f"{summary.gated_logit:.3g}",
               help="Same prediction as the dense net" if summary.gated_agrees else "The gated net predicts another class")  # fmt: skip

left, right = st.columns(2)
left.markdown("**Neurons kept per layer** (each ReLU call; reused modules appear once per call)")
left.plotly_chart(ui.layers_figure(summary), width="stretch")
right.markdown("**Output preserved vs pathway size** (green: the gated net still predicts the same class)")
right.plotly_chart(ui.curve_figure(summary), width="stretch")

st.subheader("Pathway gradient vs plain gradient")
if summary.keeps_all_contributing:
    st.warning(f"Only {summary.contributing:,} neurons contribute at all (active and on a gradient path), so a pathway "
               f"of {total_kept:,} keeps all of them and its gradient is the plain gradient: lower the kept share.")  # fmt: skip
panels = [("Plain gradient |∂y/∂x|", plain), (f"Pathway gradient (keep {keep:.0%})", grad)]
image = to_uint8(sample.image)
st.plotly_chart(figures.overlay_figure(image, panels, "|gradient|", mask=sample.trojan_mask), width="stretch")
if sample.trojan_mask is not None:
    inside = lambda m: float(m[sample.trojan_mask].sum() / max(m.sum(), 1e-12))  # noqa: E731
    st.caption(f"Share of the map on the trojan patch: plain {inside(plain):.0%}, pathway {inside(grad):.0%} "
               f"(the patch covers {sample.trojan_mask.mean():.0%} of the image).")  # fmt: skip
