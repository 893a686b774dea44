"""What happens when a reader asks, a reviewer clicks, or an old thread is reopened.

Owns: answering a chat message (input normalised and checked by ``inputs``
before the engine sees it, language note, streaming the
turn, keeping the conversation history), recording a review sent by the
StepReview control (role taken from the database, never from the payload; the
step must be one this session showed; nothing is stored when refused), and
restoring a reopened thread (history, which controls belong to which step,
controls showing the reviews stored since, wherever they were given).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import chainlit as cl

from app.domain import ReviewKind, Role
from app.ui import inputs, present, render
from app.ui.services import Services

log = logging.getLogger("bookbot.ui")

OFFLINE_NOTICE = ("**Offline mode.** No language model is configured, so each step is built from "
                  "sentences of the book itself and the answer is assembled from those steps. "
                  "Set `BOOKBOT_LLM_BASE_URL` and `BOOKBOT_LLM_MODEL` to use a model.")


async def answer(services: Services, text: str, thread_id: str) -> None:
    checked = inputs.check_message(text)
    if checked.problem:
        await cl.Message(content=checked.problem, author="Bookbot").send()
        return
    text = checked.text
    character_id = cl.user_session.get("character_id")
    try:
        character = await asyncio.to_thread(services.cards.get, character_id)
    except KeyError:
        await cl.Message(content=f"The character card {character_id!r} is gone (it was removed or "
                         "renamed). Start a new chat and pick a character.", author="Bookbot").send()
        return
    note = present.language_notice(text, character.language)
    if note:
        await cl.Message(content=note, author="Bookbot").send()
    history = [tuple(pair) for pair in (cl.user_session.get("history") or [])]
    try:
        turn = await render.stream_turn(services, character, text.strip(), history, thread_id)
    except Exception as exc:  # the reader must see a reason, and the server keeps running
        log.exception("turn failed")
        await cl.Message(content=f"Sorry — this question could not be answered: {exc}",
                         author="Bookbot").send()
        return
    if turn is not None:
        history.append((turn.question, turn.answer))
        cl.user_session.set("history", [list(p) for p in history[-10:]])


async def record(services: Services, payload: Any) -> dict[str, Any]:
    """The ``review_step`` action: validate, check the role, store, refresh the turn's controls."""
    name = render.current_name()
    account = await asyncio.to_thread(services.store.get_user, name)
    if account is None:
        return {"ok": False, "error": "review refused: your account no longer exists"}
    role: Role = account.role          # the database decides, not the session or the payload
    if isinstance(payload, dict) and isinstance(payload.get("correction"), str):
        if inputs.lone_surrogate(payload["correction"]) is not None:
            return {"ok": False, "error": "review refused: the correction contains a broken character "
                                          "(an unpaired surrogate); retype it"}
        payload = {**payload, "correction": inputs.normalise(payload["correction"])}
    try:
        request = present.parse_review_payload(payload, role)
    except present.PayloadError as exc:
        log.warning("refused review from %s (%s): %s", name, role.value, exc)
        return {"ok": False, "error": str(exc)}
    entry = render.controls_registry().get(request.step_id)
    if entry is None:
        return {"ok": False, "error": "review refused: that step is not shown in this chat; reload it"}
    try:
        stored = await asyncio.to_thread(services.store.record_review, request.to_review(name), role)
    except ValueError as exc:          # ReviewError and friends carry a message for the user
        return {"ok": False, "error": str(exc)}
    except Exception as exc:
        log.exception("review not stored")
        return {"ok": False, "error": f"review not stored (database problem): {exc}"}
    await render.refresh_controls(services.store, entry["turn_id"], role)
    if stored.kind == ReviewKind.editor and stored.rating == -1:
        message = "Recorded −1: the later steps of this turn now count as wrong."
    else:
        message = "Recorded."
    return {"ok": True, "message": message, "review": present.review_dict(stored)}


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return {}
    return value or {}


async def resume(services: Services, thread: dict) -> None:
    """Reopened thread: rebuild the history and the step → control map, refresh the controls."""
    profile = cl.user_session.get("chat_profile")
    steps = thread.get("steps") or []
    history: list[list[str]] = []
    question = None
    for st in steps:
        if st.get("type") == "user_message":
            question = st.get("output") or ""
        elif st.get("type") == "assistant_message" and question is not None:
            history.append([question, st.get("output") or ""])
            question = None
    cl.user_session.set("history", history[-10:])
    for c in await asyncio.to_thread(services.cards.all):
        if c.name == profile:
            cl.user_session.set("character_id", c.id)
    by_cl_step = {st["id"]: _json(st.get("metadata")) for st in steps}
    registry = render.controls_registry()
    for el in thread.get("elements") or []:
        if el.get("name") != "StepReview":
            continue
        props = _json(el.get("props"))
        meta = by_cl_step.get(el.get("forId"), {})
        step_id = props.get("step_id") or meta.get("bookbot_step_id")
        if not step_id:
            continue
        entry = {"element_id": el["id"], "for_id": el.get("forId"), "thread_id": thread.get("id"),
                 "turn_id": props.get("turn_id", ""), "index": props.get("step_index", 0),
                 "name": props.get("step_name", "")}
        registry[step_id] = entry


def control_props(store: Any, author: str, props: dict) -> dict:
    """StepReview props for a thread's author as of now (used by the data layer on every read)."""
    step_id = props.get("step_id")
    if not isinstance(step_id, str) or not step_id:
        return props
    account = store.get_user(author)
    role = account.role if account is not None else Role.reader
    reader, editor = render.own_reviews(store, step_id, author)
    return present.review_props(step_id, props.get("step_name", ""), role, reader=reader, editor=editor,
                                turn_id=props.get("turn_id", ""), step_index=props.get("step_index", 0))
