"""Bookbot's own tables (SQLAlchemy 2 declarative models): accounts, sign-in throttle, conversations, turns,
steps, candidates, citations, reviews, review history, queue skips and tuning snapshots.

Chainlit's data-layer tables (users, threads, steps, elements, feedbacks) live in
`app.review.chainlit_tables` on the same `metadata`; that is why our step table is
called ``turn_steps`` and our user table ``accounts``.  The schema itself is created
and changed only by the Alembic migrations in `app/review/migrations` — these models
describe it for queries and must stay in step with the newest migration (a test
compares them).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, MetaData, String,
                        Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

MAX_CORRECTION_CHARS = 8000     # a correction longer than this is refused, not truncated
MAX_NAME_CHARS = 120


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = metadata


class Account(Base):
    """A person who signs in: readers, editors and lab members (role decides what they may do)."""

    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    # in every sign-in token; +1 on sign-out, role change, password change ends older tokens
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class SignInThrottle(Base):
    """Recent failed sign-ins for one key ("account:NAME" or "address:IP") and its block."""

    __tablename__ = "sign_in_throttle"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Conversation(Base):
    __tablename__ = "conversations"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)   # = Chainlit thread id in the UI
    character_id: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), index=True)
    user_id: Mapped[str | None] = mapped_column(String(MAX_NAME_CHARS), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class TurnRow(Base):
    __tablename__ = "turns"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"),
                                                 index=True)
    character_id: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), index=True)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text, default="")
    backend: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), default="")
    snapshot_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(MAX_NAME_CHARS), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, index=True)
    step_count: Mapped[int] = mapped_column(Integer, default=0)
    grounded_fraction: Mapped[float] = mapped_column(Float, default=0.0)
    # review-queue priority: higher first (default: least grounded); see app.review.queue
    priority: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    __table_args__ = (Index("ix_turns_created_at_id", "created_at", "id"),)   # export keyset order


class StepRow(Base):
    __tablename__ = "turn_steps"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    turn_id: Mapped[str] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    grounded: Mapped[bool] = mapped_column(Boolean, default=False)
    retrieval_ms: Mapped[float] = mapped_column(Float, default=0.0)
    generation_ms: Mapped[float] = mapped_column(Float, default=0.0)
    excerpts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # as shown to the reader
    # procedure graphs: idx is the place on the turn's path; which visit of the step, and why it was taken
    visit: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    via: Mapped[str] = mapped_column(Text, default="", server_default="")
    __table_args__ = (UniqueConstraint("turn_id", "idx"),)


class CandidateRow(Base):
    __tablename__ = "candidates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    step_id: Mapped[str] = mapped_column(ForeignKey("turn_steps.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    chosen: Mapped[bool] = mapped_column(Boolean, default=False)
    features: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)


class CitationRow(Base):
    """A citation of the chosen step text (candidate_id NULL) or of one candidate."""

    __tablename__ = "citations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    step_id: Mapped[str] = mapped_column(ForeignKey("turn_steps.id", ondelete="CASCADE"), index=True)
    candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"),
                                                     nullable=True, index=True)
    position: Mapped[int] = mapped_column(Integer)
    excerpt_id: Mapped[str] = mapped_column(String(255), index=True)
    quote: Mapped[str] = mapped_column(Text, default="")
    valid: Mapped[bool] = mapped_column(Boolean, default=True)
    problem: Mapped[str] = mapped_column(String(255), default="")


class ReviewRow(Base):
    """The current review of one reviewer for one step and kind (editor / reader kept apart)."""

    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # indexed by the unique (step_id, reviewer, kind) and (turn_id, kind, source) below: a write
    # maintains no single-column copies of them (migration 0005 dropped those)
    step_id: Mapped[str] = mapped_column(ForeignKey("turn_steps.id", ondelete="CASCADE"))
    turn_id: Mapped[str] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"))
    reviewer: Mapped[str] = mapped_column(String(MAX_NAME_CHARS))
    kind: Mapped[str] = mapped_column(String(16))
    rating: Mapped[int] = mapped_column(Integer)
    correction: Mapped[str] = mapped_column(Text, default="")
    fault_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    __table_args__ = (UniqueConstraint("step_id", "reviewer", "kind"),
                      Index("ix_reviews_turn_kind_source", "turn_id", "kind", "source"))


class ReviewHistoryRow(Base):
    """Every version a review has had (append-only): created, updated, removed."""

    __tablename__ = "review_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    review_id: Mapped[int] = mapped_column(Integer)
    step_id: Mapped[str] = mapped_column(String(64), index=True)
    reviewer: Mapped[str] = mapped_column(String(MAX_NAME_CHARS))
    kind: Mapped[str] = mapped_column(String(16))
    rating: Mapped[int] = mapped_column(Integer)
    correction: Mapped[str] = mapped_column(Text, default="")
    fault_tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))   # create | update | delete
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class QueueSkip(Base):
    """A turn an editor skipped in the review desk: it moves to the back of their queue."""

    __tablename__ = "queue_skips"
    reviewer: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), primary_key=True)
    turn_id: Mapped[str] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), primary_key=True)
    skipped_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class TuningSnapshot(Base):
    __tablename__ = "tuning_snapshots"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    character_id: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    artifact_path: Mapped[str] = mapped_column(Text, default="")
    artefacts: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)   # file name -> text
