"""Sobol region importance (Fel et al., NeurIPS 2021; Sobol-SBSA): how much each image region matters to the class
score alone (first order S) and together with other regions (total order ST), dense vs SPADE-pruned."""

import streamlit as st

from pages.ui import cache, figures, keys
from pages.ui import sobol as ui
from pages.ui.model_picker import model_picker
from pages.ui.results import SpadeProgress
from pages.ui.sample_picker import sample_picker, to_uint8
from pages.ui.spade_controls import spade_controls
from spade_engine import sobol

st.title("Sobol region importance")
st.caption("Regions are random inputs: each is moved between the image and a blurred or mean-colour version by a "
           "quasi-random mask; variance-based indices say which regions matter, alone and through interactions.")  # fmt: skip
model = model_picker()
sample = sample_picker(model)
side = st.sidebar
side.subheader("Regions and design")
kind = side.radio("Regions", ["grid", "superpixels"], horizontal=True, key=keys.SOBOL_REGIONS)
if kind == "grid":
    size = side.slider("Grid (g × g)", 2, 12, 4, key=keys.SOBOL_GRID)
else:
    size = side.slider("Superpixels (about)", 4, 64, 16, key=keys.SOBOL_SEGMENTS)
n = side.select_slider("N (base samples, power of two)", [8, 16, 32, 64, 128, 256], 32, key=keys.SOBOL_N)
perturbation = side.radio("Perturb towards", ["blur", "mean"], horizontal=True, key=keys.SOBOL_PERTURB)
with_spade = side.checkbox("Also on the SPADE-pruned network", True, key=keys.SOBOL_SPADE)
settings = spade_controls(keys.SOBOL, model_name=model.loaded.info.name) if with_spade else None

labels = ui.regions(sample.sample_hash, kind, int(size), sample.image)
d = sobol.n_regions(labels)
names = model.class_names
pred = cache.predicted_class(model.key, sample.sample_hash, model.device, model.model, sample.batch)
target = int(st.selectbox("Class score explained", range(len(names)), index=pred, key=keys.SOBOL_TARGET,
                          format_func=lambda c: figures.class_name(names, c) + (" (predicted)" if c == pred else "")))  # fmt: skip
cost = sobol.sobol_cost(n, d)
networks = 2 if with_spade else 1
st.markdown(f"**{d} regions, N = {n}: {cost:,} forward passes per network** (N·(d+2)), {networks * cost:,} in all.")

spec = (kind, int(size))
variants = {"Dense": ("dense", model.model)}
done = ui.sobol_done(model.key, "dense", sample.sample_hash, target, spec, n, perturbation)
if settings is not None:
    spade_key = cache.spade_variant(settings)
    done = done and ui.sobol_done(model.key, spade_key, sample.sample_hash, target, spec, n, perturbation)
if not done and not st.button("Run the Sobol design", type="primary", key=keys.SOBOL_RUN):
    st.info("Choose the regions and N, then run: the cost above is what it takes.")
    st.stop()
if settings is not None:
    progress = SpadeProgress()
    run = cache.run_spade(model.key, model.device, model.model, sample.image, settings.n_aug, settings.seed,
                          settings.prune_config(), progress=progress, augment_config=settings.augment_config())  # fmt: skip
    progress.finish(f"SPADE network ready ({run.seconds:.1f} s)")
    variants[f"SPADE {settings.sparsity:.0%}"] = (spade_key, run.pruned)
results = {name: ui.sobol_run(model.key, key, sample.sample_hash, target, spec, n, perturbation, model.device, net,
                              sample.image, labels) for name, (key, net) in variants.items()}  # fmt: skip

cols = st.columns(len(results))
for col, (name, res) in zip(cols, results.items(), strict=True):
    col.metric(f"{name}: interaction share 1 − ΣS", f"{res.interaction_share:.1%}",
               help=f"Var f = {res.variance:.3g}; logit of the unperturbed image {res.score:.3g}")  # fmt: skip
image = to_uint8(sample.image)
for title, attr in (
    ("First order S (alone)", "first_order_map"),
    ("Total order ST (alone and in interactions)", "total_order_map"),
):
    st.subheader(title)
    panels = [(name, getattr(res, attr)) for name, res in results.items()]
    st.plotly_chart(
        figures.overlay_figure(image, panels, title.split(" (")[0], mask=sample.trojan_mask), width="stretch"
    )
st.subheader("Per region: first order and interactions")
st.plotly_chart(ui.shares_figure(results), width="stretch")
st.caption("Monte-Carlo estimates: with a small N, first-order indices (Saltelli) are noisy and can dip below 0, "
           "so 1 − ΣS can too; total order (Jansen) is steadier. Raise N to tighten them.")  # fmt: skip
