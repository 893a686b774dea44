"""The review store: turns with their steps, candidates and citations, and the reviews people
give them — on SQLite or PostgreSQL, one transaction per acknowledged write.

`ReviewStore(engine_or_url)` implements `domain.TurnSink` (`save_turn`) and owns the review
rules: `record_review(review, role)` validates (unknown step, rating out of range for the
kind, oversized correction, wrong role, bad fault tag → `ReviewError`, nothing stored),
keeps one current review per reviewer, step and kind (editor / reader kept apart) with
every version in `review_history`, and applies PRM800K's early stop: once an editor rates
a step -1, the later steps of that turn get that editor's *inferred* -1 labels
(`ReviewSource.inferred`), which disappear again if the -1 is changed.  The queue, users
and tuning snapshots come from the mixins in `queue.py`, `accounts.py`, `snapshots.py`.
The schema must exist: run `app.review.db.upgrade(url)` first.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Sequence

from sqlalchemy import JSON, Connection, DateTime, Engine, bindparam, delete, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain import Candidate, Citation, FaultTag, Review, ReviewKind, ReviewSource, Role, Step, Turn
from app.review.accounts import AccountsMixin
from app.review.db import StoreUnavailable, make_engine, unavailable_as_error
from app.review.exports import iter_turn_records
from app.review.models import (MAX_CORRECTION_CHARS, MAX_NAME_CHARS, CandidateRow, CitationRow,
                               Conversation, ReviewHistoryRow, ReviewRow, StepRow, TurnRow)
from app.review.pg_record import ReviewWriter
from app.review.queue import QueueMixin, least_grounded_first
from app.review.rows import ReviewError, aware, excerpt_from_json, excerpt_to_json, review_from_row
from app.review.snapshots import SnapshotsMixin

log = logging.getLogger(__name__)
EDITOR_RATINGS = (-1, 0, 1)
READER_RATINGS = (-1, 1)
__all__ = ["ReviewStore", "ReviewError", "StoreUnavailable", "HistoryEntry"]


@dataclass(frozen=True)
class HistoryEntry:
    review_id: int
    step_id: str
    reviewer: str
    kind: ReviewKind
    rating: int
    correction: str
    fault_tags: tuple[FaultTag, ...]
    source: ReviewSource
    action: str                 # create | update | delete
    recorded_at: datetime


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ReviewStore(AccountsMixin, QueueMixin, SnapshotsMixin):
    def __init__(self, engine_or_url: Engine | str, *,
                 priority: Callable[[Turn], float] = least_grounded_first,
                 max_correction_chars: int = MAX_CORRECTION_CHARS) -> None:
        self.engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
        self._owns_engine = isinstance(engine_or_url, str)
        self.priority = priority
        self.max_correction_chars = max_correction_chars
        # PostgreSQL review writes: one kept connection per writing thread (no connection yet)
        self._writer = ReviewWriter(self.engine) if self.engine.dialect.name == "postgresql" else None

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> ReviewStore:
        return cls(settings.resolved_database_url, **kwargs)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._owns_engine:
            self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any error."""
        with unavailable_as_error(self.engine.url):
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                yield session

    # ------------------------------------------------------------------ turns
    def save_turn(self, turn: Turn) -> None:
        """Store a finished turn (idempotent: saving it again adds only steps not yet stored)."""
        with self._tx() as s:
            if s.get(Conversation, turn.conversation_id) is None:
                s.add(Conversation(id=turn.conversation_id, character_id=turn.character_id,
                                   user_id=turn.user_id, created_at=turn.created_at))
                s.flush()
            steps = sorted(turn.steps, key=lambda st: st.index)
            grounded = sum(1 for st in steps if st.grounded) / len(steps) if steps else 0.0
            row = s.get(TurnRow, turn.id)
            if row is None:
                row = TurnRow(id=turn.id, conversation_id=turn.conversation_id,
                              character_id=turn.character_id, created_at=turn.created_at)
                s.add(row)
            row.question, row.answer, row.backend = turn.question, turn.answer, turn.backend
            row.snapshot_id, row.user_id = turn.snapshot_id, turn.user_id
            row.step_count, row.grounded_fraction = len(steps), grounded
            row.priority = self._priority_of(turn)
            s.flush()
            known = set(s.scalars(select(StepRow.id).where(StepRow.turn_id == turn.id)))
            for st in steps:
                if st.id not in known:
                    self._insert_step(s, st, turn.id)

    def _priority_of(self, turn: Turn) -> float:
        """Queue priority from the pluggable function; a failing one must not lose the turn."""
        try:
            return float(self.priority(turn))
        except Exception:  # noqa: BLE001
            log.exception("queue priority function failed for turn %s; using least grounded first", turn.id)
            return float(least_grounded_first(turn))

    @staticmethod
    def _insert_step(s: Session, st: Step, turn_id: str) -> None:
        s.execute(insert(StepRow).values(
            id=st.id, turn_id=turn_id, idx=st.index, name=st.name, text=st.text,
            score=float(st.score), grounded=bool(st.grounded), retrieval_ms=float(st.retrieval_ms),
            generation_ms=float(st.generation_ms), excerpts=[excerpt_to_json(e) for e in st.excerpts],
            visit=int(st.visit), via=st.via))
        cites = [dict(step_id=st.id, candidate_id=None, position=i, excerpt_id=c.excerpt_id,
                      quote=c.quote, valid=c.valid, problem=c.problem)
                 for i, c in enumerate(st.citations)]
        for pos, cand in enumerate(st.candidates):
            cid = s.execute(insert(CandidateRow).values(
                step_id=st.id, position=pos, text=cand.text, score=float(cand.score),
                chosen=bool(cand.chosen), features={k: float(v) for k, v in cand.features.items()})
            ).inserted_primary_key[0]
            cites += [dict(step_id=st.id, candidate_id=cid, position=i, excerpt_id=c.excerpt_id,
                           quote=c.quote, valid=c.valid, problem=c.problem)
                      for i, c in enumerate(cand.citations)]
        if cites:
            s.execute(insert(CitationRow), cites)

    def get_turn(self, turn_id: str) -> Turn | None:
        with self._tx() as s:
            row = s.get(TurnRow, turn_id)
            if row is None:
                return None
            steps = self._load_steps(s, list(s.scalars(
                select(StepRow).where(StepRow.turn_id == turn_id).order_by(StepRow.idx))))
            return Turn(id=row.id, conversation_id=row.conversation_id, character_id=row.character_id,
                        question=row.question, steps=steps, answer=row.answer, backend=row.backend,
                        snapshot_id=row.snapshot_id, created_at=aware(row.created_at),
                        user_id=row.user_id)

    def get_step(self, step_id: str) -> Step | None:
        with self._tx() as s:
            row = s.get(StepRow, step_id)
            return self._load_steps(s, [row])[0] if row else None

    @staticmethod
    def _load_steps(s: Session, rows: Sequence[StepRow]) -> list[Step]:
        ids = [r.id for r in rows]
        cands: dict[str, list[CandidateRow]] = defaultdict(list)
        for c in s.scalars(select(CandidateRow).where(CandidateRow.step_id.in_(ids))
                           .order_by(CandidateRow.position)):
            cands[c.step_id].append(c)
        step_cites: dict[str, list[Citation]] = defaultdict(list)
        cand_cites: dict[int, list[Citation]] = defaultdict(list)
        for c in s.scalars(select(CitationRow).where(CitationRow.step_id.in_(ids))
                           .order_by(CitationRow.position)):
            cite = Citation(excerpt_id=c.excerpt_id, quote=c.quote, valid=c.valid, problem=c.problem)
            (cand_cites[c.candidate_id] if c.candidate_id is not None else step_cites[c.step_id]).append(cite)
        return [Step(id=r.id, turn_id=r.turn_id, index=r.idx, name=r.name, text=r.text,
                     citations=step_cites[r.id], excerpts=[excerpt_from_json(e) for e in r.excerpts or []],
                     candidates=[Candidate(text=c.text, citations=cand_cites[c.id], score=c.score,
                                           chosen=c.chosen, features=dict(c.features or {}))
                                 for c in cands[r.id]],
                     score=r.score, grounded=r.grounded, retrieval_ms=r.retrieval_ms,
                     generation_ms=r.generation_ms, visit=r.visit, via=r.via) for r in rows]

    # ------------------------------------------------------------------ reviews
    def validate_review(self, review: Review, role: Role | str) -> Role:
        """Raise ReviewError if `review` given by someone with `role` is not acceptable."""
        try:
            role = Role(role)
        except ValueError:
            raise ReviewError(f"unknown role {role!r}; roles are reader, editor, lab") from None
        try:
            kind, source = ReviewKind(review.kind), ReviewSource(review.source)
        except ValueError as exc:
            raise ReviewError(f"bad review kind or source: {exc}") from None
        reviewer = (review.reviewer or "").strip()
        if not reviewer or len(reviewer) > MAX_NAME_CHARS:
            raise ReviewError(f"a review needs a reviewer name of 1 to {MAX_NAME_CHARS} characters")
        if kind is ReviewKind.editor and role is Role.reader:
            raise ReviewError(f"{reviewer!r} is a reader: only editors and lab members can give editor "
                              "ratings (-1/0/+1); readers give thumbs (kind=reader)")
        allowed = EDITOR_RATINGS if kind is ReviewKind.editor else READER_RATINGS
        if isinstance(review.rating, bool) or review.rating not in allowed:
            raise ReviewError(f"rating {review.rating!r} is out of range for a {kind.value} review; "
                              f"allowed: {', '.join(f'{r:+d}' for r in allowed)}")
        if source is ReviewSource.inferred:
            raise ReviewError("inferred labels are made by the store after a -1, not recorded directly")
        if source is ReviewSource.machine and role is not Role.lab:
            raise ReviewError("machine labels (from the step verifier) are recorded with the lab role")
        if len(review.correction or "") > self.max_correction_chars:
            raise ReviewError(f"the correction is {len(review.correction)} characters; the limit is "
                              f"{self.max_correction_chars}. Shorten it and submit again.")
        for tag in review.fault_tags:
            try:
                FaultTag(tag)
            except ValueError:
                raise ReviewError(f"unknown fault tag {tag!r}; use one of: "
                                  + ", ".join(t.value for t in FaultTag)) from None
        return role

    def record_review(self, review: Review, role: Role | str) -> Review:
        """Validate and store one review in its own transaction; returns it as stored."""
        self.validate_review(review, role)
        for attempt in range(3):
            try:
                return self._record(review)
            except IntegrityError:     # a concurrent first review by the same person: now an update
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _record(self, review: Review) -> Review:
        kind, source = ReviewKind(review.kind).value, ReviewSource(review.source).value
        reviewer = review.reviewer.strip()
        tags = [FaultTag(t).value for t in review.fault_tags]
        now = _now()
        if self.engine.dialect.name == "postgresql":
            return self._record_in_one_statement(review, kind, source, reviewer, tags, now)
        refresh = kind == ReviewKind.editor.value and source == ReviewSource.human.value
        params = dict(step_id=review.step_id, reviewer=reviewer, kind=kind, rating=review.rating,
                      correction=review.correction or "", tags=json.dumps(tags), source=source, now=now)
        with self._conn() as conn:           # three statements, text SQL: no per-call statement building
            found = conn.execute(_LOOKUP, params).first()
            if found is None:
                raise ReviewError(f"unknown step id {review.step_id!r}: it was never saved (or was "
                                  "deleted); reload the turn and review again")
            if found.prior is None:
                row = conn.execute(_INSERT, {**params, "turn_id": found.turn_id}).one()
            else:
                row = conn.execute(_UPDATE, {**params, "id": found.prior}).one()
            _history(conn, [row], "update" if found.prior is not None else "create", now)
            if refresh and (review.rating == -1 or found.early):
                self._refresh_inferred(conn, found.turn_id, reviewer, now)
            return review_from_row(row)

    @contextmanager
    def _conn(self) -> Iterator[Connection]:
        """One transaction on a Core connection (the review write paths: fewer objects than the ORM)."""
        with unavailable_as_error(self.engine.url), self.engine.begin() as conn:
            yield conn

    def _record_in_one_statement(self, review: Review, kind: str, source: str, reviewer: str,
                                 tags: list[str], now: datetime) -> Review:
        """PostgreSQL: one call of the review function, one round trip (``pg_record``)."""
        correction = review.correction or ""
        refresh = kind == ReviewKind.editor.value and source == ReviewSource.human.value
        with unavailable_as_error(self.engine.url):
            stored = self._writer.record(review.step_id, reviewer, kind, review.rating, correction,
                                         json.dumps(tags), source, now, refresh=refresh)
        if stored is None:
            raise ReviewError(f"unknown step id {review.step_id!r}: it was never saved (or was "
                              "deleted); reload the turn and review again")
        return Review(step_id=review.step_id, reviewer=reviewer, kind=ReviewKind(kind), rating=review.rating,
                      correction=correction, fault_tags=tuple(FaultTag(t) for t in tags),
                      source=ReviewSource(source), id=stored.id, created_at=stored.created_at,
                      updated_at=stored.updated_at)

    @staticmethod
    def _refresh_inferred(conn: Connection, turn_id: str, reviewer: str, now: datetime) -> None:
        """Make `reviewer`'s inferred -1 labels exactly the steps after their first human -1."""
        steps = conn.execute(select(_S.c.id, _S.c.idx).where(_S.c.turn_id == turn_id).order_by(_S.c.idx)).all()
        mine = {r.step_id: r for r in conn.execute(select(_R).where(
            _R.c.turn_id == turn_id, _R.c.reviewer == reviewer, _R.c.kind == ReviewKind.editor.value))}
        idx_of = {sid: idx for sid, idx in steps}
        wrong = [idx_of[sid] for sid, r in mine.items()
                 if r.source == ReviewSource.human.value and r.rating == -1]
        first_wrong = min(wrong) if wrong else None
        born, gone = [], []
        for sid, idx in steps:
            row = mine.get(sid)
            should = first_wrong is not None and idx > first_wrong
            if should and row is None:
                born.append(dict(step_id=sid, turn_id=turn_id, reviewer=reviewer, kind=ReviewKind.editor.value,
                                 rating=-1, correction="", fault_tags=[], source=ReviewSource.inferred.value,
                                 created_at=now, updated_at=now))
            elif not should and row is not None and row.source == ReviewSource.inferred.value:
                gone.append(row)
        if gone:
            _history(conn, gone, "delete", now)
            conn.execute(delete(_R).where(_R.c.id.in_([r.id for r in gone])))
        for values in born:
            _history(conn, [conn.execute(insert(_R).values(**values).returning(*_R.c)).one()], "create", now)

    def delete_review(self, step_id: str, reviewer: str, kind: ReviewKind | str = ReviewKind.editor) -> bool:
        """Withdraw a review (history kept); inferred labels follow.  False if there was none."""
        kind = ReviewKind(kind).value
        with self._conn() as conn:
            row = conn.execute(select(_R).where(_R.c.step_id == step_id, _R.c.reviewer == reviewer,
                                                _R.c.kind == kind).with_for_update()).first()
            if row is None:
                return False
            now = _now()
            _history(conn, [row], "delete", now)
            conn.execute(delete(_R).where(_R.c.id == row.id))
            if kind == ReviewKind.editor.value:
                self._refresh_inferred(conn, row.turn_id, reviewer, now)
            return True

    def reviews_for_step(self, step_id: str, *, kind: ReviewKind | str | None = None,
                         include_inferred: bool = True, include_machine: bool = True) -> list[Review]:
        q = select(ReviewRow).where(ReviewRow.step_id == step_id).order_by(ReviewRow.id)
        if kind is not None:
            q = q.where(ReviewRow.kind == ReviewKind(kind).value)
        if not include_inferred:
            q = q.where(ReviewRow.source != ReviewSource.inferred.value)
        if not include_machine:
            q = q.where(ReviewRow.source != ReviewSource.machine.value)
        with self._tx() as s:
            return [review_from_row(r) for r in s.scalars(q)]

    def reviews_for_turn(self, turn_id: str) -> dict[str, list[Review]]:
        """step id -> its reviews (all kinds and sources), for showing a turn with its state."""
        out: dict[str, list[Review]] = defaultdict(list)
        with self._tx() as s:
            for r in s.scalars(select(ReviewRow).where(ReviewRow.turn_id == turn_id).order_by(ReviewRow.id)):
                out[r.step_id].append(review_from_row(r))
        return dict(out)

    def review_history(self, step_id: str, reviewer: str | None = None) -> list[HistoryEntry]:
        q = select(ReviewHistoryRow).where(ReviewHistoryRow.step_id == step_id)
        if reviewer is not None:
            q = q.where(ReviewHistoryRow.reviewer == reviewer)
        with self._tx() as s:
            return [HistoryEntry(review_id=h.review_id, step_id=h.step_id, reviewer=h.reviewer,
                                 kind=ReviewKind(h.kind), rating=h.rating, correction=h.correction,
                                 fault_tags=tuple(FaultTag(t) for t in h.fault_tags or ()),
                                 source=ReviewSource(h.source), action=h.action,
                                 recorded_at=aware(h.recorded_at))
                    for h in s.scalars(q.order_by(ReviewHistoryRow.id))]

    def iter_reviewed_turns(self, character: str | None = None, *, include_readers: bool = False,
                            include_machine: bool = False, batch: int = 200
                            ) -> Iterator[tuple[Turn, dict[str, list[Review]]]]:
        """(full turn, step id -> all its reviews) for every turn an editor reviewed (or a reader
        thumbed, with `include_readers`; machine labels count with `include_machine`), oldest
        first.  The one reader of labelled steps: tuning and `iter_labelled_steps` use it."""
        for rec in iter_turn_records(self.engine, character=character, include_machine=include_machine,
                                     include_readers=include_readers, batch=batch):
            turn = self.get_turn(rec.turn_id)
            if turn is not None:
                yield turn, self.reviews_for_turn(rec.turn_id)

    def iter_labelled_steps(self, character: str | None = None, *, include_machine: bool = False,
                            batch: int = 200) -> Iterator[tuple[str, str, Step, list[Review]]]:
        """(character_id, question, full step, all its reviews) for every step of turns an editor
        reviewed, oldest turn first; machine labels only with `include_machine`."""
        for turn, reviews in self.iter_reviewed_turns(character, include_machine=include_machine, batch=batch):
            for step in turn.steps:
                mine = [r for r in reviews.get(step.id, [])
                        if include_machine or r.source is not ReviewSource.machine]
                if mine:
                    yield turn.character_id, turn.question, step, mine


