"""Benchmarks: the SPADE paper's saliency protocol on the shipped models (the testbeds' trojans; the real network's
photos), stored results and live runs."""

import streamlit as st

from pages.ui import benchmarks as ui
from pages.ui import cache, keys
from spade_engine import protocol
from spade_engine.saliency import METHODS, method_table

st.title("Benchmarks")
st.caption(
    "The SPADE paper's saliency tables, reproduced on our trojaned testbed: rows are saliency methods, "
    "columns the network the map is computed on. Trojan AUC: how well a map separates the trojan patch "
    "from the rest on trojaned images (the patch is the ground truth). Insertion ↑ / deletion ↓ AUC: the "
    "dense model's class probability as the map's most salient pixels are inserted / deleted."
)
infos = [m for m in cache.model_infos() if m.family in ("testbed", "packaged")]
shipped = {m.name: m for m in sorted(infos, key=lambda m: ui.latest(m.name) is None)}  # models with a stored run first
if not shipped:
    st.info("No shipped model found in assets/models: the benchmarks need one.")
    st.stop()
model = st.selectbox("Model", list(shipped), key=keys.BENCHMARKS_MODEL)
real = shipped[model].family != "testbed"
if real:
    st.caption(f"{shipped[model].title} is a real ImageNet network: it has no trojan ground truth, so its runs "
               "measure insertion and deletion on the offline photos and their crops (`spade_engine.photos`), "
               "the paper's ground-truth-free metric (ResNet-50 on ImageNet: insertion 44.2 → 47.2, deletion "
               "10.6 → 9.8 with SPADE).")  # fmt: skip


def show(df, note: str, reference: str = "Dense", key: str | None = None) -> None:
    st.caption(note)
    tabs = st.tabs(["Trojan AUC", "Insertion", "Deletion", "Pointing game", "Agreement"])
    for tab, metric in zip(tabs[:4], ["auc", "insertion", "deletion", "pointing"], strict=False):
        with tab:
            if metric not in df or df[metric].isna().all():
                st.info("Not measured in this run.")
                continue
            st.plotly_chart(protocol.figure(df, metric), width="stretch", key=key and f"{key}.{metric}")
            st.dataframe(protocol.tables(df)[metric], width="stretch")
            if reference in set(df["column"]) and df["column"].nunique() > 1:
                st.caption(f"Paired difference to {reference} on the same samples (percentage points, 95% CI): "
                           "an interval that excludes 0 is a difference this run resolved.")  # fmt: skip
                st.dataframe(protocol.paired_differences(df, metric, reference), width="stretch")
    with tabs[4]:
        st.caption("Share of samples on which the network still predicts the dense model's class.")
        st.dataframe(protocol.tables(df)["agreement"].style.format("{:.0%}"), width="stretch")


stored = ui.latest(model)
st.subheader("Latest stored results")
if stored is None:
    st.info(f"No stored run for {model} yet: `spade protocol --store --model {model}"
            f"{' --trojan 0 --clean 60' if real else ''}` writes one.")  # fmt: skip
else:
    st.caption("Each network against the dense model on the same samples: paired difference, averaged over all "
               "methods, 95% CI (green: the map does better than on the dense model).")  # fmt: skip
    st.plotly_chart(protocol.summary_figure(stored), width="stretch")
    show(stored, ui.describe(model, stored))

