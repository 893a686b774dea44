"""Chainlit 2.12's data-layer tables, created by our Alembic migrations, and the one engine
hook Chainlit's `SQLAlchemyDataLayer` needs on SQLite.

Chainlit's `chainlit.data.sql_alchemy.SQLAlchemyDataLayer` creates no tables; it reads and
writes these five with hand-written SQL, so the names must match exactly (double-quoted
camelCase columns; SQLAlchemy quotes them for us):

``users``      "id" PK, "identifier" UNIQUE NOT NULL, "metadata" NOT NULL, "createdAt"
``threads``    "id" PK, "createdAt", "name", "userId" -> users.id, "userIdentifier",
               "tags", "metadata"
``steps``      "id" PK, "name" NOT NULL, "type" NOT NULL, "threadId" NOT NULL -> threads.id,
               "parentId", "streaming" NOT NULL, "waitForAnswer", "isError", "metadata",
               "tags", "input", "output", "createdAt", "command", "start", "end",
               "generation", "showInput", "language", "indent", "defaultOpen",
               "autoCollapse", "modes"
``elements``   "id" PK, "threadId" -> threads.id, "type", "url", "chainlitKey", "name" NOT
               NULL, "display", "objectKey", "size", "page", "language", "forId", "mime",
               "props", "autoPlay", "playerConfig"
``feedbacks``  "id" PK, "forId" NOT NULL, "threadId" NOT NULL -> threads.id, "value" NOT
               NULL, "comment"

All ids are TEXT (Chainlit sends uuid strings).  JSON-ish columns ("metadata",
"generation", "modes", "playerConfig") are JSONB on PostgreSQL and TEXT on SQLite (Chainlit
json.dumps them itself; read back, JSONB gives dicts and TEXT gives strings, so readers
must accept both); elements."props" is TEXT on both, because Chainlit's get_element
json.loads it (migration 0003).  "tags" is TEXT[] on PostgreSQL and JSON text on SQLite.
Deleting a thread cascades to its steps, elements and feedbacks.

These tables are Chainlit's alone: Bookbot's own users are `accounts` and its reasoning
steps are `turn_steps` (see `app.review.models`).  The UI links them by name: a Chainlit
user's "identifier" is the account name, a turn's conversation id is the thread id.

SQLite: Chainlit binds a Python list for "tags", which sqlite3 refuses (Chainlit only logs
the error and the thread never shows in the history).  Call
``prepare_chainlit_engine(data_layer.engine)`` once after building the data layer: it turns
list and dict parameters into JSON text on SQLite engines (no-op elsewhere).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Boolean, Column, ForeignKey, Integer, Table, Text, event
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from app.review.models import metadata

JsonText = Text().with_variant(JSONB(), "postgresql")
TagList = Text().with_variant(ARRAY(Text()), "postgresql")

users = Table(
    "users", metadata,
    Column("id", Text, primary_key=True),
    Column("identifier", Text, nullable=False, unique=True),
    Column("metadata", JsonText, nullable=False),
    Column("createdAt", Text),
)

threads = Table(
    "threads", metadata,
    Column("id", Text, primary_key=True),
    Column("createdAt", Text),
    Column("name", Text),
    Column("userId", Text, ForeignKey("users.id", ondelete="CASCADE")),
    Column("userIdentifier", Text),
    Column("tags", TagList),
    Column("metadata", JsonText),
)

steps = Table(
    "steps", metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("threadId", Text, ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("parentId", Text),
    Column("streaming", Boolean, nullable=False),
    Column("waitForAnswer", Boolean),
    Column("isError", Boolean),
    Column("metadata", JsonText),
    Column("tags", TagList),
    Column("input", Text),
    Column("output", Text),
    Column("createdAt", Text),
    Column("command", Text),
    Column("start", Text),
    Column("end", Text),
    Column("generation", JsonText),
    Column("showInput", Text),
    Column("language", Text),
    Column("indent", Integer),
    Column("defaultOpen", Boolean),
    Column("autoCollapse", Boolean),
    Column("modes", JsonText),
)

elements = Table(
    "elements", metadata,
    Column("id", Text, primary_key=True),
    Column("threadId", Text, ForeignKey("threads.id", ondelete="CASCADE")),
    Column("type", Text),
    Column("url", Text),
    Column("chainlitKey", Text),
    Column("name", Text, nullable=False),
    Column("display", Text),
    Column("objectKey", Text),
    Column("size", Text),
    Column("page", Integer),
    Column("language", Text),
    Column("forId", Text),
    Column("mime", Text),
    Column("props", Text),            # TEXT everywhere: Chainlit's get_element json.loads it
    Column("autoPlay", Boolean),
    Column("playerConfig", JsonText),
)

feedbacks = Table(
    "feedbacks", metadata,
    Column("id", Text, primary_key=True),
    Column("forId", Text, nullable=False),
    Column("threadId", Text, ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("value", Integer, nullable=False),
    Column("comment", Text),
)

CHAINLIT_TABLES = ("users", "threads", "steps", "elements", "feedbacks")


def _jsonify(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _json_params(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
    if executemany:
        parameters = [type(p)(_jsonify(v) for v in p) if isinstance(p, (tuple, list))
                      else {k: _jsonify(v) for k, v in p.items()} for p in parameters]
    elif isinstance(parameters, (tuple, list)):
        parameters = type(parameters)(_jsonify(v) for v in parameters)
    elif isinstance(parameters, dict):
        parameters = {k: _jsonify(v) for k, v in parameters.items()}
    return statement, parameters


def prepare_chainlit_engine(engine: Any) -> None:
    """Make an (async or sync) SQLite engine store list/dict parameters as JSON text.

    Pass ``SQLAlchemyDataLayer(...).engine``.  Does nothing for other databases, and
    registering twice is harmless.
    """
    sync_engine = getattr(engine, "sync_engine", engine)
    if sync_engine.dialect.name != "sqlite":
        return
    if not event.contains(sync_engine, "before_cursor_execute", _json_params):
        event.listen(sync_engine, "before_cursor_execute", _json_params, retval=True)
