"""Copying a one-machine SQLite database's rows into the shared PostgreSQL database.

``copy_rows(source_url, target_url)`` copies every table the migrations own (accounts,
sign-in throttle, turns, steps, candidates, citations, reviews and their history, queue
skips, tuning snapshot rows, Chainlit's users, threads, steps, elements, feedbacks and
element payloads)
from a SQLite file into a database at the same revision, parents before children, in one
transaction.  A table that already has rows in the target is left alone and named in the
result (e.g. the ``admin`` account a first ``bookbot serve`` created); library tables are
the library's to move.  Values are carried over as stored: JSON kept as text on SQLite
becomes JSON on PostgreSQL, naive SQLite times are UTC, and id sequences continue after
the copied ids.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import DateTime, Integer, func, insert, select, text
from sqlalchemy.dialects import postgresql

from app.review import chainlit_tables, shared_tables  # noqa: F401  (their tables on the metadata)
from app.review.db import current, make_engine, safe_url
from app.review.models import metadata

SKIP = {t.name for t in (*shared_tables.CATALOG.__dict__.values(), shared_tables.app_meta)}


class CopyError(RuntimeError):
    pass


def _converter(column) -> Any:
    """How a value read from SQLite must change to be written to PostgreSQL (None: as it is)."""
    pg_type = column.type.dialect_impl(postgresql.dialect())
    if isinstance(pg_type, (postgresql.JSONB, postgresql.ARRAY)):
        return lambda v: json.loads(v) if isinstance(v, str) and v[:1] in "[{\"" else v
    if isinstance(column.type, DateTime) and column.type.timezone:
        return lambda v: v.replace(tzinfo=timezone.utc) if isinstance(v, datetime) and v.tzinfo is None else v
    return None


def copy_rows(source_url: str, target_url: str) -> tuple[dict[str, int], list[str]]:
    """(rows copied per table, tables left alone because the target already had rows)."""
    source, target = make_engine(source_url), make_engine(target_url)
    try:
        if current(source) != current(target):
            raise CopyError(f"{safe_url(source_url)} is at migration {current(source)}, {safe_url(target_url)} "
                            f"at {current(target)}: run `bookbot db upgrade` on both first")
        copied, kept = {}, []
        with source.connect() as src, target.begin() as dst:
            for table in metadata.sorted_tables:
                if table.name in SKIP:
                    continue
                if dst.scalar(select(func.count()).select_from(table)):
                    kept.append(table.name)
                    continue
                convert = {c.name: f for c in table.columns if (f := _converter(c)) is not None}
                rows = [{k: (convert[k](v) if k in convert else v) for k, v in r._mapping.items()}
                        for r in src.execute(select(table))]
                if rows:
                    dst.execute(insert(table), rows)
                copied[table.name] = len(rows)
                serial = [c for c in table.primary_key.columns if isinstance(c.type, Integer)]
                if rows and serial and target.dialect.name == "postgresql":
                    col = serial[0].name
                    dst.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', '{col}'), "
                                     f"(SELECT max({col}) FROM {table.name}))"))
        return copied, kept
    finally:
        source.dispose()
        target.dispose()
