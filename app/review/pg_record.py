"""Recording a review on PostgreSQL: one call of the ``bookbot_record_review`` function.

Migration 0007 creates the PL/pgSQL function (current review upsert, history row, PRM800K
early-stop labels; see its docstring).  `record(engine, …)` calls it once, in autocommit
mode — one round trip, atomic on its own — straight on a pooled psycopg connection: a
server-side prepared statement (``prepare=True``), no SQLAlchemy statement or result
building per review.  Driver errors are handed back as SQLAlchemy's (a lost connection is
invalidated first), so callers handle them like any other store error.  The generic path
(SQLite) in ``store.py`` gives the same rows; the review tests run on both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

RECORD_SQL = ("SELECT id, step_id, turn_id, reviewer, kind, rating, correction, fault_tags, source, "
              "created_at, updated_at FROM bookbot_record_review(%s, %s, %s, %s::integer, %s, %s::json, %s, "
              "%s::timestamptz, %s::boolean)")


class StoredReview(NamedTuple):
    """One ``reviews`` row as the function returns it (the attribute names `review_from_row` reads)."""

    id: int
    step_id: str
    turn_id: str
    reviewer: str
    kind: str
    rating: int
    correction: str
    fault_tags: list[str]
    source: str
    created_at: datetime
    updated_at: datetime


def record(engine: Engine, step_id: str, reviewer: str, kind: str, rating: int, correction: str,
           tags_json: str, source: str, now: datetime, refresh: bool) -> StoredReview | None:
    """Store one review on `engine` (PostgreSQL); the stored row, or None when the step is
    unknown.  `refresh`: apply early stop (a human editor's rating)."""
    params = (step_id, reviewer, kind, rating, correction, tags_json, source, now, refresh)
    pooled = engine.raw_connection()                    # the pool's psycopg connection, lent to us
    try:
        driver = pooled.driver_connection
        driver.autocommit = True
        try:
            with driver.cursor() as cur:
                cur.execute(RECORD_SQL, params, prepare=True)
                row = cur.fetchone()
        finally:
            if not driver.closed:
                driver.autocommit = False
    except engine.dialect.loaded_dbapi.Error as exc:
        raise _as_sqlalchemy_error(engine, pooled, exc, params) from exc
    finally:
        pooled.close()                                  # back to the pool (or away, if invalidated)
    return StoredReview(*row) if row is not None else None


def _as_sqlalchemy_error(engine: Engine, pooled: Any, exc: Exception, params: tuple[Any, ...]) -> BaseException:
    """What SQLAlchemy raises for a driver error (IntegrityError, OperationalError, …); a lost
    connection is invalidated, so the pool does not lend it again."""
    lost = engine.dialect.is_disconnect(exc, pooled, None)
    if lost:
        pooled.invalidate(exc)
    return DBAPIError.instance(RECORD_SQL, params, exc, engine.dialect.loaded_dbapi.Error,
                               connection_invalidated=lost, dialect=engine.dialect)
