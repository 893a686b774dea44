"""The editors' review queue as plain Python: which turns still need reviewing, in what order,
with skip, a character filter and progress counts.  The Chainlit review desk page (app/ui)
shows what this returns; the same records are written from the desk and from the chat.

A step counts as *done* for an editor once they have an editor review of it (their own
rating, or an inferred -1 after an earlier -1 of theirs).  Without a reviewer, a step is
done once anyone has reviewed it.  Order: turns the reviewer skipped go last; then
`turns.priority` high to low; then newest first.  The priority is computed when a turn is
saved by a pluggable function (`least_grounded_first` until the step verifier exists:
`ReviewStore.reprioritize(fn)` recomputes it, e.g. from the verifier's uncertainty).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import and_, case, exists, func, literal, select, update

from app.domain import ReviewKind, ReviewSource, Turn
from app.review.models import QueueSkip, ReviewRow, StepRow, TurnRow
from app.review.rows import ReviewError, aware


def least_grounded_first(turn: Turn) -> float:
    """Priority = share of steps without a valid citation (1.0 = nothing grounded)."""
    if not turn.steps:
        return 0.0
    return 1.0 - sum(1 for st in turn.steps if st.grounded) / len(turn.steps)


@dataclass(frozen=True)
class QueueItem:
    turn_id: str
    character_id: str
    question: str
    created_at: datetime
    priority: float
    steps_total: int
    steps_done: int
    skipped: bool


@dataclass(frozen=True)
class Progress:
    turns_total: int            # turns with at least one step (after the character filter)
    turns_done: int             # every step done
    turns_pending: int
    turns_skipped: int          # pending turns the reviewer skipped
    steps_total: int
    steps_done: int

    @property
    def fraction_done(self) -> float:
        return self.steps_done / self.steps_total if self.steps_total else 1.0


def _done_clause(reviewer: str | None):  # noqa: ANN202
    cond = [ReviewRow.step_id == StepRow.id, ReviewRow.kind == ReviewKind.editor.value,
            ReviewRow.source.in_([ReviewSource.human.value, ReviewSource.inferred.value])]
    if reviewer is not None:
        cond.append(ReviewRow.reviewer == reviewer)
    return exists().where(and_(*cond))


class QueueMixin:
    """Queue API for `ReviewStore` (needs `self._tx()`)."""

    def _per_turn(self, reviewer: str | None, character: str | None):  # noqa: ANN202
        done = case((_done_clause(reviewer), 1), else_=0)
        q = (select(StepRow.turn_id.label("turn_id"), func.count().label("total"),
                    func.sum(done).label("done"))
             .group_by(StepRow.turn_id))
        if character is not None:
            q = q.join(TurnRow, TurnRow.id == StepRow.turn_id).where(TurnRow.character_id == character)
        return q.subquery()

    def queue(self, character: str | None = None, limit: int = 20, *, reviewer: str | None = None,
              offset: int = 0) -> list[QueueItem]:
        """Turns with steps `reviewer` (or nobody) has not reviewed yet, highest priority first."""
        per = self._per_turn(reviewer, character)
        skipped = (exists().where(and_(QueueSkip.turn_id == TurnRow.id, QueueSkip.reviewer == reviewer))
                   if reviewer is not None else None)
        skip_col = case((skipped, 1), else_=0) if skipped is not None else literal(0)
        q = (select(TurnRow.id, TurnRow.character_id, TurnRow.question, TurnRow.created_at,
                    TurnRow.priority, per.c.total, per.c.done, skip_col.label("skipped"))
             .join(per, per.c.turn_id == TurnRow.id)
             .where(per.c.done < per.c.total)
             .order_by(skip_col, TurnRow.priority.desc(), TurnRow.created_at.desc(), TurnRow.id)
             .limit(limit).offset(offset))
        with self._tx() as s:
            return [QueueItem(turn_id=r[0], character_id=r[1], question=r[2], created_at=aware(r[3]),
                              priority=r[4], steps_total=int(r[5]), steps_done=int(r[6] or 0),
                              skipped=bool(r[7])) for r in s.execute(q)]

    def next_turn(self, reviewer: str, character: str | None = None) -> QueueItem | None:
        items = self.queue(character, limit=1, reviewer=reviewer)
        return items[0] if items else None

    def skip(self, reviewer: str, turn_id: str) -> None:
        """Move a turn to the back of `reviewer`'s queue (until they review it)."""
        with self._tx() as s:
            row = s.get(QueueSkip, (reviewer, turn_id))
            if row is None:
                if s.get(TurnRow, turn_id) is None:
                    raise ReviewError(f"unknown turn id {turn_id!r}: nothing to skip")
                s.add(QueueSkip(reviewer=reviewer, turn_id=turn_id))
            else:
                row.skipped_at = datetime.now(timezone.utc)

    def unskip(self, reviewer: str, turn_id: str) -> None:
        with self._tx() as s:
            row = s.get(QueueSkip, (reviewer, turn_id))
            if row is not None:
                s.delete(row)

    def progress(self, reviewer: str | None = None, character: str | None = None) -> Progress:
        per = self._per_turn(reviewer, character)
        pending = per.c.done < per.c.total
        skipped = (exists().where(and_(QueueSkip.turn_id == per.c.turn_id, QueueSkip.reviewer == reviewer))
                   if reviewer is not None else None)
        cols = [func.count(), func.sum(case((pending, 1), else_=0)),
                func.coalesce(func.sum(per.c.total), 0), func.coalesce(func.sum(per.c.done), 0)]
        if skipped is not None:
            cols.append(func.sum(case((and_(pending, skipped), 1), else_=0)))
        with self._tx() as s:
            row = s.execute(select(*cols).select_from(per)).one()
        total, pend = int(row[0] or 0), int(row[1] or 0)
        return Progress(turns_total=total, turns_done=total - pend, turns_pending=pend,
                        turns_skipped=int(row[4] or 0) if skipped is not None else 0,
                        steps_total=int(row[2]), steps_done=int(row[3]))

    def characters(self) -> list[str]:
        """Character ids that have stored turns (for the desk's filter)."""
        with self._tx() as s:
            return list(s.scalars(select(TurnRow.character_id).distinct().order_by(TurnRow.character_id)))

    def reprioritize(self, priority: Callable[[Turn], float], character: str | None = None,
                     batch: int = 200) -> int:
        """Recompute every turn's queue priority with `priority` (e.g. verifier uncertainty)."""
        self.priority = priority
        q = select(TurnRow.id).order_by(TurnRow.id)
        if character is not None:
            q = q.where(TurnRow.character_id == character)
        with self._tx() as s:
            ids = list(s.scalars(q))
        for start in range(0, len(ids), batch):
            chunk = [self.get_turn(t) for t in ids[start:start + batch]]
            with self._tx() as s:
                for turn in chunk:
                    if turn is not None:
                        s.execute(update(TurnRow).where(TurnRow.id == turn.id)
                                  .values(priority=float(priority(turn))))
        return len(ids)
