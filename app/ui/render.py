"""Showing turns in Chainlit: streamed steps, cited passages, review controls.

Owns: streaming one engine run into the chat (its events come from the services'
engine runner, which serves turns not yet showing a step first; a parent step for
the turn, one open child step per procedure step, cited excerpts as side-panel elements, the
StepReview control inline in each step, the answer streamed afterwards),
rendering an already stored turn the same way (review desk), and refreshing
the review controls of a turn from the review store.  Which controls exist for
a step is remembered in the user session (``review_controls``) so the action
callback only ever updates elements this server created.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import chainlit as cl
from chainlit.data import get_data_layer

from app.bots import engine as ev
from app.domain import STOP, Review, ReviewKind, Role, Step, Turn
from app.ui import present
from app.ui.ownership import OwnershipChecks
from app.ui.services import TurnRequest

CONTROLS_KEY = "review_controls"


def controls_registry() -> dict[str, dict[str, Any]]:
    reg = cl.user_session.get(CONTROLS_KEY)
    if reg is None:
        reg = {}
        cl.user_session.set(CONTROLS_KEY, reg)
    return reg


async def viewer_role(store: Any) -> Role:
    """The viewer's role as the database has it now (a role changed since login counts)."""
    account = await asyncio.to_thread(store.get_user, current_name())
    return account.role if account is not None else Role.reader


def current_name() -> str:
    user = cl.user_session.get("user")
    return getattr(user, "identifier", "") or "anonymous"


def _current_step_id() -> str | None:
    step = cl.context.current_step
    return step.id if step is not None else None


def own_reviews(store: Any, step_id: str, reviewer: str) -> tuple[Review | None, Review | None]:
    """(reader review, editor review) of this reviewer for a step; the editor one may be inferred."""
    return _own(store.reviews_for_step(step_id), reviewer)


def _own(reviews: list[Review], reviewer: str) -> tuple[Review | None, Review | None]:
    reader = editor = None
    for r in reviews:
        if r.reviewer != reviewer:
            continue
        if r.kind == ReviewKind.reader:
            reader = r
        elif r.kind == ReviewKind.editor:
            editor = r
    return reader, editor


def step_elements(step: Step, cl_step_id: str, role: Role, reader: Review | None,
                  editor: Review | None, thread_id: str | None = None) -> tuple[list[Any], str, str]:
    """The side-panel excerpts and the review control of one step; returns (elements, markdown, control id)."""
    extra = {"thread_id": thread_id} if thread_id else {}
    elements: list[Any] = []
    sources: list[tuple[str, str]] = []
    title = "Step " + present.step_title(step.index, step.name, step.visit)
    for n, excerpt in enumerate(present.cited_excerpts(step), start=1):
        name = present.excerpt_name(n)
        sources.append((name, present.excerpt_label(excerpt)))
        elements.append(cl.CustomElement(name=name, display="side", for_id=cl_step_id,
                                         props=present.excerpt_props(excerpt, step.citations, n, title),
                                         **extra))
    control_id = str(uuid.uuid4())
    props = present.review_props(step.id, step.name, role, reader=reader, editor=editor,
                                 turn_id=step.turn_id, step_index=step.index)
    elements.append(cl.CustomElement(id=control_id, name="StepReview", props=props, display="inline",
                                     for_id=cl_step_id, **extra))
    return elements, present.step_markdown(step, sources), control_id


async def finish_step(cl_step: cl.Step, step: Step, role: Role, reader: Review | None = None,
                      editor: Review | None = None) -> None:
    elements, markdown, control_id = step_elements(step, cl_step.id, role, reader, editor,
                                                   thread_id=cl_step.thread_id)
    cl_step.output = markdown
    cl_step.elements = elements
    layer = get_data_layer()
    if isinstance(layer, OwnershipChecks):
        layer.vouch_for_new_elements(elements)
    cl_step.metadata = {**(cl_step.metadata or {}), "bookbot_step_id": step.id,
                        "bookbot_turn_id": step.turn_id, "bookbot_open": True}
    await cl_step.update()
    controls_registry()[step.id] = {"element_id": control_id, "for_id": cl_step.id,
                                    "thread_id": cl_step.thread_id, "turn_id": step.turn_id,
                                    "index": step.index, "name": step.name, "props": elements[-1].props}


