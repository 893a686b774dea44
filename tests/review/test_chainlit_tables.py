"""Chainlit 2.12's own SQLAlchemyDataLayer against our migrated schema (SQLite and PostgreSQL):
users, threads with tags, steps with defaultOpen/autoCollapse/command, feedbacks, history."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text

from app.review import db
from app.review.chainlit_tables import prepare_chainlit_engine


async def _exercise(url: str) -> dict:
    from chainlit.context import ChainlitContext, context_var
    from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
    from chainlit.session import HTTPSession
    from chainlit.types import Feedback, Pagination, ThreadFilter
    from chainlit.user import User

    from chainlit.data.storage_clients.base import BaseStorageClient
    from chainlit.element import CustomElement

    class MemoryStorage(BaseStorageClient):
        def __init__(self) -> None:
            self.files: dict[str, bytes] = {}

        async def upload_file(self, object_key, data, mime="application/octet-stream", overwrite=True,  # noqa: ANN001
                              content_disposition=None):  # noqa: ANN001
            self.files[object_key] = data if isinstance(data, bytes) else data.encode()
            return {"object_key": object_key, "url": None}

        async def delete_file(self, object_key: str) -> bool:
            return self.files.pop(object_key, None) is not None

        async def get_read_url(self, object_key: str) -> str:
            return ""

        async def close(self) -> None:
            return None

    context_var.set(ChainlitContext(HTTPSession(id=str(uuid.uuid4()), thread_id=str(uuid.uuid4()), client_type="webapp")))
    layer = SQLAlchemyDataLayer(conninfo=db.async_url(url), storage_provider=MemoryStorage())
    prepare_chainlit_engine(layer.engine)
    try:
        user = await layer.create_user(User(identifier="edith", metadata={"role": "editor"}))
        assert user is not None and user.identifier == "edith"
        thread_id = str(uuid.uuid4())
        await layer.update_thread(thread_id, name="Who stole the letter?", user_id=user.id,
                                  metadata={"character": "holmes"}, tags=["holmes", "desk"])
        step_id = str(uuid.uuid4())
        await layer.create_step({
            "id": step_id, "threadId": thread_id, "name": "Observe", "type": "tool", "parentId": None,
            "streaming": False, "metadata": {"bookbot_step": "s1"}, "tags": ["step"], "input": "q",
            "output": "The letter was hidden in plain sight.", "createdAt": "2026-11-28T09:00:00Z",
            "start": "2026-11-28T09:00:00Z", "end": "2026-11-28T09:00:01Z", "showInput": False,
            "defaultOpen": True, "autoCollapse": False, "command": "ask", "language": None,
            "isError": False, "waitForAnswer": False})
        element = CustomElement(name="StepReview", props={"stepId": "s1", "rating": None}, for_id=step_id,
                                thread_id=thread_id, display="inline")
        await layer.create_element(element)
        stored_element = await layer.get_element(thread_id, element.id)
        fid = await layer.upsert_feedback(Feedback(forId=step_id, threadId=thread_id, value=1, comment="good"))
        assert await layer.get_thread_author(thread_id) == "edith"
        threads = await layer.list_threads(Pagination(first=10), ThreadFilter(userId=user.id))
        thread = await layer.get_thread(thread_id)
        async with layer.engine.connect() as conn:
            row = (await conn.execute(text('SELECT "defaultOpen", "autoCollapse", "command" FROM steps'))).one()
        await layer.delete_thread(thread_id)
        async with layer.engine.connect() as conn:
            left = (await conn.execute(text("SELECT count(*) FROM steps"))).scalar()
        return {"threads": [t["id"] for t in threads.data], "thread": thread, "row": tuple(row),
                "element": stored_element,
                "feedback": fid, "left": left}
    finally:
        await layer.close()


def test_chainlit_data_layer_round_trip(store_url: str) -> None:
    got = asyncio.run(_exercise(store_url))
    thread = got["thread"]
    assert got["threads"] == [thread["id"]]                       # shows in the history list
    assert thread["name"] == "Who stole the letter?"
    tags = thread["tags"]
    assert tags == ["holmes", "desk"] or tags == '["holmes", "desk"]'   # TEXT[] on PG, JSON text on SQLite
    (step,) = thread["steps"]
    assert step["output"] == "The letter was hidden in plain sight."
    assert step["feedback"]["value"] == 1 and step["feedback"]["comment"] == "good"
    assert tuple(bool(v) if not isinstance(v, str) else v for v in got["row"]) == (True, False, "ask")
    assert got["left"] == 0
    element = got["element"]
    assert element["name"] == "StepReview" and element["type"] == "custom" and element["forId"]
    assert element["props"] == {"stepId": "s1", "rating": None}
    (listed,) = thread["elements"]
    assert listed["id"] == element["id"] and listed["display"] == "inline"
