"""Study participant: blinded trials from a link `?participant=<token>&study=<id>` issued by the designer; only a
valid token of an open study gets trials. Every answer is stored at once, so a participant can stop and come back
with the same link to continue at the first unanswered trial."""

import streamlit as st

from pages.ui import keys
from pages.ui import study as ui
from spade_engine.study import StudyError

st.title("Study")
token, study_id = st.query_params.get("participant", ""), st.query_params.get("study", "")
if not token or not study_id:
    st.info("This study link is incomplete: it needs `?participant=<your code>&study=<study id>`. "
            "Please use the link you were given.")  # fmt: skip
    st.stop()
store = ui.store()
try:
    code = store.participant_for_token(study_id, token)  # refusals are logged by the store
    info = store.get_study(study_id)
except StudyError as e:
    st.info(str(e))
    st.stop()
design = info.design
n = design.trials_per_participant
current = store.next_trial(study_id, code)

if current is None:
    st.progress(1.0, text=f"All {n} trials answered")
    st.success("Thank you! All your answers are saved. You can close this window.")
    st.stop()

done = len(store.answered(study_id, code))
st.progress(done / n, text=f"Trial {current + 1} of {n}")
if st.session_state.get(keys.PARTICIPANT_PAUSED):
    st.info(f"Paused. Your {done} answers are saved; open the same link later to continue at trial {current + 1}.")
    if st.button("Continue now", type="primary"):
        st.session_state[keys.PARTICIPANT_PAUSED] = False
        st.rerun()
    st.stop()

if current == 0 and not done:
    st.caption("Each trial shows the image the network classified and an explanation of the network. "
               "Choose the option the question asks for; answer quickly but carefully. There are no trick trials.")  # fmt: skip
view = ui.cached_trial_view(store.url, study_id, code, current)
if st.session_state.get(keys.PARTICIPANT_REFUSED):
    st.warning(st.session_state[keys.PARTICIPANT_REFUSED])
ui.trial_screen(view, design, study_id, token, current)
st.divider()
if st.button("Take a break (stop here)"):
    st.session_state[keys.PARTICIPANT_PAUSED] = True
    st.rerun()
