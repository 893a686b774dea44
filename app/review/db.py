"""Database URLs, engines and Alembic migrations for the review store (and Chainlit's tables).

`upgrade(url)` brings any database (SQLite file or PostgreSQL) to the newest schema;
`current(url)` tells which revision it is at; `downgrade(url, revision)` goes back.  The
URL is handed to Alembic programmatically (no alembic.ini), so the same code serves the
CLI, the app on start and the tests.  `StoreUnavailable` is the one error callers see when
the database cannot be reached.  A PostgreSQL engine's pool checks at checkout, without a
round trip, that the server has not closed the connection (after a restart it opens a new one).
"""

from __future__ import annotations

import select
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class StoreUnavailable(RuntimeError):
    """The database could not be reached or went away; nothing was stored."""


def normalize_url(url: str) -> str:
    """Plain ``postgresql://`` URLs use psycopg 3 (the driver installed with Bookbot)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def async_url(url: str) -> str:
    """The asyncio twin of a URL, for Chainlit's SQLAlchemyDataLayer (aiosqlite / asyncpg)."""
    parsed = make_url(normalize_url(url))
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def safe_url(url: str) -> str:
    try:
        return make_url(normalize_url(url)).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only used inside error messages
        return "<unparseable database URL>"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None           # SQLAlchemy's "begin" event issues BEGIN IMMEDIATE
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")      # readers don't block the writer
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    # Take the write lock when the transaction starts: a transaction that reads and then
    # writes would otherwise fail at once with "database is locked" when another writer
    # committed in between (the busy timeout cannot help there).  WAL keeps readers free.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


# PostgreSQL pools keep the connections they open (up to POOL_SIZE, none beyond): SQLAlchemy's
# default (5 kept + 10 overflow) closes an overflow connection as soon as it is returned, so a
# busy server opened and closed PostgreSQL backends several times a second (measured in the
# 40-chat load run) — each a fork, an authentication and a cold catalog cache.  The same cap.
POOL_SIZE = 15


def make_engine(url: str, *, application_name: str = "bookbot", **kwargs: Any) -> Engine:
    """A synchronous engine; SQLite gets WAL + foreign keys, its parent folder is created.
    PostgreSQL connections carry `application_name` (seen in ``pg_stat_activity``) unless the
    URL names one, and the pool keeps up to POOL_SIZE of them open."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            parent = Path(parsed.database).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(f"cannot create the folder for the database {parent}: {exc} — "
                                       "set BOOKBOT_DATA_DIR (or BOOKBOT_DATABASE_URL) to a writable "
                                       "place. Nothing was stored.") from exc
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    kwargs.setdefault("pool_size", POOL_SIZE)
    kwargs.setdefault("max_overflow", 0)
    if "application_name" not in parsed.query:
        kwargs["connect_args"] = {"application_name": application_name, **kwargs.get("connect_args", {})}
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        event.listen(engine, "checkout", _drop_if_closed_by_server)
    return engine


def _drop_if_closed_by_server(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """Lend no connection the server has closed (DisconnectionError: SQLAlchemy's documented way
    for a checkout listener to refuse a connection; the pool then opens a fresh one)."""
    if closed_by_server(dbapi_conn):
        raise DisconnectionError("the database closed this idle connection")


def closed_by_server(dbapi_conn: Any) -> bool:
    """True when an idle psycopg connection can no longer be used (restart, failover, idle
    timeout, terminated backend), found without a round trip: an idle PostgreSQL connection
    has nothing to read, while a server that ends a session sends its error and closes the
    socket — both make the socket readable."""
    if dbapi_conn.closed or getattr(dbapi_conn, "broken", False):
        return True
    fd = dbapi_conn.fileno()
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


@contextmanager
def unavailable_as_error(url: str | URL) -> Iterator[None]:
    """Turn connection failures into StoreUnavailable with an actionable message (the URL is
    rendered only then: the review write path calls this on every write)."""
    try:
        yield
    except OperationalError as exc:
        raise StoreUnavailable(_explain(str(url), exc)) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable(_explain(str(url), exc)) from exc
        raise


def _explain(url: str, exc: Exception) -> str:
    detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
    hint = ("is PostgreSQL running? (pg_ctlcluster ... main start) and does BOOKBOT_DATABASE_URL "
            "name the right host/database?" if "postgresql" in url else
            "is the data dir writable and the disk not full? (BOOKBOT_DATA_DIR / BOOKBOT_DATABASE_URL)")
    return f"database {safe_url(url)} is unavailable: {detail} — {hint}. Nothing was stored."


def _alembic_config(engine: Engine):  # noqa: ANN202
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def _with_engine(url_or_engine: str | Engine) -> tuple[Engine, bool]:
    if isinstance(url_or_engine, Engine):
        return url_or_engine, False
    return make_engine(url_or_engine), True


def _migrate(direction: str, url_or_engine: str | Engine, revision: str) -> str | None:
    from alembic import command

    engine, owned = _with_engine(url_or_engine)
    try:
        with unavailable_as_error(str(engine.url)):
            getattr(command, direction)(_alembic_config(engine), revision)
            return current(engine)
    finally:
        if owned:
            engine.dispose()


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> str | None:
    """Run the migrations up to `revision`; returns the revision the database is at."""
    return _migrate("upgrade", url_or_engine, revision)


def downgrade(url_or_engine: str | Engine, revision: str) -> str | None:
    """Undo migrations down to `revision` ("base" drops every table)."""
    return _migrate("downgrade", url_or_engine, revision)


def current(url_or_engine: str | Engine) -> str | None:
    """The revision the database is at (None for a blank database)."""
    from alembic.runtime.migration import MigrationContext

    engine, owned = _with_engine(url_or_engine)
    try:
        with unavailable_as_error(str(engine.url)), engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        if owned:
            engine.dispose()


def head() -> str:
    """The newest revision shipped with this code."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    heads = ScriptDirectory.from_config(cfg).get_heads()
    return heads[0]
