"""The study store: create studies, keep stimuli, register participants and record answers safely.

SQLite by default (`$SPADE_STUDY_DB`, else `~/.local/share/spade_debugger/study.db`), any SQLAlchemy URL by
configuration (e.g. `postgresql+psycopg://user@host/db`). SQLite runs in WAL mode with a busy timeout, every
method uses its own short session, and an answer is written in its own transaction whose first statement is
the INSERT, so participants answering at the same time wait for each other instead of failing.

Access: a participant answers only through the unguessable token of their link (`secrets.token_urlsafe`, 128
bits), issued by the designer with `add_participant`; one answer per trial. Every refused request raises a
`StudyError` whose text is a plain message for the user and is logged on the `spade_engine.study.access` logger.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, event, func, inspect, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from spade_engine.study.design import CHOICES, UNDECIDED, StudyDesign
from spade_engine.study.schema import STATUSES, AnswerRow, Base, ParticipantRow, StimulusRow, StudyRow, utcnow
from spade_engine.study.trials import Trial, make_trials

ENV_VAR = "SPADE_STUDY_DB"
DEFAULT_PATH = Path("~/.local/share/spade_debugger/study.db")
CODE_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
TOKEN_BYTES = 16  # 128 random bits per participant link
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{16,64}$")
access_log = logging.getLogger("spade_engine.study.access")


class StudyError(RuntimeError):
    """A study request that cannot be served; `str(e)` is a message for the user."""


class UnknownStudyError(StudyError):
    pass


class UnknownParticipantError(StudyError):
    pass


class StudyNotOpenError(StudyError):
    pass


class InvalidTokenError(StudyError):
    """A participant link whose token is unknown for the study (mistyped, forged or from another study)."""


@dataclass(frozen=True)
class Participant:
    """A registered participant: the pseudonymous `code` (results) and the secret `token` of their link."""

    code: str
    token: str


def new_token() -> str:
    """An unguessable participant token (URL-safe, 22 characters, 128 random bits from `secrets`)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def redact_url(url: str) -> str:
    """The database URL with its password replaced by `***` (safe to show or log)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 (not a URL SQLAlchemy can parse: show nothing of it)
        return "<database URL hidden>"


def _refused(error: StudyError, detail: str) -> StudyError:
    """Log a refused request (what and why, never a token) and hand the error back to raise."""
    access_log.warning("refused %s: %s", detail, error)
    return error


@dataclass(frozen=True)
class Stimulus:
    """The pre-computed images of one (item, condition); `reference` is 0 (option a) or 1 (option b)."""

    item_index: int
    condition: str
    image_png: bytes
    option_a_png: bytes
    option_b_png: bytes
    reference: int
    explanation_png: bytes | None = None
    meta: dict = field(default_factory=dict)
    id: int | None = None


@dataclass(frozen=True)
class StudyInfo:
    id: str
    name: str
    status: str
    design: StudyDesign
    created_at: datetime
    n_stimuli: int = 0
    n_participants: int = 0
    n_answers: int = 0


@dataclass(frozen=True)
class Answer:
    participant: str
    trial_index: int
    item_index: int
    condition: str
    reference_side: str
    choice: str
    correct: bool
    response_ms: int | None
    answered_at: datetime
    duplicate: bool = False  # True when the trial had been answered before (nothing new was written)


def resolve_url(value: str | None = None) -> str:
    """An SQLAlchemy URL from a URL, a file path, `$SPADE_STUDY_DB` or the default path (parents created)."""
    value = value or os.environ.get(ENV_VAR) or str(DEFAULT_PATH)
    if "://" in value:
        return value
    path = Path(value).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def make_engine(url: str) -> Engine:
    """An engine; SQLite connections get WAL mode, a 30 s busy timeout and foreign keys."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "busy_timeout=30000", "foreign_keys=ON", "synchronous=NORMAL"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    return engine


