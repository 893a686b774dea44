"""Chainlit's thread history on our migrated schema, on SQLite and on the real PostgreSQL.

What a reopened thread needs: the thread listed for its user (thread tags
bind on SQLite too), its steps open (our controls only show in open steps),
element props back as objects (the StepReview control reads them).
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from app.review.db import upgrade


def _sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'bookbot.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield _sqlite_url(tmp_path)
        return
    yield request.getfixturevalue("pg_url")


async def _roundtrip(url: str) -> tuple[dict, list, bytes | None]:
    import chainlit as cl
    from chainlit.context import init_http_context
    from chainlit.types import Pagination, ThreadFilter

    from app.ui.datalayer import BookbotDataLayer

    layer = BookbotDataLayer(url)
    init_http_context(user=cl.User(identifier="ed"))
    user = await layer.create_user(cl.User(identifier="ed", metadata={"role": "editor"}))
    thread_id, step_id = str(uuid.uuid4()), str(uuid.uuid4())
    await layer.update_thread(thread_id, name="How did you know?", user_id=user.id,
                              metadata={"chat_profile": "Sherlock Holmes"}, tags=["Sherlock Holmes"])
    step = cl.Step(name="1 · Observe", type="tool", id=step_id, thread_id=thread_id, default_open=True)
    step.metadata = {"bookbot_open": True, "bookbot_step_id": "s-1"}
    step.output = "I observe."
    await layer.create_step(step.to_dict())
    element = cl.CustomElement(name="StepReview", props={"step_id": "s-1", "role": "editor"},
                               for_id=step_id, thread_id=thread_id, display="inline")
    element.mime = "application/json"
    await layer.create_element(element)
    thread = await layer.get_thread(thread_id)
    listed = await layer.list_threads(Pagination(first=10), ThreadFilter(userId=user.id))
    payload = await layer.storage_provider.read_file(thread["elements"][0]["objectKey"])
    await layer.engine.dispose()
    return thread, [t["id"] for t in listed.data], payload


def test_reopened_thread_has_tags_open_steps_and_element_props(db_url, tmp_path):
    upgrade(db_url)
    with ThreadPoolExecutor(1) as pool:
        thread, listed, payload = pool.submit(asyncio.run, _roundtrip(db_url)).result()
    assert thread is not None and listed == [thread["id"]]          # shows in the history sidebar
    assert thread["tags"] == ["Sherlock Holmes"]
    assert thread["metadata"]["chat_profile"] == "Sherlock Holmes"
    (step,) = thread["steps"]
    assert step["defaultOpen"] is True and step["metadata"]["bookbot_step_id"] == "s-1"
    (element,) = thread["elements"]
    assert element["props"] == {"step_id": "s-1", "role": "editor"}
    assert element["forId"] == step["id"]
    assert payload and b"s-1" in payload          # the payload is kept in the database (element_files)
    assert not (tmp_path / "data").exists()


async def _editor_layer(url: str) -> tuple[Any, Any, list[str]]:
    """A Bookbot data layer with the editor "ed" signed in, and the SQL statements it sends
    from now on (whitespace collapsed)."""
    import chainlit as cl
    from chainlit.context import init_http_context
    from sqlalchemy import event

    from app.ui.datalayer import BookbotDataLayer
    from app.ui.ownership import set_requester

    layer = BookbotDataLayer(url)
    init_http_context(user=cl.User(identifier="ed"))
    user = await layer.create_user(cl.User(identifier="ed", metadata={"role": "editor"}))
    set_requester("ed")
    seen: list[str] = []
    event.listen(layer.engine.sync_engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *rest: seen.append(" ".join(statement.split())))
    return layer, user, seen


async def _element_lookups(url: str) -> tuple[list[str], list[str], str]:
    """Element id look-ups for an element the server vouched for and one it did not; and what a
    reused id of the first thread's element gets in another thread."""
    import chainlit as cl

    from app.ui.ownership import AccessDenied

    layer, user, seen = await _editor_layer(url)

    async def element_write(thread_id: str, vouch: bool, element_id: str | None = None) -> tuple[list[str], str]:
        seen.clear()
        element = cl.CustomElement(name="StepReview", props={"step_id": "s-1"}, thread_id=thread_id, for_id="step-1",
                                   display="inline", **({"id": element_id} if element_id else {}))
        element.mime = "application/json"
        if vouch:
            layer.vouch_for_new_elements([element])
        await layer.create_element(element)
        return [s for s in seen if 'FROM elements WHERE' in s], element.id

    threads = [str(uuid.uuid4()), str(uuid.uuid4())]
    for thread_id in threads:
        await layer.update_thread(thread_id, name="q", user_id=user.id)
    vouched, first_id = await element_write(threads[0], vouch=True)
    unvouched, _ = await element_write(threads[0], vouch=False)
    layer.element_threads.forget(first_id)
    try:
        await element_write(threads[1], vouch=False, element_id=first_id)
        reused = "stored"
    except AccessDenied as exc:
        reused = str(exc)
    await layer.engine.dispose()
    return vouched, unvouched, reused


def test_elements_the_server_made_are_written_without_an_id_lookup(db_url):
    upgrade(db_url)
    with ThreadPoolExecutor(1) as pool:
        vouched, unvouched, reused = pool.submit(asyncio.run, _element_lookups(db_url)).result()
    assert vouched == []                   # a fresh element of the server's own turn: no round trip
    assert len(unvouched) == 1             # an element id from anywhere else is checked
    assert "belongs to another conversation" in reused


async def _step_write_statements(url: str) -> tuple[list[str], list[str], str]:
    """The statements of a step write into a thread the layer knows (its owner seen), of the first
    step of a thread nobody created yet, and what that first write stored."""
    layer, user, seen = await _editor_layer(url)
    known, fresh = str(uuid.uuid4()), str(uuid.uuid4())
    await layer.update_thread(known, name="q", user_id=user.id)
    await layer.thread_owner(known)
    step = {"id": str(uuid.uuid4()), "threadId": known, "name": "Observe", "type": "tool", "output": "x"}
    seen.clear()
    await layer.create_step(step)
    known_statements = list(seen)
    seen.clear()
    await layer.create_step({**step, "id": str(uuid.uuid4()), "threadId": fresh})
    fresh_statements = list(seen)
    rows = await layer.execute_sql('SELECT "id" FROM threads WHERE "id" = :id', {"id": fresh})
    await layer.engine.dispose()
    return known_statements, fresh_statements, "stored" if rows else "missing"


def test_a_step_of_a_known_thread_is_written_without_a_thread_lookup(db_url):
    """Chainlit's layer reads the thread before every step write (one more transaction per streamed
    step); a thread whose owner the layer has seen exists, so only the step itself is written."""
    upgrade(db_url)
    with ThreadPoolExecutor(1) as pool:
        known, fresh, stored = pool.submit(asyncio.run, _step_write_statements(db_url)).result()
    assert [s for s in known if "threads" in s] == []
    assert any(s.startswith("INSERT INTO steps") for s in known)
    assert any("FROM threads" in s for s in fresh) and stored == "stored"   # a new thread is still created
