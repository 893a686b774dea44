"""Tuning-test fixtures: a throw-away PostgreSQL database on the real server at 127.0.0.1:5432."""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


@pytest.fixture()
def pg_url() -> Iterator[str]:
    import psycopg

    try:
        with psycopg.connect(PG_DSN, connect_timeout=3, autocommit=True) as conn:
            name = f"bookbot_tuning_{uuid.uuid4().hex[:12]}"
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not answering on 127.0.0.1:5432 ({exc}); start it: "
                    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