decisions = ui.latest(model, "levers_decision")
if decisions is not None:
    from spade_engine.protocol import levers

    st.subheader("Does SPADE keep the decision on this network?")
    st.caption("`benchmarks/compact_levers.py` on the offline photos and their crops: for each lever (how each layer "
               "is calibrated: `sweep` the dense network's inputs, `asymmetric` the pruned prefix's towards the dense "
               "output; `match` the BatchNorm statistics matched after pruning) and sparsity, the share of samples "
               "whose dense top-1 the pruned network keeps (95% Wilson interval), and on 64 held-out views of each "
               "sample (another augmentation seed) how many the pruned network classifies as the dense one does, "
               "and their logit cosine. Many crops get a low dense confidence, where the top classes nearly tie.")  # fmt: skip
    floor = 0.5 if st.toggle("Only samples the dense network is confident about (p ≥ 0.5)",
                             key=keys.BENCHMARKS_LEVERS_CONFIDENT) else 0.0  # fmt: skip
    table = levers.decision_table(decisions, floor)
    if table.empty:
        st.info("No sample in this run passes that confidence.")
    else:
        st.plotly_chart(levers.levers_figure(table), width="stretch", key=keys.BENCHMARKS_LEVERS_CHART)
        st.dataframe(table, width="stretch", hide_index=True)
    clear = ui.latest(model, "levers_clear")
    maps = ui.latest(model, "levers_maps")
    if clear is not None and "held_clear" in (clear_table := levers.decision_table(clear, floor)):
        st.caption("Held-out views whose dense decision is a near-tie flip under any change of the network: on the "
                   "clear views alone (the dense top-1 probability leads the second by ≥ 0.1; `held_clear`, pooled "
                   "over all samples' clear views; `clear_views`: how many of the 64 per sample, median).")  # fmt: skip
        st.dataframe(clear_table[["lever", "sparsity", "n", "kept", "held_agree", "held_clear", "clear_views"]],
                     width="stretch", hide_index=True)  # fmt: skip
        fewer = ui.latest(model, "levers_views32")
        if fewer is not None and not (views := levers.views_table(clear, fewer, floor)).empty:
            st.caption("Calibration views: 32 against 64 (the default), on the same photos and the same 64 held-out "
                       "views; a prune with 32 takes about half the time.")  # fmt: skip
            st.dataframe(views, width="stretch", hide_index=True)
            if maps is not None and not (view_maps := levers.views_map_table(maps, fewer)).empty:
                st.caption("Their maps against the dense maps (insertion ↑, deletion ↓, AUC points with 95% t "
                           "intervals), and `pair`: the 32-view maps minus the 64-view maps of the same samples.")  # fmt: skip
                st.dataframe(view_maps.round(2), width="stretch", hide_index=True)
    if maps is not None and not (diffs := levers.map_differences(maps)).empty:
        st.caption("The pruned network's maps against the dense maps of the same samples (insertion ↑, deletion ↓, "
                   "scored on the dense model; AUC points, 95% t interval and the interval that resamples photos).")  # fmt: skip
        st.dataframe(diffs.round(2), width="stretch", hide_index=True)
    default = ui.latest(model, "levers_default")
    if default is not None and not (default_table := levers.decision_table(default, floor)).empty:
        st.markdown("**The card's default, with its maps**")
        st.caption("The settings the Debugger starts with for this network (`benchmarks/compact_levers.py --views 32 "
                   "--levers asymmetric`, two samples per photo): decision and held-out agreement per sparsity, then "
                   "the maps against the dense maps of the same samples. `dense-1px` is no pruned network but the "
                   "scale: the dense network itself on the same inputs moved by one pixel, i.e. how often an "
                   "imperceptible change alone flips its decision.")  # fmt: skip
        st.plotly_chart(levers.levers_figure(default_table), width="stretch", key=keys.BENCHMARKS_DEFAULT_CHART)
        st.dataframe(default_table, width="stretch", hide_index=True)
        if not (default_maps := levers.map_differences(default)).empty:
            st.dataframe(default_maps.round(2), width="stretch", hide_index=True)

facets = ui.latest(model, "facet_recovery")
if facets is not None:
    from spade_engine import neurons

    st.subheader("Does SPADE's visualisation show the sample's facet?")
    st.caption("`benchmarks/facet_recovery_real.py`: channels of the last conv that the Neuron explorer's finder calls "
               "multifaceted on the offline photos (two facets whose top images come from different photos). For "
               "each facet's top image SPADE prunes the late layers, and Lucent visualises the channel on the dense "
               "and on the pruned network. Two judges say which facet an image shows: the nearest facet in the "
               "finder's descriptor space, or in the dense network's penultimate features (the sample left out). "
               "The dense image is one per channel, so it shows the sample's facet for about half the samples by "
               "construction; `channels_split`: channels whose two SPADE images show different facets.")  # fmt: skip
    st.dataframe(neurons.facet_recovery_table(facets).round(2), width="stretch", hide_index=True)
    picture = ui.results_file(model, "facet_recovery").with_suffix(".png")
    if picture.exists():
        st.image(str(picture), caption="Per channel: facet A's and facet B's top images, the dense visualisation, "
                 "SPADE's for A and for B.")  # fmt: skip