async def refresh_controls(store: Any, turn_id: str, role: Role | None = None) -> int:
    """Re-send the review controls of a turn's steps whose state the store changed (one read of the
    turn's reviews; unchanged controls are not re-sent nor re-stored); returns how many were sent."""
    reviewer, role = current_name(), role or await viewer_role(store)
    entries = [(sid, e) for sid, e in controls_registry().items() if e["turn_id"] == turn_id]
    reviews = await asyncio.to_thread(store.reviews_for_turn, turn_id)
    sent = 0
    for step_id, entry in entries:
        reader, editor = _own(reviews.get(step_id, []), reviewer)
        props = present.review_props(step_id, entry["name"], role, reader=reader, editor=editor,
                                     turn_id=turn_id, step_index=entry["index"])
        if props == entry.get("props"):
            continue
        entry["props"] = props
        sent += 1
        element = cl.CustomElement(id=entry["element_id"], name="StepReview", props=props,
                                   display="inline", for_id=entry["for_id"],
                                   thread_id=entry.get("thread_id") or cl.context.session.thread_id)
        await element.update()
    return sent


async def stream_turn(services: Any, character: Any, question: str, history: list[tuple[str, str]],
                      thread_id: str) -> Turn | None:
    """Run the engine for one question and show it as it streams; returns the finished turn."""
    role, reviewer = await viewer_role(services.store), current_name()
    parent = cl.Step(name=f"{character.name}'s reasoning", type="run", default_open=True,
                     parent_id=_current_step_id())   # under the turn, so the answer follows it
    parent.metadata = {"bookbot_open": True}
    await parent.send()
    open_steps: dict[str, cl.Step] = {}
    by_index: dict[int, cl.Step] = {}
    answer: cl.Message | None = None      # created after the steps, so it is shown after them
    turn: Turn | None = None
    stopped = ""                          # why a procedure graph stopped early, if it did
    request = TurnRequest(character, question, tuple(history), conversation_id=thread_id, user_id=reviewer)
    async for event in services.turn_events(request):
        if isinstance(event, ev.StepStarted):
            step = open_steps.get(event.step_id)
            if step is None:
                step = cl.Step(name=present.step_title(event.index, event.name, event.visit), type="tool",
                               parent_id=parent.id, default_open=True)
                step.metadata = {"bookbot_open": True, "bookbot_step_id": event.step_id}
                open_steps[event.step_id] = step
                await step.send()
            else:                       # redone by the fallback backend: same step, fresh text
                step.output = ""
            by_index[event.index] = step
        elif isinstance(event, ev.StepDelta):
            step = by_index.get(event.index)
            if step is not None:
                await step.stream_token(event.text)
        elif isinstance(event, ev.StepDone):
            await finish_step(open_steps[event.step.id], event.step, role)
        elif isinstance(event, ev.AnswerDelta):
            if answer is None:
                answer = cl.Message(content="", author=character.name)
            await answer.stream_token(event.text)
        elif isinstance(event, ev.Notice):
            await cl.Message(content=event.message, author="Bookbot").send()
        elif isinstance(event, ev.TransitionTaken) and event.to_name == STOP:
            stopped = event.reason
        elif isinstance(event, ev.TurnDone):
            turn = event.turn
    parent.output = (f"{len(open_steps)} steps · {turn.backend if turn else ''}").strip(" ·")
    path = present.path_line(turn.steps) if turn else ""
    parent.output += "".join(f"\n\n{line}" for line in (path, present.jump_line(stopped)) if line)
    await parent.update()
    if answer is None:
        answer = cl.Message(content="", author=character.name)
    if turn is not None and not answer.content.strip():
        answer.content = turn.answer
    await answer.send()
    return turn


async def show_stored_turn(store: Any, turn: Turn, character_name: str, header: str,
                           header_actions: list[cl.Action] | None = None) -> None:
    """Render a stored turn (review desk): the question, every step with passages and controls."""
    role, reviewer = await viewer_role(store), current_name()
    await cl.Message(content=header, author="Review desk", actions=header_actions or []).send()
    parent = cl.Step(name=f"{character_name} — question: {turn.question[:80]}", type="run",
                     default_open=True, parent_id=_current_step_id())
    parent.metadata = {"bookbot_open": True}
    await parent.send()
    for step in turn.steps:
        cl_step = cl.Step(name=present.step_title(step.index, step.name, step.visit), type="tool",
                          parent_id=parent.id, default_open=True)
        cl_step.metadata = {"bookbot_open": True}
        await cl_step.send()
        reader, editor = await asyncio.to_thread(own_reviews, store, step.id, reviewer)
        await finish_step(cl_step, step, role, reader, editor)
    path = present.path_line(turn.steps)
    parent.output = f"Answer given: {turn.answer}" + (f"\n\n{path}" if path else "")
    await parent.update()