_R, _S, _H = ReviewRow.__table__, StepRow.__table__, ReviewHistoryRow.__table__
_ROW_TYPES = dict(fault_tags=JSON, created_at=DateTime(timezone=True), updated_at=DateTime(timezone=True))
_COLS = "id, step_id, turn_id, reviewer, kind, rating, correction, fault_tags, source, created_at, updated_at"
# the step's turn, the reviewer's current review of it, and whether early stop has state to keep
_LOOKUP = text("""
SELECT s.turn_id AS turn_id,
  (SELECT r.id FROM reviews r WHERE r.step_id = s.id AND r.reviewer = :reviewer AND r.kind = :kind) AS prior,
  EXISTS (SELECT 1 FROM reviews r WHERE r.turn_id = s.turn_id AND r.reviewer = :reviewer AND r.kind = 'editor'
          AND r.step_id <> s.id AND (r.source = 'inferred' OR (r.source = 'human' AND r.rating = -1))) AS early
FROM turn_steps s WHERE s.id = :step_id""")
_INSERT = text(f"""
INSERT INTO reviews (step_id, turn_id, reviewer, kind, rating, correction, fault_tags, source, created_at, updated_at)
VALUES (:step_id, :turn_id, :reviewer, :kind, :rating, :correction, :tags, :source, :now, :now)
RETURNING {_COLS}""").bindparams(bindparam("now", type_=DateTime(timezone=True))).columns(**_ROW_TYPES)
_UPDATE = text(f"""
UPDATE reviews SET rating = :rating, correction = :correction, fault_tags = :tags, source = :source,
  updated_at = :now WHERE id = :id
RETURNING {_COLS}""").bindparams(bindparam("now", type_=DateTime(timezone=True))).columns(**_ROW_TYPES)


def _history(conn: Connection, rows, action: str, now: datetime) -> None:  # noqa: ANN001
    conn.execute(insert(_H), [dict(review_id=r.id, step_id=r.step_id, reviewer=r.reviewer, kind=r.kind,
                                   rating=r.rating, correction=r.correction or "",
                                   fault_tags=list(r.fault_tags or []), source=r.source, action=action,
                                   recorded_at=now) for r in rows])