with st.expander("How each map is computed (attribution space, baseline, channel reduction)"):
    st.caption("Every method attributes the model's normalised input, as the SPADE authors' notebook does: a zero "
               "baseline there is the dataset's mean colour, and black pixels carry attribution like any other. "
               "Maps are the absolute channel sum except LRP's, which is signed, as in the authors' code.")  # fmt: skip
    st.dataframe(method_table(), width="stretch", hide_index=True)


def study(kind: str, title: str, caption: str, reference: str = "Dense") -> None:
    """A stored one-model study (`<model>_<kind>.csv`): its summary chart and tables, when it has been run."""
    df = ui.latest(model, kind)
    if df is None:
        return
    st.subheader(title)
    st.caption(caption)
    st.plotly_chart(protocol.summary_figure(df), width="stretch")
    show(df, ui.describe(model, df, kind), reference=reference)


study("blocksize", "Mask granularity of the column sweep",
      "SPADE-sweep with the mask chosen per block of 128 or 32 columns, per input channel (kh·kw columns; one "
      "column for a Linear), and with the SPADE authors' count (int(n·s)+1 weights of each kh·kw block). Bars: "
      "paired difference to the dense model, averaged over methods (green: better than dense).")  # fmt: skip
study("ablation", "What SPADE's effect depends on",
      "The SPADE-sweep column against variants that each change one thing: the calibration crops, the "
      "sparsity, which layers are pruned, the solver. Bars: paired difference to the dense model on the same "
      "samples, averaged over all methods (green: better than dense). Per-method tables below.",
      reference="SPADE-sweep")  # fmt: skip

difficulty = ui.latest(model, "difficulty")
if difficulty is not None:
    from spade_engine.testbed.difficulty import VARIANTS, table

    st.subheader("Why dense maps find the trojan here")
    st.caption("The same trojaned scenes with one property changed (`benchmarks/testbed_difficulty.py`): mean "
               "dense trojan AUC over the paper's ten methods, how many methods score above 97%, and the attack "
               "success. The paper's dense maps average 91.0% (ResNet-50, ImageNet); if a scene property made "
               "the trojan hard to find, it would show here.")  # fmt: skip
    summary = table(difficulty)
    st.plotly_chart(ui.difficulty_figure(summary), width="stretch")
    st.dataframe(summary.assign(variant=[VARIANTS[v] for v in summary.index]), width="stretch")

st.subheader("A run from `spade protocol`")
run_file = st.text_input("CSV written by `spade protocol --out` (or its .partial.csv while it runs)", key=keys.BENCHMARKS_RUN_FILE,
                         placeholder="e.g. results.csv")  # fmt: skip
if run_file:
    try:
        run = ui.read_run(run_file)
    except ValueError as e:
        st.error(str(e), icon=":material/error:")
    else:
        st.plotly_chart(protocol.summary_figure(run), width="stretch", key=keys.BENCHMARKS_RUN_SUMMARY_CHART)
        show(run, ui.describe_file(ui.Path(run_file).expanduser(), run), key=keys.BENCHMARKS_RUN_FILE)

st.subheader("Run a small benchmark now")
left, mid, right = st.columns(3)
samples = left.slider("Samples per metric", 1, 10, 2, key=keys.BENCHMARKS_SAMPLES)
methods = mid.multiselect(
    "Methods", list(METHODS), ["Saliency", "InputXGradient", "GradCAM"], key=keys.BENCHMARKS_METHODS
)
columns = right.multiselect("Columns", list(protocol.COLUMNS), ["Dense", "SPADE-sweep"], key=keys.BENCHMARKS_COLUMNS)
cost = samples * 2 * len(methods) * len(columns)
if st.button(f"Run ({cost} saliency maps)", disabled=not (methods and columns), type="primary"):
    bar = st.progress(0.0, text="Starting…")

    def progress(phase: str, done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"{phase}: sample {done} of {total}")

    try:
        st.session_state[keys.BENCHMARKS_LIVE] = ui.live_run(model, samples, methods, columns, real, progress)
    except FileNotFoundError as e:  # SPADE-tuned without a tuned profile
        st.error(str(e))
    bar.empty()
if keys.BENCHMARKS_LIVE in st.session_state:
    show(st.session_state[keys.BENCHMARKS_LIVE], "This session's live run (not stored).")
