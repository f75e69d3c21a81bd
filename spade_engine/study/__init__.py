"""Human-study mode: design a study, pre-compute its stimuli, serve blinded trials, store answers, analyse them.

`design` (question types, conditions, `StudyDesign`), `trials` (deterministic balanced trial lists),
`schema` + `store` (SQLAlchemy tables and the `StudyStore`), `stimuli` (pre-computation with the engine),
`render` (the blinded trial view), `stats` (agreement, Wilson intervals, tests, CSV). No Streamlit here.
"""

from spade_engine.study.design import CONDITIONS, QUESTIONS, StudyDesign, conditions_for
from spade_engine.study.store import (
    Answer,
    InvalidTokenError,
    Participant,
    Stimulus,
    StudyError,
    StudyInfo,
    StudyNotOpenError,
    StudyStore,
    UnknownParticipantError,
    UnknownStudyError,
)
from spade_engine.study.trials import Trial, make_trials

__all__ = [
    "CONDITIONS", "QUESTIONS", "Answer", "InvalidTokenError", "Participant", "Stimulus", "StudyDesign", "StudyError", "StudyInfo", "StudyNotOpenError",
    "StudyStore", "Trial", "UnknownParticipantError", "UnknownStudyError", "conditions_for", "make_trials",
]  # fmt: skip
