"""Study results: agreement with the reference answer per condition with 95% Wilson intervals, a test between
two conditions (two-proportion z-test and Fisher's exact test), response times, per-participant table, CSV."""

import itertools

import streamlit as st

from pages.ui import access, keys
from pages.ui import study as ui
from spade_engine.study import CONDITIONS, stats
from spade_engine.study import figures as study_figures

st.title("Study results")
access.require_researcher("Study results")
info = ui.study_picker(keys.STUDY_RESULTS_STUDY)
if info is None:
    st.info("No study yet: design one on the Study designer page.")
    st.stop()
df = stats.answers_frame(ui.store().answers(info.id))
if df.empty:
    st.info(f"Study **{info.name}** has no answers yet ({info.n_participants} participants registered).")
    st.stop()

conditions = list(info.design.conditions)
summary = stats.condition_summary(df, conditions)
n_done = int((stats.participant_table(df)["answers"] >= info.design.trials_per_participant).sum())
st.caption(f"{len(df)} answers from {df['participant'].nunique()} participants ({n_done} finished). "
           "Agreement = the answer matches the reference (occlusion on the dense model); undecided counts as not.")  # fmt: skip
st.plotly_chart(study_figures.agreement_figure(summary), key=keys.STUDY_RESULTS_AGREEMENT_CHART)
table = summary.assign(condition=[CONDITIONS[c].title if c in CONDITIONS else c for c in summary["condition"]])
st.dataframe(table, hide_index=True, column_config={
    "agreement": st.column_config.NumberColumn(format="percent"), "ci_low": st.column_config.NumberColumn(format="percent"),
    "ci_high": st.column_config.NumberColumn(format="percent"),
    "undecided_rate": st.column_config.NumberColumn(format="percent"), "left_rate": st.column_config.NumberColumn(format="percent"),
})  # fmt: skip

st.subheader("Difference between conditions")
pairs = list(itertools.combinations(conditions, 2))
if pairs:
    a, b = st.selectbox("Compare", pairs, format_func=lambda p: f"{CONDITIONS[p[1]].title} vs {CONDITIONS[p[0]].title}",
                        key=keys.STUDY_RESULTS_PAIR)  # fmt: skip
    t = stats.compare_conditions(df, a, b)
    verdict = "significant" if t.significant() else "not significant"
    st.markdown(f"Agreement {t.correct_b}/{t.n_b} vs {t.correct_a}/{t.n_a}: difference **{t.difference:+.1%}**; "
                f"two-proportion z = {t.z:.2f} (p = {t.p_z:.3g}); Fisher's exact p = **{t.p_fisher:.3g}** "
                f"(odds ratio {t.odds_ratio:.2f}) — {verdict} at the 5% level.")  # fmt: skip
else:
    st.caption("The study has one condition: nothing to compare.")

st.subheader("Response times")
st.plotly_chart(study_figures.response_time_figure(df), key=keys.STUDY_RESULTS_RT_CHART)
st.subheader("Participants")
st.dataframe(stats.participant_table(df), hide_index=True)
st.download_button(
    "Download answers (CSV)", stats.to_csv(df), file_name=f"study_{info.id}_answers.csv", mime="text/csv"
)
