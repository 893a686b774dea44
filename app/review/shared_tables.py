"""Tables that make the database the home of state every app instance shares.

Registered on the review metadata (so the Alembic comparison test sees them), created by
migration 0005: the library catalog (``library_books``, ``library_excerpts``,
``library_meta``; the library area owns their shape, ``app.library.catalog``), Chainlit
element payloads (``element_files``, written by the UI's storage client instead of files),
and ``app_meta`` (small shared values such as the session-signing secret when no
``BOOKBOT_AUTH_SECRET`` is set).  ``shared_value(engine, key, make)`` reads one, creating
it once for everybody.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from sqlalchemy import Column, DateTime, Engine, LargeBinary, String, Table, Text, insert, select
from sqlalchemy.exc import IntegrityError

from app.library.catalog import define_tables
from app.review.models import metadata

CATALOG = define_tables(metadata, "library_")

element_files = Table(
    "element_files", metadata,
    Column("object_key", String(500), primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("mime", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

app_meta = Table(
    "app_meta", metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)


def shared_value(engine: Engine, key: str, make: Callable[[], str]) -> str:
    """``app_meta[key]``; the first caller stores ``make()`` and every later one reads it."""
    with engine.connect() as conn:
        value = conn.scalar(select(app_meta.c.value).where(app_meta.c.key == key))
    if value is not None:
        return value
    try:
        with engine.begin() as conn:
            conn.execute(insert(app_meta).values(key=key, value=make()))
    except IntegrityError:      # another instance stored it first
        pass
    with engine.connect() as conn:
        return conn.scalar(select(app_meta.c.value).where(app_meta.c.key == key))


def import_element_files(engine: Engine, folder: Path) -> int:
    """Copy element payload files kept under ``folder`` (before migration 0005) into ``element_files``;
    object keys are the paths relative to the folder.  Keys already stored are left alone."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    with engine.connect() as conn:
        known = set(conn.scalars(select(element_files.c.object_key)))
    rows = [{"object_key": key, "data": path.read_bytes(), "mime": "application/octet-stream",
             "updated_at": datetime.now(timezone.utc)}
            for path in sorted(folder.rglob("*")) if path.is_file()
            for key in [path.relative_to(folder).as_posix()] if key not in known]
    if rows:
        with engine.begin() as conn:
            conn.execute(insert(element_files), rows)
    return len(rows)