class StudyStore:
    """All reads and writes of studies, stimuli, participants and answers."""

    def __init__(self, url: str | None = None):
        self.url = resolve_url(url)
        self.engine = make_engine(self.url)
        Base.metadata.create_all(self.engine)
        _add_token_column(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._backfill_tokens()

    def __repr__(self) -> str:
        return f"StudyStore({redact_url(self.url)!r})"

    @property
    def safe_url(self) -> str:
        """The database URL without its password, for display."""
        return redact_url(self.url)

    def _backfill_tokens(self) -> None:
        """Give participants registered before tokens existed (older databases) a token of their own."""
        with self._tx() as s:
            for row in s.scalars(select(ParticipantRow).where(ParticipantRow.token.is_(None))).all():
                row.token = new_token()

    def dispose(self) -> None:
        """Close every pooled connection (the data stay in the database)."""
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # ------------------------------------------------------------------------------------- studies

    def create_study(self, design: StudyDesign, study_id: str | None = None) -> str:
        """Store a new study in status "draft" and return its id.

        Raises:
            StudyError: the design is invalid or the id is taken.
        """
        errors = design.validate()
        if errors:
            raise StudyError(" ".join(errors))
        study_id = study_id or secrets.token_hex(4)
        _check_code(study_id, "study id")
        try:
            with self._tx() as s:
                s.add(StudyRow(id=study_id, name=design.name, design=_design_dict(design)))
        except IntegrityError as e:
            raise StudyError(f"A study with id '{study_id}' exists already.") from e
        return study_id

    def get_study(self, study_id: str) -> StudyInfo:
        with self._tx() as s:
            row = s.get(StudyRow, study_id)
            if row is None:
                raise UnknownStudyError(f"There is no study '{study_id}'.")
            return self._info(s, row)

    def list_studies(self) -> list[StudyInfo]:
        with self._tx() as s:
            rows = s.scalars(select(StudyRow).order_by(StudyRow.created_at.desc())).all()
            return [self._info(s, r) for r in rows]

    def _info(self, s: Session, row: StudyRow) -> StudyInfo:
        n_stim = s.scalar(select(func.count()).select_from(StimulusRow).where(StimulusRow.study_id == row.id))
        n_part = s.scalar(select(func.count()).select_from(ParticipantRow).where(ParticipantRow.study_id == row.id))
        n_ans = s.scalar(
            select(func.count()).select_from(AnswerRow).join(ParticipantRow).where(ParticipantRow.study_id == row.id)
        )
        design = StudyDesign.from_json(row.design)
        return StudyInfo(row.id, row.name, row.status, design, row.created_at, n_stim or 0, n_part or 0, n_ans or 0)

    def set_status(self, study_id: str, status: str) -> None:
        """Move a study to "draft", "ready", "open" or "closed"; opening needs every stimulus."""
        if status not in STATUSES:
            raise StudyError(f"Unknown status '{status}'.")
        if status == "open" and self.missing_stimuli(study_id):
            raise StudyError("Pre-compute all stimuli before opening the study.")
        with self._tx() as s:
            row = self._study_row(s, study_id)
            row.status = status
            if status == "open" and row.opened_at is None:
                row.opened_at = utcnow()

    def delete_study(self, study_id: str) -> None:
        with self._tx() as s:
            s.delete(self._study_row(s, study_id))

    def _study_row(self, s: Session, study_id: str) -> StudyRow:
        row = s.get(StudyRow, study_id)
        if row is None:
            raise UnknownStudyError(f"There is no study '{study_id}'.")
        return row

    # ------------------------------------------------------------------------------------- stimuli

    def put_stimulus(self, study_id: str, stim: Stimulus) -> None:
        """Insert or replace the stimulus of (item, condition)."""
        with self._tx() as s:
            self._study_row(s, study_id)
            old = s.scalar(_stimulus_query(study_id, stim.item_index, stim.condition))
            row = old or StimulusRow(study_id=study_id, item_index=stim.item_index, condition=stim.condition)
            row.image_png, row.explanation_png = stim.image_png, stim.explanation_png
            row.option_a_png, row.option_b_png = stim.option_a_png, stim.option_b_png
            row.reference, row.meta = int(stim.reference), dict(stim.meta)
            s.add(row)

    def get_stimulus(self, study_id: str, item_index: int, condition: str) -> Stimulus:
        with self._tx() as s:
            row = s.scalar(_stimulus_query(study_id, item_index, condition))
            if row is None:
                raise StudyError(f"Stimulus for item {item_index}, condition '{condition}' is missing.")
            return _stimulus(row)

    def missing_stimuli(self, study_id: str) -> list[tuple[int, str]]:
        """(item, condition) pairs of the design that have no stimulus yet."""
        design = self.get_study(study_id).design
        with self._tx() as s:
            have = set(
                s.execute(
                    select(StimulusRow.item_index, StimulusRow.condition).where(StimulusRow.study_id == study_id)
                ).all()
            )
        want = [(i, c) for i in range(len(design.items)) for c in design.conditions]
        return [pair for pair in want if pair not in have]

    # ---------------------------------------------------------------------------------- participants

    def add_participant(self, study_id: str, code: str | None = None) -> Participant:
        """Register a participant (a random code unless given) with a fresh unguessable link token.

        Raises:
            UnknownStudyError: no such study.
            StudyError: the code is malformed or taken in this study.
        """
        code = code or "p" + secrets.token_hex(4)
        _check_code(code, "participant id")
        token = new_token()
        try:
            with self._tx() as s:
                self._study_row(s, study_id)
                s.add(ParticipantRow(study_id=study_id, code=code, token=token))
        except IntegrityError as e:
            raise StudyError(f"Participant '{code}' exists already in this study.") from e
        return Participant(code, token)

    def tokens(self, study_id: str) -> dict[str, str]:
        """Participant code -> link token, in registration order (for the designer's links)."""
        with self._tx() as s:
            q = select(ParticipantRow.code, ParticipantRow.token).where(ParticipantRow.study_id == study_id)
            return dict(s.execute(q.order_by(ParticipantRow.id)).all())

    def participant_for_token(self, study_id: str, token: str) -> str:
        """The code of the participant whose link carries `token`, if the study is open.

        Raises:
            UnknownStudyError: no such study.
            StudyNotOpenError: the study does not accept participants.
            InvalidTokenError: the token belongs to no participant of this study.
        """
        if not CODE_PATTERN.match(study_id or ""):  # never echo a malformed id (the page renders markdown)
            raise _refused(UnknownStudyError("There is no such study; please use the link you were given."), "link")
        try:
            info = self.get_study(study_id)
        except UnknownStudyError as e:
            raise _refused(e, "participant link") from None
        if info.status != "open":
            raise _refused(StudyNotOpenError(f"The study '{info.name}' is not open for participants."), "link")
        code = None
        if TOKEN_PATTERN.match(token or ""):
            with self._tx() as s:
                q = select(ParticipantRow.code).where(
                    ParticipantRow.study_id == study_id, ParticipantRow.token == token
                )
                code = s.scalar(q)
        if code is None:
            message = "This study link is not valid. Please use the exact link you were given, or ask the researcher."
            raise _refused(InvalidTokenError(message), f"participant link for study {study_id}")
        return code

    def participants(self, study_id: str) -> list[str]:
        with self._tx() as s:
            q = select(ParticipantRow.code).where(ParticipantRow.study_id == study_id).order_by(ParticipantRow.id)
            return list(s.scalars(q).all())

    def _participant_id(self, study_id: str, code: str) -> int | None:
        with self._tx() as s:
            q = select(ParticipantRow.id).where(ParticipantRow.study_id == study_id, ParticipantRow.code == code)
            return s.scalar(q)

    # ------------------------------------------------------------------------------------- trials

    def trials(self, study_id: str, code: str) -> list[Trial]:
        """The participant's trial list (deterministic from the study seed and the code)."""
        d = self.get_study(study_id).design
        return make_trials(len(d.items), d.conditions, d.trials_per_participant, d.seed, code)

    def answered(self, study_id: str, code: str) -> set[int]:
        """Indices of the trials this participant has answered."""
        with self._tx() as s:
            q = select(AnswerRow.trial_index).join(ParticipantRow)
            q = q.where(ParticipantRow.study_id == study_id, ParticipantRow.code == code)
            return set(s.scalars(q).all())

    def next_trial(self, study_id: str, code: str) -> int | None:
        """The first unanswered trial (resume point), or None when the participant is done."""
        done = self.answered(study_id, code)
        n = self.get_study(study_id).design.trials_per_participant
        return next((k for k in range(n) if k not in done), None)

    def record_answer(
        self, study_id: str, token: str, trial_index: int, choice: str, response_ms: int | None = None
    ) -> Answer:
        """Write one answer in its own transaction; answering a trial twice keeps the first answer.

        Args:
            token: the participant's link token (answers come only through a valid token).
            choice: "left", "right" or "undecided" (when the design allows it).
            response_ms: time from showing the trial to the answer.

        Returns:
            The stored answer (`duplicate=True` when the trial had been answered before; nothing new is written).

        Raises:
            InvalidTokenError, StudyNotOpenError, UnknownStudyError: see `participant_for_token`.
            StudyError: invalid choice or trial index.
        """
        code = self.participant_for_token(study_id, token)
        design = self.get_study(study_id).design
        if choice not in CHOICES or (choice == UNDECIDED and not design.allow_undecided):
            raise _refused(StudyError(f"Invalid choice '{choice}'."), f"answer of {code}")
        pid = self._participant_id(study_id, code)
        trials = self.trials(study_id, code)
        if not 0 <= trial_index < len(trials):
            message = f"Trial {trial_index} does not exist (the study has {len(trials)} trials per participant)."
            raise _refused(StudyError(message), f"answer of {code}")
        trial = trials[trial_index]
        stim_id = self.get_stimulus(study_id, trial.item_index, trial.condition).id
        row = AnswerRow(
            participant_id=pid, trial_index=trial_index, stimulus_id=stim_id, item_index=trial.item_index,
            condition=trial.condition, reference_side=trial.reference_side, choice=choice,
            correct=choice == trial.reference_side, response_ms=None if response_ms is None else int(response_ms),
        )  # fmt: skip
        try:
            with self._tx() as s:
                s.add(row)
        except IntegrityError:
            access_log.info("second answer to trial %d of %s in study %s not stored", trial_index, code, study_id)
            return self._existing_answer(pid, code, trial_index)
        self._mark_finished(pid, len(trials))
        return _answer(row, code)

    def _existing_answer(self, pid: int, code: str, trial_index: int) -> Answer:
        with self._tx() as s:
            row = s.scalar(
                select(AnswerRow).where(AnswerRow.participant_id == pid, AnswerRow.trial_index == trial_index)
            )
            return _answer(row, code, duplicate=True)

    def _mark_finished(self, pid: int, n_trials: int) -> None:
        with self._tx() as s:
            n = s.scalar(select(func.count()).select_from(AnswerRow).where(AnswerRow.participant_id == pid))
            if n >= n_trials:
                s.execute(
                    update(ParticipantRow)
                    .where(ParticipantRow.id == pid, ParticipantRow.finished_at.is_(None))
                    .values(finished_at=utcnow())
                )

    def answers(self, study_id: str) -> list[Answer]:
        """Every answer of the study, by participant and trial."""
        with self._tx() as s:
            q = select(AnswerRow, ParticipantRow.code).join(ParticipantRow).where(ParticipantRow.study_id == study_id)
            q = q.order_by(ParticipantRow.id, AnswerRow.trial_index)
            return [_answer(row, code) for row, code in s.execute(q).all()]


def _add_token_column(engine: Engine) -> None:
    """Add `participants.token` (unique) to a database created before link tokens existed."""
    if "token" in {c["name"] for c in inspect(engine).get_columns("participants")}:
        return
    try:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE participants ADD COLUMN token VARCHAR(64)"))
            conn.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS ix_participants_token ON participants (token)"))
    except OperationalError:  # another process added it at the same moment
        if "token" not in {c["name"] for c in inspect(engine).get_columns("participants")}:
            raise


def _check_code(code: str, what: str) -> None:
    if not CODE_PATTERN.match(code):
        raise StudyError(f"A {what} may hold 1-64 letters, digits, '.', '_' or '-' (got '{code}').")


def _design_dict(design: StudyDesign) -> dict:
    return json.loads(design.to_json())


def _stimulus_query(study_id: str, item_index: int, condition: str):  # noqa: ANN202
    return select(StimulusRow).where(
        StimulusRow.study_id == study_id, StimulusRow.item_index == item_index, StimulusRow.condition == condition
    )


def _stimulus(row: StimulusRow) -> Stimulus:
    return Stimulus(
        row.item_index, row.condition, row.image_png, row.option_a_png, row.option_b_png, row.reference,
        row.explanation_png, dict(row.meta or {}), row.id,
    )  # fmt: skip


def _answer(row: AnswerRow, code: str, duplicate: bool = False) -> Answer:
    return Answer(
        code, row.trial_index, row.item_index, row.condition, row.reference_side, row.choice, bool(row.correct),
        row.response_ms, row.answered_at, duplicate,
    )  # fmt: skip
