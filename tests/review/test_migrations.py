"""Migrations on real SQLite and PostgreSQL: blank → head (schema checked) → base."""

from __future__ import annotations

import json

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.review import chainlit_tables, db, shared_tables  # noqa: F401  (its tables on the metadata)
from app.review.models import metadata

OURS = {"accounts", "conversations", "turns", "turn_steps", "candidates", "citations", "reviews",
        "review_history", "queue_skips", "tuning_snapshots", "sign_in_throttle", "library_books",
        "library_excerpts", "library_meta", "element_files", "app_meta"}
CHAINLIT_STEP_COLUMNS = {  # every column chainlit/data/sql_alchemy.py and Step/Message.to_dict use
    "id", "name", "type", "threadId", "parentId", "streaming", "waitForAnswer", "isError", "metadata",
    "tags", "input", "output", "createdAt", "command", "start", "end", "generation", "showInput",
    "language", "defaultOpen", "autoCollapse", "modes"}


def test_upgrade_blank_to_head_then_downgrade(blank_url: str) -> None:
    assert db.current(blank_url) is None
    assert db.upgrade(blank_url) == db.head()
    engine = db.make_engine(blank_url)
    try:
        insp = inspect(engine)
        tables = set(insp.get_table_names())
        assert OURS | set(chainlit_tables.CHAINLIT_TABLES) <= tables
        step_cols = {c["name"] for c in insp.get_columns("steps")}
        assert CHAINLIT_STEP_COLUMNS <= step_cols
        assert {c["name"] for c in insp.get_columns("threads")} == {
            "id", "createdAt", "name", "userId", "userIdentifier", "tags", "metadata"}
        assert {c["name"] for c in insp.get_columns("feedbacks")} == {"id", "forId", "threadId", "value", "comment"}
        account_cols = {c["name"]: c for c in insp.get_columns("accounts")}
        assert account_cols["token_version"]["nullable"] is False            # 0004: token versions
        assert {c["name"] for c in insp.get_columns("sign_in_throttle")} == {
            "key", "failures", "last_attempt_at", "blocked_until"}
        uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints("reviews")}
        assert ("step_id", "reviewer", "kind") in uniques
        with engine.connect() as conn:  # models and migrations describe the same schema
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == []
    finally:
        engine.dispose()
    assert db.upgrade(blank_url) == db.head()          # idempotent
    assert db.downgrade(blank_url, "base") is None
    engine = db.make_engine(blank_url)
    try:
        assert not (OURS & set(inspect(engine).get_table_names()))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_types_follow_chainlit_docs(pg_url: str) -> None:
    db.upgrade(pg_url)
    engine = db.make_engine(pg_url)
    try:
        cols = {c["name"]: c["type"].compile(dialect=engine.dialect) for c in inspect(engine).get_columns("threads")}
        assert cols["tags"] == "TEXT[]" and cols["metadata"] == "JSONB"
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_review_function_comes_and_goes_with_0007(pg_url: str) -> None:
    from sqlalchemy import text

    def has_function() -> bool:
        engine = db.make_engine(pg_url)
        try:
            with engine.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM pg_proc WHERE proname = 'bookbot_record_review'")
                                    ).scalar() == 1
        finally:
            engine.dispose()

    assert db.upgrade(pg_url, "0006") == "0006" and not has_function()
    assert db.upgrade(pg_url) == db.head() and has_function()
    assert db.downgrade(pg_url, "0006") == "0006" and not has_function()


def test_unreachable_database_gives_clear_error() -> None:
    with pytest.raises(db.StoreUnavailable, match="unavailable.*Nothing was stored"):
        db.upgrade("postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=2")


def test_async_url_for_chainlit() -> None:
    assert db.async_url("sqlite:////tmp/x.db") == "sqlite+aiosqlite:////tmp/x.db"
    assert db.async_url("postgresql://u:p@h:5432/d") == "postgresql+asyncpg://u:p@h:5432/d"
    assert db.async_url("postgresql+psycopg://h/d") == "postgresql+asyncpg://h/d"


def test_stepwise_upgrade_keeps_data(blank_url: str) -> None:
    """Upgrading a database that already holds rows, one revision at a time, keeps them."""
    from sqlalchemy import text

    assert db.upgrade(blank_url, "0002") == "0002"
    engine = db.make_engine(blank_url)
    try:
        with engine.begin() as conn:
            conn.execute(text('INSERT INTO threads ("id", "name") VALUES (\'t1\', \'old thread\')'))
            conn.execute(text('INSERT INTO elements ("id", "threadId", "name", "props") '
                              'VALUES (\'e1\', \'t1\', \'StepReview\', :p)'), {"p": '{"stepId": "s1"}'})
        assert db.upgrade(blank_url) == db.head()
        with engine.connect() as conn:
            props = conn.execute(text('SELECT "props" FROM elements WHERE "id" = \'e1\'')).scalar()
        assert isinstance(props, str) and json.loads(props) == {"stepId": "s1"}
        assert db.downgrade(blank_url, "0001") == "0001"
        assert db.upgrade(blank_url) == db.head()
    finally:
        engine.dispose()


def test_token_version_added_to_existing_accounts(blank_url: str) -> None:
    """0004 on a database with accounts: each keeps its row and starts at token version 0."""
    from sqlalchemy import text

    assert db.upgrade(blank_url, "0003") == "0003"
    engine = db.make_engine(blank_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO accounts (id, name, password_hash, role, created_at) "
                              "VALUES ('a1', 'ann', 'scrypt$1$1$1$x$y', 'editor', CURRENT_TIMESTAMP)"))
        assert db.upgrade(blank_url) == db.head()
        with engine.connect() as conn:
            row = conn.execute(text("SELECT name, role, token_version FROM accounts")).one()
        assert tuple(row) == ("ann", "editor", 0)
        assert db.downgrade(blank_url, "0003") == "0003"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM accounts")).scalar() == "ann"
        assert db.upgrade(blank_url) == db.head()
    finally:
        engine.dispose()
