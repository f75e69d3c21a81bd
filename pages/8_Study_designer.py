"""Study designer (researcher): design a human study of dense vs SPADE explanations, pre-compute its stimuli,
open it and hand out participant links. Trial design after the SPADE paper (arXiv 2310.04519, sec. 5.2)."""

import pandas as pd
import streamlit as st

from pages.ui import access, cache, keys
from pages.ui import study as ui
from spade_engine.study import CONDITIONS, QUESTIONS, StudyError

st.title("Study designer")
access.require_researcher("Study designer")
st.caption("In the paper's design participants see an image with two marked patches and an explanation (dense or SPADE, never named) "
           "and choose which patch drove the decision. Reference answers come from an occlusion score on the "
           "dense model (the paper used Score-CAM).")  # fmt: skip
store = ui.store()
st.sidebar.caption(f"Study database: `{store.safe_url}`")

with st.expander("Design a new study", expanded=not store.list_studies()):
    testbed = [i.name for i in cache.model_infos() if i.family == "testbed"]
    if not testbed:
        st.info("Studies use the shipped testbed models (`assets/models/`), which are not installed yet.")
    else:
        design = ui.design_form(testbed, cache.saliency_methods())
        if design is not None:
            try:
                st.session_state[keys.DESIGNER_STUDY] = store.create_study(design)
                st.success(f"Created study **{design.name}**. Pre-compute its stimuli below.")
            except StudyError as e:
                st.error(str(e))

info = ui.study_picker(keys.DESIGNER_STUDY)
if info is None:
    st.info("No study yet: design one above.")
    st.stop()
d = info.design
st.markdown(f"**{QUESTIONS[d.question].title}** · model `{d.model}` · {len(d.items)} items · "
            f"{d.trials_per_participant} trials per participant · conditions: "
            + ", ".join(CONDITIONS[c].title for c in d.conditions))  # fmt: skip

missing = store.missing_stimuli(info.id)
st.caption(f"Status: **{info.status}** · stimuli {info.n_stimuli}/{len(d.items) * len(d.conditions)}")
if missing and st.button(f"Pre-compute {len(missing)} stimuli", type="primary"):
    ui.precompute_with_progress(info.id, cache.default_device())  # stored one by one: an interruption loses nothing
    st.rerun()
if not missing and info.status != "open" and st.button("Open the study", type="primary"):
    store.set_status(info.id, "open")
    st.rerun()
if info.status == "open" and st.button("Close the study"):
    store.set_status(info.id, "closed")
    st.rerun()

if not missing:
    with st.expander("Preview stimuli (researcher only)"):
        item = st.number_input("Item", 0, len(d.items) - 1, 0)
        cols = st.columns(len(d.conditions) + 1)
        for col, cond in zip(cols[1:], d.conditions, strict=True):
            stim = store.get_stimulus(info.id, int(item), cond)
            col.image(stim.explanation_png or stim.image_png, caption=CONDITIONS[cond].title, width=200)
        view = ui.reference_view(stim, d.question)
        st.caption(ui.agreement_note(info.id, d))
        cols[0].image(view.image or view.left, caption="Reference answer: A (orange)", width=200)
        st.json(stim.meta, expanded=False)

st.subheader("Participant links")
if info.status != "open":
    st.info("Open the study to accept participants. Links work as soon as it is open.")
base = st.text_input("App address", ui.default_base_url(), key=keys.DESIGNER_BASE_URL)
n_new = st.number_input("New participant ids", 1, 200, 5, key=keys.DESIGNER_N_LINKS)
if st.button("Create participant ids"):
    for _ in range(int(n_new)):
        store.add_participant(info.id)
tokens = store.tokens(info.id)
codes = list(tokens)
answered = {c: 0 for c in codes}
for a in store.answers(info.id):
    answered[a.participant] = answered.get(a.participant, 0) + 1
if codes:
    links = [ui.participant_link(base, info.id, tokens[c]) for c in codes]
    st.code("\n".join(links), language=None)
    st.dataframe(pd.DataFrame({"participant": codes, "answers": [answered[c] for c in codes], "link": links}),
                 hide_index=True)  # fmt: skip
st.caption("Each link carries its participant's secret token: hand every participant their own link. Only these "
           "links can answer, one answer per trial; the results show the participant ids, never the tokens.")  # fmt: skip
