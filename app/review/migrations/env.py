"""Alembic environment for Bookbot: the engine comes from `app.review.db` (config.attributes),
never from an ini file, so every caller decides which database it migrates."""

from __future__ import annotations

from alembic import context

from app.review import chainlit_tables, shared_tables  # noqa: F401  (register their tables on the metadata)
from app.review.models import metadata

config = context.config


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from app.review.db import make_engine

        url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("no database given: call app.review.db.upgrade(url)")
        engine = make_engine(url)
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=connection.dialect.name == "sqlite",
                          compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; pass a database URL")
run_migrations_online()
