"""SQLAlchemy 2 tables of the study store: studies, stimuli, participants, answers.

Stimuli are stored as PNG blobs in the database, so a study is one file (SQLite) or one database (PostgreSQL)
that can be copied or backed up as a whole.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

STATUSES = ("draft", "ready", "open", "closed")  # draft: designed; ready: stimuli computed; open: accepting


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class StudyRow(Base):
    """A study: its design (JSON) and its status."""

    __tablename__ = "studies"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="draft")
    design: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    opened_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    stimuli: Mapped[list[StimulusRow]] = relationship(back_populates="study", cascade="all, delete-orphan")
    participants: Mapped[list[ParticipantRow]] = relationship(back_populates="study", cascade="all, delete-orphan")


class StimulusRow(Base):
    """Pre-computed images of one (item, condition) and the item's reference answer (0 or 1: option a or b)."""

    __tablename__ = "stimuli"
    __table_args__ = (UniqueConstraint("study_id", "item_index", "condition", name="uq_stimulus_item_condition"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    item_index: Mapped[int] = mapped_column(Integer)
    condition: Mapped[str] = mapped_column(String(32))
    image_png: Mapped[bytes] = mapped_column(LargeBinary)
    explanation_png: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    option_a_png: Mapped[bytes] = mapped_column(LargeBinary)
    option_b_png: Mapped[bytes] = mapped_column(LargeBinary)
    reference: Mapped[int] = mapped_column(Integer)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    study: Mapped[StudyRow] = relationship(back_populates="stimuli")


class ParticipantRow(Base):
    """A participant of one study: a pseudonymous code (shown in the results) and the unguessable token of their
    link (`?participant=<token>`), issued by the designer; only the token lets them answer."""

    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("study_id", "code", name="uq_participant_code"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    token: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    study: Mapped[StudyRow] = relationship(back_populates="participants")
    answers: Mapped[list[AnswerRow]] = relationship(back_populates="participant", cascade="all, delete-orphan")


class AnswerRow(Base):
    """One answered trial. Unique per (participant, trial): a resubmitted answer is not stored twice."""

    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("participant_id", "trial_index", name="uq_answer_trial"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id", ondelete="CASCADE"), index=True)
    trial_index: Mapped[int] = mapped_column(Integer)
    stimulus_id: Mapped[int] = mapped_column(ForeignKey("stimuli.id", ondelete="CASCADE"))
    item_index: Mapped[int] = mapped_column(Integer)
    condition: Mapped[str] = mapped_column(String(32))
    reference_side: Mapped[str] = mapped_column(String(8))
    choice: Mapped[str] = mapped_column(String(16))
    correct: Mapped[bool] = mapped_column(Boolean)
    response_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    answered_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    participant: Mapped[ParticipantRow] = relationship(back_populates="answers")


__all__ = ["STATUSES", "AnswerRow", "Base", "ParticipantRow", "StimulusRow", "StudyRow", "utcnow"]
