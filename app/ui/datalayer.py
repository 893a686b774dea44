"""Chainlit thread history on Bookbot's own database.

Owns: building Chainlit's data layer on the async twin of
``settings.resolved_database_url`` (sqlite+aiosqlite / postgresql+asyncpg), a
storage client that keeps element payloads in the database (Chainlit's
SQLAlchemy layer silently drops every element without one; in the database
every instance on a shared PostgreSQL sees them), and ``BookbotDataLayer``, which checks ownership on every thread, step, element
and feedback read or write (``ownership``: the thread's user must be the
signed-in user; a refused read shows nothing, a refused write raises
``AccessDenied`` and stores nothing), keeps refused reader messages only in
short form and scrubs what it stores (``inputs``), and fixes what Chainlit's
SQLAlchemy layer gets wrong on our schema: thread tags on SQLite (a Python list
does not bind; the review area's ``prepare_chainlit_engine`` hook fixes it), JSON columns read back as strings on SQLite (element props,
step metadata), writes of one step landing out of order (a finished step
saved blank), one thread read before every step write (skipped for a thread whose owner it
has seen), steps losing ``defaultOpen`` when a thread is reopened
(our step controls only show in open steps), and review controls showing the
state they had when last saved instead of the reviews stored now.  The tables themselves come from
the review area's Alembic migrations.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Optional, Union

from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
from chainlit.data.storage_clients.base import BaseStorageClient

from app.ui import inputs
from app.ui.ownership import NOT_YOURS, AccessDenied, OwnershipChecks, Remembered, requester


class DatabaseStorageClient(BaseStorageClient):
    """Keeps element payloads in the database's ``element_files`` table (migration 0005).

    Every instance on a shared database sees every element; our elements are custom
    elements whose content lives in their props, so no URL is needed to show them again.
    """

    def __init__(self, engine: Callable[[], Any]):
        self._engine = engine       # the data layer's async engine, once it exists

    async def upload_file(self, object_key: str, data: Union[bytes, str],
                          mime: str = "application/octet-stream", overwrite: bool = True,
                          content_disposition: str | None = None) -> Dict[str, Any]:
        from sqlalchemy import delete, insert, select

        from app.review.shared_tables import element_files as t

        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        async with self._engine().begin() as conn:
            if not overwrite and await conn.scalar(select(t.c.object_key).where(t.c.object_key == object_key)):
                return {"object_key": object_key, "url": None}
            await conn.execute(delete(t).where(t.c.object_key == object_key))
            await conn.execute(insert(t).values(object_key=object_key, data=payload, mime=mime or "",
                                                updated_at=datetime.now(timezone.utc)))
        return {"object_key": object_key, "url": None}

    async def delete_file(self, object_key: str) -> bool:
        from sqlalchemy import delete

        from app.review.shared_tables import element_files as t

        async with self._engine().begin() as conn:
            return (await conn.execute(delete(t).where(t.c.object_key == object_key))).rowcount > 0

    async def read_file(self, object_key: str) -> bytes | None:
        from sqlalchemy import select

        from app.review.shared_tables import element_files as t

        async with self._engine().connect() as conn:
            return await conn.scalar(select(t.c.data).where(t.c.object_key == object_key))

    async def get_read_url(self, object_key: str) -> str:
        return ""

    async def close(self) -> None:
        return None


def _json_value(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


ControlProps = Callable[[str, dict], dict]   # (thread author, stored props) -> props as of now


class BookbotDataLayer(OwnershipChecks, SQLAlchemyDataLayer):
    """``control_props`` (optional) re-derives the review controls' props from the review store
    whenever a thread is read, so a reopened thread shows the reviews as they are now."""

    def __init__(self, sync_url: str, control_props: ControlProps | None = None):
        self.control_props = control_props
        self._locks: dict[str, asyncio.Lock] = {}
        self.thread_owners, self.element_threads = Remembered(), Remembered()
        from app.review.db import async_url

        conninfo = async_url(sync_url)
        self.is_sqlite = conninfo.startswith("sqlite")
        connect_args = ({"timeout": 30} if self.is_sqlite
                        else {"server_settings": {"application_name": "bookbot-chainlit"}})
        super().__init__(conninfo=conninfo, connect_args=connect_args,
                         storage_provider=DatabaseStorageClient(lambda: self.engine))
        if not self.is_sqlite:   # Chainlit takes no pool settings: same cap, kept open (db.POOL_SIZE)
            from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
            from sqlalchemy.orm import sessionmaker

            from app.review.db import POOL_SIZE

            self.engine = create_async_engine(conninfo, connect_args=connect_args, pool_size=POOL_SIZE,
                                              max_overflow=0)
            self.async_session = sessionmaker(bind=self.engine, expire_on_commit=False, class_=AsyncSession)
        from app.review.chainlit_tables import prepare_chainlit_engine

        prepare_chainlit_engine(self.engine)  # list/dict parameters (thread tags) as JSON on SQLite

    # Chainlit persists in fire-and-forget tasks: a step's first write (empty output, from
    # send()) can land after its final one (from update()) and blank it.  Tasks start in the
    # order they were created, so a fair lock per thread keeps the writes in that order.
    def _lock(self, thread_id: Optional[str]) -> asyncio.Lock:
        if len(self._locks) > 10_000:
            self._locks = {k: v for k, v in self._locks.items() if v.locked()}
        return self._locks.setdefault(thread_id or "", asyncio.Lock())

    async def create_step(self, step_dict):  # update_step goes through here too
        await self.check_thread_write(requester(), step_dict.get("threadId"))
        step_dict = _stored_step(step_dict)
        async with self._lock(step_dict.get("threadId")):
            return await super().create_step(step_dict)

    async def delete_step(self, step_id: str):
        await self.check_step_write(requester(), step_id)
        return await super().delete_step(step_id)

    async def create_element(self, element):
        await self.check_element_write(requester(), getattr(element, "id", None),
                                       getattr(element, "thread_id", None), getattr(element, "props", None))
        content = getattr(element, "content", None)
        if isinstance(content, (str, bytes)) and len(content) > 4 * 65536:
            raise AccessDenied("element refused: its content is too large", 413)
        async with self._lock(getattr(element, "thread_id", None)):
            stored = await super().create_element(element)
        element_id, thread_id = getattr(element, "id", None), getattr(element, "thread_id", None)
        if isinstance(element_id, str) and isinstance(thread_id, str):
            self.element_threads.keep(element_id, thread_id)
        return stored

    async def delete_element(self, element_id: str, thread_id: Optional[str] = None):
        await self.check_element_delete(requester(), element_id)
        self.element_threads.forget(element_id)
        return await super().delete_element(element_id, thread_id)

    async def get_element(self, thread_id: str, element_id: str):
        if not await self.check_thread_read(requester(), thread_id):
            return None
        return await super().get_element(thread_id, element_id)

    async def upsert_feedback(self, feedback):
        await self.check_feedback_write(requester(), feedback.forId, feedback.id, feedback.value, feedback.comment)
        if isinstance(feedback.comment, str):
            feedback.comment = inputs.scrub(feedback.comment)
        step = await self._one('SELECT "threadId" FROM steps WHERE "id" = :id', id=feedback.forId)
        if step is not None:      # the step's own thread, whatever the client said (it may send none)
            feedback.threadId = step.get("threadId")
        return await super().upsert_feedback(feedback)

    async def delete_feedback(self, feedback_id: str) -> bool:
        await self.check_feedback_delete(requester(), feedback_id)
        return await super().delete_feedback(feedback_id)

    async def update_thread(self, thread_id: str, name: Optional[str] = None, user_id: Optional[str] = None,
                            metadata: Optional[Dict] = None, tags: Optional[list] = None):
        who = requester()
        await self.check_thread_write(who, thread_id)
        if name is None and user_id is None and metadata is None and tags is None \
                and self.thread_owners.get(thread_id) is not None:
            return None     # "make sure it exists" (every step write asks): its owner is known, so it does
        if user_id is not None and who is not None:
            owner = await self._one('SELECT "identifier" FROM users WHERE "id" = :id', id=user_id)
            if owner is None or owner.get("identifier") != who:
                raise AccessDenied("refused: a conversation can only be given to its own user")
        return await super().update_thread(thread_id, name=inputs.thread_name(name), user_id=user_id,
                                           metadata=metadata, tags=tags)

    async def delete_thread(self, thread_id: str):
        who = requester()
        if who is not None and not await self.check_thread_read(who, thread_id):
            raise AccessDenied("refused: that conversation belongs to another user")
        self.thread_owners.forget(thread_id)
        return await super().delete_thread(thread_id)

    async def get_thread_author(self, thread_id: str) -> str:
        """"" for a thread that does not exist (Chainlit then answers 404; its own raises → 500)."""
        _, owner = await self.thread_owner(thread_id)
        return owner or ""

    async def get_thread(self, thread_id: str):
        """Another user's thread comes back as an empty shell whose owner matches nobody, so that
        Chainlit's own author checks (socket connect, resume, shared view) refuse it."""
        who = requester()
        if who is not None and not await self.check_thread_read(who, thread_id):
            exists, _ = await self.thread_owner(thread_id)
            if not exists:
                return None
            return {"id": thread_id, "createdAt": "", "name": None, "userId": None,
                    "userIdentifier": NOT_YOURS, "tags": [], "metadata": {}, "steps": [], "elements": []}
        return await super().get_thread(thread_id)

    async def list_threads(self, pagination, filters):
        who = requester()
        if who is not None:
            user = await self.get_user(who) if who else None
            if user is None or filters.userId != user.id:
                raise AccessDenied("refused: you can only list your own conversations")
        return await super().list_threads(pagination, filters)

    async def get_all_user_threads(self, user_id: Optional[str] = None,
                                   thread_id: Optional[str] = None):
        threads = await super().get_all_user_threads(user_id=user_id, thread_id=thread_id)
        for thread in threads or []:
            tags = _json_value(thread.get("tags"))
            thread["tags"] = tags if isinstance(tags, list) else ([tags] if tags else [])
            thread["metadata"] = _json_value(thread.get("metadata")) or {}
            for step in thread.get("steps", []):
                meta = _json_value(step.get("metadata"))
                step["metadata"] = meta if isinstance(meta, dict) else {}
                step["generation"] = _json_value(step.get("generation"))
                if step["metadata"].get("bookbot_open"):
                    step["defaultOpen"] = True  # type: ignore[typeddict-unknown-key]
            for element in thread.get("elements", []):
                props = _json_value(element.get("props"))
                element["props"] = props if isinstance(props, dict) else {}
                if self.control_props and element.get("name") == "StepReview" and thread.get("userIdentifier"):
                    element["props"] = await asyncio.to_thread(self.control_props, thread["userIdentifier"],
                                                               element["props"])
        return threads


def _stored_step(step_dict: dict) -> dict:
    """A reader's message as the history keeps it (a refused one in short form); text scrubbed."""
    step = dict(step_dict)
    if step.get("type") == "user_message":
        step["output"] = inputs.stored_form(step.get("output"))
    elif step.get("type") == "run" and step.get("name") == "on_message" and isinstance(step.get("input"), str):
        step["input"] = inputs.stored_form(step["input"])      # Chainlit's on_message step repeats it
    for key in ("output", "input", "name"):
        if isinstance(step.get(key), str) and inputs.lone_surrogate(step[key]) is not None:
            step[key] = inputs.scrub(step[key])
    return step
