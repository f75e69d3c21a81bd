"""Streamlit layer of the study pages (designer, participant, results): the shared store, cached trial views,
the design form, the pre-computation progress and the participant's trial screen. Researcher access lives in
`access`, the Teaching tour's helpers in `tour`.

The store is a `st.cache_resource` per database URL (`$SPADE_STUDY_DB`); every store call opens its own short
session, so sessions of many participants share it safely. Study state (status, answers) is never cached.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode, urlsplit

import streamlit as st

from pages.ui import keys
from spade_engine.models import spade_defaults, spade_views
from spade_engine.study import CONDITIONS, QUESTIONS, StudyDesign, StudyError, StudyInfo, StudyStore, conditions_for
from spade_engine.study.render import TrialView, trial_view
from spade_engine.study.samples import neuron_items, patch_items
from spade_engine.study.store import resolve_url


@st.cache_resource(show_spinner=False)
def _store(url: str) -> StudyStore:
    return StudyStore(url)


def store() -> StudyStore:
    """The shared study store of `$SPADE_STUDY_DB` (default `~/.local/share/spade_debugger/study.db`)."""
    return _store(resolve_url())


@st.cache_data(show_spinner=False, max_entries=256)
def cached_trial_view(url: str, study_id: str, code: str, trial_index: int) -> TrialView:
    """The blinded view of one trial (stimuli do not change once a study is open)."""
    s = _store(url)
    trial = s.trials(study_id, code)[trial_index]
    design = s.get_study(study_id).design
    return trial_view(s.get_stimulus(study_id, trial.item_index, trial.condition), trial, design.question)


def reference_view(stimulus, question: str) -> TrialView:  # noqa: ANN001 (store.Stimulus)
    """The trial view with the reference answer on the left ("A"), for the researcher's preview."""
    from spade_engine.study.trials import Trial

    return trial_view(stimulus, Trial(0, stimulus.item_index, stimulus.condition, "left"), question)


def participant_link(base_url: str, study_id: str, token: str) -> str:
    """`<base>/?participant=<token>&study=<id>`: the link carries the participant's secret token."""
    parts = urlsplit(base_url or "http://localhost:8501")
    root = f"{parts.scheme or 'http'}://{parts.netloc or parts.path}"
    return f"{root}/?{urlencode({'participant': token, 'study': study_id})}"


def default_base_url() -> str:
    try:
        parts = urlsplit(st.context.url or "")
        return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "http://localhost:8501"
    except Exception:  # noqa: BLE001 (no browser context, e.g. in AppTest)
        return "http://localhost:8501"


def study_label(info: StudyInfo) -> str:
    return f"{info.name} · {info.id} · {info.status} · {info.n_participants} participants, {info.n_answers} answers"


def study_picker(key: str, label: str = "Study") -> StudyInfo | None:
    """A select box over the stored studies (newest first); None when there is none."""
    studies = store().list_studies()
    if not studies:
        return None
    by_id = {s.id: s for s in studies}
    if st.session_state.get(key) not in by_id:
        st.session_state[key] = studies[0].id
    chosen = st.selectbox(label, list(by_id), format_func=lambda i: study_label(by_id[i]), key=key)
    return by_id[chosen]


# --------------------------------------------------------------------------------------------- designer


def design_form(model_names: list[str], saliency_methods: list[str]) -> StudyDesign | None:
    """The study design form; returns a design when "Create study" is pressed."""
    question = st.radio(
        "Question", list(QUESTIONS), format_func=lambda q: QUESTIONS[q].title, key=keys.DESIGNER_QUESTION
    )
    model = st.selectbox("Model", model_names, key=keys.DESIGNER_MODEL)  # outside the form: sets the defaults
    card = spade_defaults(model)
    with st.form(keys.DESIGNER_FORM):
        name = st.text_input("Study name", "SPADE visualisation study")
        options = conditions_for(question)
        conditions = st.multiselect("Conditions (hidden from participants)", options, default=options[:2],
                                    format_func=lambda c: CONDITIONS[c].title)  # fmt: skip
        method = st.selectbox(
            "Saliency method (saliency conditions)", saliency_methods or [""], key=keys.DESIGNER_METHOD
        )
        c1, c2, c3 = st.columns(3)
        n_items = c1.number_input("Items (testbed samples)", 2, 200, 12)
        trials = c2.number_input("Trials per participant", 1, 400, 10)
        seed = c3.number_input("Seed", 0, 10**6, 0)
        c1, c2, c3 = st.columns(3)
        sparsity = c1.slider("SPADE sparsity", 0.5, 0.99, card["sparsity"], help="Default: the model card's.")
        n_aug = c2.select_slider(
            "Augmented views", [16, 32, 64, 128, 256], spade_views(model), help="Default: the model card's."
        )
        steps = c3.select_slider("Visualisation steps", [32, 64, 128, 256, 512], 128)
        if question == "patch":
            trojan = st.slider("Share of trojaned samples", 0.0, 1.0, 0.5)
            grid = st.select_slider("Patch grid", [2, 3, 4, 6, 8], 4)
        else:
            layer = st.text_input("Neuron layer ('logits' = class logits)", "logits")
            channels = st.text_input("Neuron channels (comma-separated)", "0, 3")
        undecided = st.checkbox("Offer “can't tell”", True)
        if not st.form_submit_button("Create study", type="primary"):
            return None
    if question == "patch":
        items, extra = patch_items(int(n_items), int(seed), trojan_fraction=trojan), {"patch_grid": grid}
    else:
        neurons = [{"layer": layer.strip(), "channel": int(c)} for c in channels.split(",") if c.strip().isdigit()]
        items, extra = neuron_items(int(n_items), int(seed), neurons or [{"layer": "logits", "channel": 0}]), {}
    return StudyDesign(name=name, model=model, question=question, conditions=tuple(conditions), items=tuple(items),
                       trials_per_participant=int(trials), seed=int(seed), sparsity=float(sparsity), n_aug=int(n_aug),
                       saliency_method=method, vis_steps=int(steps), allow_undecided=undecided, **extra)  # fmt: skip


