"""Recording a review on PostgreSQL: one call of the ``bookbot_record_review`` function.

Migration 0007 creates the PL/pgSQL function (current review upsert, history row, PRM800K
early-stop labels; see its docstring).  `ReviewWriter.record(…)` calls it once in autocommit
mode — one round trip, atomic on its own — as a server-side prepared statement, on a
psycopg connection the writer keeps for the calling thread (review writes come from a few
long-lived worker threads).  No pool checkout, no SQLAlchemy statement or result building:
a write's own Python work is about half of what it was through the pool.  Before each use
the connection is checked without a round trip (``db.closed_by_server``: a restarted or
terminated server makes the socket readable) and replaced when the server closed it.
Driver errors are handed back as SQLAlchemy's, so the store treats them like any other
(a lost connection → ``StoreUnavailable``; IntegrityError → retried).  The generic path
(SQLite) in ``store.py`` gives the same rows; the review tests run on both.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from app.review.db import closed_by_server

RECORD_SQL = ("SELECT id, created_at, updated_at FROM bookbot_record_review(%s, %s, %s, %s::integer, %s, "
              "%s::json, %s, %s::timestamptz, %s::boolean)")
APPLICATION_NAME = "bookbot-reviews"


class Stored(NamedTuple):
    """What the database adds to a review it stored."""

    id: int
    created_at: datetime
    updated_at: datetime


class ReviewWriter:
    """Review writes for one engine's database, on one kept connection per calling thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._mine = threading.local()
        self._all: set[Any] = set()
        self._lock = threading.Lock()

    def record(self, step_id: str, reviewer: str, kind: str, rating: int, correction: str, tags_json: str,
               source: str, now: datetime, refresh: bool) -> Stored | None:
        """Store one review; what the database added, or None when the step is unknown.
        `refresh`: apply early stop (a human editor's rating)."""
        params = (step_id, reviewer, kind, rating, correction, tags_json, source, now, refresh)
        dbapi = self.engine.dialect.loaded_dbapi
        conn = None
        try:
            conn = self._connection()
            row = conn.execute(RECORD_SQL, params, prepare=True).fetchone()
        except dbapi.Error as exc:
            lost = conn is None or conn.closed or conn.broken
            if lost and conn is not None:
                self._drop(conn)
            raise DBAPIError.instance(RECORD_SQL, params, exc, dbapi.Error, connection_invalidated=lost,
                                      dialect=self.engine.dialect) from exc
        return Stored(*row) if row is not None else None

    def _connection(self) -> Any:
        conn = getattr(self._mine, "conn", None)
        if conn is not None and closed_by_server(conn):
            self._drop(conn)
            conn = None
        if conn is None:
            cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
            cparams.setdefault("application_name", APPLICATION_NAME)
            conn = self.engine.dialect.loaded_dbapi.connect(*cargs, **cparams, autocommit=True)
            self._mine.conn = conn
            with self._lock:
                self._all.add(conn)
        return conn

    def _drop(self, conn: Any) -> None:
        if getattr(self._mine, "conn", None) is conn:
            self._mine.conn = None
        with self._lock:
            self._all.discard(conn)
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - it is going away either way
            pass

    def close(self) -> None:
        """Close every thread's connection (the store is closing)."""
        with self._lock:
            conns, self._all = list(self._all), set()
        for conn in conns:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
