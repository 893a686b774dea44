"""The access rules below the server, on SQLite and the real PostgreSQL: the data layer's
ownership checks, throttled sign-in with argon2id rehashing and token versions, input
normalisation.  (test_security.py replays the same attacks through the running server.)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text, update

from app.review.db import upgrade


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bookbot.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    upgrade(url)
    return url


def _rows(url: str) -> dict[str, list]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {t: sorted(map(tuple, conn.execute(text(f"SELECT * FROM {t}")).all()))
                    for t in ("threads", "steps", "elements", "feedbacks")}
    finally:
        engine.dispose()


async def _ownership(url: str) -> dict:
    import chainlit as cl
    from chainlit.types import Feedback, Pagination, ThreadFilter

    from app.ui.datalayer import BookbotDataLayer
    from app.ui.ownership import NOT_YOURS, AccessDenied, reset_requester, set_requester

    from chainlit.context import init_http_context

    layer = BookbotDataLayer(url)
    init_http_context(user=cl.User(identifier="ed"))
    ed = await layer.create_user(cl.User(identifier="ed"))
    rita = await layer.create_user(cl.User(identifier="rita"))
    thread_id, step_id = str(uuid.uuid4()), str(uuid.uuid4())
    token = set_requester("ed")                                   # ed's own request
    try:
        await layer.update_thread(thread_id, name="ed's thread", user_id=ed.id)
        step = cl.Step(name="1 · Observe", type="tool", id=step_id, thread_id=thread_id)
        step.output = "I observe."
        await layer.create_step(step.to_dict())
        element = cl.CustomElement(name="StepReview", props={"step_id": "s-1"}, for_id=step_id,
                                   thread_id=thread_id, display="inline")
        await layer.create_element(element)
        feedback_id = await layer.upsert_feedback(Feedback(forId=step_id, value=1, comment="ok"))
    finally:
        reset_requester(token)
    before = await asyncio.to_thread(_rows, url)
    refused: dict[str, str] = {}
    token = set_requester("rita")
    try:
        forged = cl.CustomElement(id=element.id, name="StepReview", props={"step_id": "FORGED"},
                                  for_id=step_id, thread_id=thread_id, display="inline")
        attempts = {
            "create_element": layer.create_element(forged),
            "delete_element": layer.delete_element(element.id, thread_id),
            "upsert_feedback": layer.upsert_feedback(Feedback(forId=step_id, id=feedback_id, value=0)),
            "delete_feedback": layer.delete_feedback(feedback_id),
            "create_step": layer.create_step({**step.to_dict(), "output": "forged"}),
            "delete_step": layer.delete_step(step_id),
            "update_thread": layer.update_thread(thread_id, name="forged"),
            "take_thread": layer.update_thread(str(uuid.uuid4()), user_id=ed.id),
            "delete_thread": layer.delete_thread(thread_id),
            "list_eds": layer.list_threads(Pagination(first=10), ThreadFilter(userId=ed.id)),
        }
        for key, call in attempts.items():
            try:
                await call
                refused[key] = "allowed"
            except AccessDenied as exc:
                refused[key] = str(exc)
        shell = await layer.get_thread(thread_id)
        got_element = await layer.get_element(thread_id, element.id)
        own = await layer.list_threads(Pagination(first=10), ThreadFilter(userId=rita.id))
    finally:
        reset_requester(token)
    after = await asyncio.to_thread(_rows, url)
    big = None
    token = set_requester("ed")
    try:
        await layer.create_element(cl.CustomElement(name="Big", props={"x": "y" * 70_000}, for_id=step_id,
                                                    thread_id=thread_id, display="inline"))
    except AccessDenied as exc:
        big = (exc.status, str(exc))
    finally:
        reset_requester(token)
    await layer.engine.dispose()
    return {"refused": refused, "unchanged": before == after, "shell": shell, "element": got_element,
            "own": own.data, "big": big, "not_yours": NOT_YOURS}


def test_data_layer_refuses_other_users_items(db_url, tmp_path):
    with ThreadPoolExecutor(1) as pool:
        out = pool.submit(asyncio.run, _ownership(db_url)).result()
    assert all(v != "allowed" for v in out["refused"].values()), out["refused"]
    assert out["unchanged"]
    shell = out["shell"]                                 # an empty shell Chainlit's author checks refuse
    assert shell["userIdentifier"] == out["not_yours"] and shell["steps"] == [] and shell["elements"] == []
    assert out["element"] is None and out["own"] == []
    assert out["big"][0] == 413 and "limit" in out["big"][1]


async def _remembered(url: str) -> dict:
    import chainlit as cl
    from chainlit.context import init_http_context

    from app.ui.datalayer import BookbotDataLayer
    from app.ui.ownership import AccessDenied, reset_requester, set_requester

    layer = BookbotDataLayer(url)
    init_http_context(user=cl.User(identifier="ed"))
    ed = await layer.create_user(cl.User(identifier="ed"))
    await layer.create_user(cl.User(identifier="rita"))
    asked: list[str] = []
    execute_sql = layer.execute_sql

    async def counting(query, parameters):  # noqa: ANN001
        if query.startswith('SELECT "userIdentifier" FROM threads') or query.startswith('SELECT "threadId" FROM elements'):
            asked.append(query.split(" FROM ")[1].split()[0])
        return await execute_sql(query=query, parameters=parameters)

    layer.execute_sql = counting
    thread_id, step_id = str(uuid.uuid4()), str(uuid.uuid4())
    out: dict = {}
    token = set_requester("ed")
    try:
        await layer.update_thread(thread_id, name="ed's thread", user_id=ed.id)
        asked.clear()                                              # (it asked: the thread was new)
        step = cl.Step(name="1 · Observe", type="tool", id=step_id, thread_id=thread_id)
        element = cl.CustomElement(name="StepReview", props={"step_id": "s-1"}, for_id=step_id,
                                   thread_id=thread_id, display="inline")
        for text_so_far in ("I", "I observe", "I observe."):       # a streamed step: written three times
            step.output = text_so_far
            await layer.create_step(step.to_dict())
            element.props = {"step_id": "s-1", "text": text_so_far}
            await layer.create_element(element)
        out["asked_while_streaming"] = list(asked)
    finally:
        reset_requester(token)
    token = set_requester("rita")                                  # what ed's writes taught the layer
    try:                                                           # widens nothing for anyone else
        for name, call in (("step", layer.create_step({**step.to_dict(), "output": "forged"})),
                           ("element", layer.create_element(element))):
            try:
                await call
                out[name] = "allowed"
            except AccessDenied:
                out[name] = "refused"
    finally:
        reset_requester(token)
    token = set_requester("ed")
    try:
        await layer.delete_thread(thread_id)
        out["remembered_after_delete"] = layer.thread_owners.get(thread_id)
    finally:
        reset_requester(token)
    await layer.engine.dispose()
    return out


def test_data_layer_asks_for_an_owner_once_per_thread(db_url):
    """A streamed answer rewrites its steps and elements; the owner check asks the database
    once per thread and element, and what it remembers refuses other users all the same."""
    with ThreadPoolExecutor(1) as pool:
        out = pool.submit(asyncio.run, _remembered(db_url)).result()
    assert out["asked_while_streaming"].count("threads") == 1
    assert out["asked_while_streaming"].count("elements") == 1
    assert out["step"] == out["element"] == "refused"
    assert out["remembered_after_delete"] is None


def test_sign_in_throttles_rehashes_and_versions_tokens(db_url):
    from app.review.accounts import Throttle
    from app.review.models import Account
    from app.review.store import ReviewStore

    store = ReviewStore(db_url)
    try:
        store.add_user("ann", "ann password", "editor")
        t, now = Throttle(account_failures=3, address_failures=5, block_s=10), datetime.now(timezone.utc)
        results = [store.sign_in("ann", "wrong", "10.0.0.1", t, now=now) for _ in range(4)]
        assert [r.retry_after_s for r in results] == [None, None, None, 10]
        assert store.sign_in("ann", "ann password", "10.0.0.9", t, now=now).retry_after_s == 10
        later = now + timedelta(seconds=11)
        ok = store.sign_in("ann", "ann password", "10.0.0.9", t, now=later)
        assert ok.user is not None and ok.token_version == 0
        assert store.sign_in("ann", "wrong", "10.0.0.9", t, now=later).retry_after_s is None   # forgiven
        unknown = [store.sign_in(f"x{i}", "pw", "10.0.0.2", t, now=now) for i in range(6)]
        assert [r.retry_after_s for r in unknown] == [None] * 5 + [10]           # the address pauses
        assert store.sign_in("ann", "\ud800", "10.0.0.3", t).user is None          # no 500 on surrogates
        # a scrypt hash from before becomes argon2id on the next sign-in
        salt = os.urandom(16)
        digest = hashlib.scrypt(b"old password", salt=salt, n=2 ** 14, r=8, p=1, dklen=32)
        legacy = f"scrypt${2 ** 14}$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
        store.add_user("old", "placeholder pw")
        with store._tx() as s:
            s.execute(update(Account).where(Account.name == "old").values(password_hash=legacy))
        assert store.authenticate("old", "old password") is not None
        with store._tx() as s:
            assert s.query(Account.password_hash).filter(Account.name == "old").scalar().startswith(
                "$argon2id$v=19$m=19456,t=2,p=1$")
        assert store.authenticate("old", "old password") is not None
        # token versions: sign-out, role change and password change each end older tokens
        assert store.token_version("ann") == 0
        assert store.end_sessions("ann") == 1
        store.set_role("ann", "editor")                                          # no change, same version
        assert store.token_version("ann") == 1
        store.set_role("ann", "reader")
        store.set_password("ann", "new ann password")
        assert store.account_state("ann")[1] == 3 and store.end_sessions("nobody") is None
    finally:
        store.close()


def test_inputs_are_normalised_and_refusals_kept_short():
    from app.ui import inputs

    assert inputs.normalise("cafe\u0301\u200b \u202eHolmes\x00\r\n") == "café Holmes\n"
    assert inputs.check_message("\u200b\ufeff\u2060").problem.startswith("Your message is empty")
    checked = inputs.check_message("Holmes \ud83d")
    assert "U+D83D" in checked.problem and "\ud83d" not in checked.text
    assert inputs.check_message(["not", "text"]).problem
    long = "Holmes " * 1000
    assert "limit is 4,000" in inputs.check_message(long).problem
    stored = inputs.stored_form(long)
    assert len(stored) < 300 and "refused message of 7,000 characters" in stored
    assert inputs.stored_form("A fine question?") == "A fine question?"
    assert len(inputs.thread_name("x" * 5000)) == 200 and inputs.thread_name(None) is None


def test_guard_origin_rule():
    from app.ui.guard import RequestGuard

    g = RequestGuard(None, ["https://bookbot.example.org/"], 60, lambda n: None, lambda: None,
                     lambda: None, lambda s: None)
    assert g.origin_ok("https://bookbot.example.org", "internal:8000")
    assert g.origin_ok("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert not g.origin_ok("https://evil.example", "127.0.0.1:8000")
    assert not g.origin_ok("null", "127.0.0.1:8000")