def agreement_note(study_id: str, design: StudyDesign) -> str:
    """How many items' SPADE networks kept the dense decision (from the stored stimuli's metadata)."""
    s, notes = store(), []
    for cond in [c for c in design.conditions if CONDITIONS[c].pruned]:
        kind = CONDITIONS[cond].kind
        flags = [s.get_stimulus(study_id, i, cond).meta.get(f"pruned_agrees_{kind}") for i in range(len(design.items))]
        notes.append(
            f"{CONDITIONS[cond].title}: SPADE kept the dense decision on {sum(map(bool, flags))}/{len(flags)} items"
        )
    return "; ".join(notes)


def precompute_with_progress(study_id: str, device: str) -> None:
    """Run the stimulus pre-computation with a progress bar that says what it is doing."""
    from spade_engine.study.stimuli import precompute

    bar = st.progress(0.0, text="Starting…")

    def report(done: int, total: int, message: str) -> None:
        bar.progress(done / max(total, 1), text=f"{message} ({done}/{total} stimuli)")

    with st.status("Pre-computing stimuli…", expanded=True) as status:
        n = precompute(store(), study_id, device, report)
        status.update(label=f"Pre-computed {n} stimuli; the study is ready to open.", state="complete")
    bar.progress(1.0, text="Done")


# ------------------------------------------------------------------------------------------ participant


def shown_at(study_id: str, token: str, trial_index: int) -> float:
    """When this trial was first shown in this browser session (starts the response-time clock)."""
    key = f"{keys.PARTICIPANT_SHOWN}.{study_id}.{token}.{trial_index}"
    if key not in st.session_state:
        st.session_state[key] = time.time()
    return st.session_state[key]


def answer(study_id: str, token: str, trial_index: int, choice: str) -> None:
    """Button callback: store the answer at once through the link's token (a second click on the same trial
    stores nothing); a refused answer (study closed meanwhile, …) leaves its plain message for the page."""
    ms = int((time.time() - shown_at(study_id, token, trial_index)) * 1000)
    try:
        st.session_state[keys.PARTICIPANT_LAST] = store().record_answer(study_id, token, trial_index, choice, ms)
        st.session_state.pop(keys.PARTICIPANT_REFUSED, None)
    except StudyError as e:
        st.session_state[keys.PARTICIPANT_REFUSED] = str(e)


def trial_screen(view: TrialView, design: StudyDesign, study_id: str, token: str, trial_index: int) -> None:
    """The trial: prompt, image with marked patches, explanation, two options with their choice buttons."""
    question = QUESTIONS[design.question]
    shown_at(study_id, token, trial_index)
    st.markdown(f"#### {question.prompt}")
    if view.decision:
        st.markdown(f"The network classified this image as **{view.decision}**.")
    top = st.columns(2 if view.image is not None else 1)
    if view.image is not None:
        top[0].image(view.image, caption="The image with two marked patches", width=320)
    if view.explanation is not None:
        top[-1].image(view.explanation, caption="Explanation of the network's decision", width=320)
    left, right = st.columns(2)
    args = (study_id, token, trial_index)
    label = question.option_label
    left.image(view.left, caption=f"{label.capitalize()} A", width=200)
    left.button(f"◀ {label.capitalize()} A", key=f"{keys.PARTICIPANT_CHOICE}.left.{trial_index}", on_click=answer, args=(*args, "left"),
                type="primary", shortcut="A")  # fmt: skip
    right.image(view.right, caption=f"{label.capitalize()} B", width=200)
    right.button(f"{label.capitalize()} B ▶", key=f"{keys.PARTICIPANT_CHOICE}.right.{trial_index}", on_click=answer, args=(*args, "right"),
                 type="primary", shortcut="B")  # fmt: skip
    if design.allow_undecided:
        st.button(
            "I can't tell",
            key=f"{keys.PARTICIPANT_CHOICE}.undecided.{trial_index}",
            on_click=answer,
            args=(*args, "undecided"),
        )
