"""The editors' review desk: a chat profile that walks through the review queue.

Owns: showing one queued turn at a time (question, every step with its cited
passages and the same StepReview controls as the chat — the reviews are the
same records), progress counts, skip, next, and a filter by character.  The
queue order comes from the review store (least grounded first, then newest,
until the verifier re-prioritises).  Editors and lab members only: the role is
read from the database on every desk action.
"""

from __future__ import annotations

import asyncio
from typing import Any

import chainlit as cl

from app.ui import present, render
from app.ui.services import Services

DESK_PROFILE = "Review desk"
ACTION = "desk"
DESCRIPTION = ("**Editors' review desk.** Turns whose steps still need your rating, least grounded "
               "first: one turn at a time with every step and its cited passages. Rate, correct, "
               "tag — or skip. Type a character's name to filter, `all` to clear the filter, "
               "`next` or `skip` to move on.")


async def _allowed(services: Services) -> bool:
    account = await asyncio.to_thread(services.store.get_user, render.current_name())
    if account is None or not present.can_edit(account.role):
        await cl.Message(content="The review desk is for editors. Ask a lab member to run "
                         "`bookbot users set-role YOUR_NAME editor`.", author="Review desk").send()
        return False
    return True


def _names(services: Services) -> dict[str, str]:
    return {c.id: c.name for c in services.cards.all()}


async def start(services: Services) -> None:
    if not await _allowed(services):
        return
    cl.user_session.set("desk_filter", None)
    await show_next(services)


def _filter_actions(current: str | None, names: dict[str, str], character_ids: list[str]) -> list[cl.Action]:
    acts = [cl.Action(name=ACTION, payload={"op": "filter", "character": ""},
                      label=("✓ " if current is None else "") + "All characters")]
    for cid in character_ids:
        label = names.get(cid, cid)
        acts.append(cl.Action(name=ACTION, payload={"op": "filter", "character": cid},
                              label=("✓ " if current == cid else "") + label))
    return acts


async def show_next(services: Services) -> None:
    store, reviewer = services.store, render.current_name()
    character = cl.user_session.get("desk_filter")
    item = await asyncio.to_thread(store.next_turn, reviewer, character)
    progress = await asyncio.to_thread(store.progress, reviewer, character)
    names = await asyncio.to_thread(_names, services)
    character_ids = await asyncio.to_thread(store.characters)
    who = names.get(character, character) if character else "all characters"
    counts = (f"**Progress ({who}):** {progress.steps_done} of {progress.steps_total} steps reviewed · "
              f"{progress.turns_done} of {progress.turns_total} turns done · "
              f"{progress.turns_pending} pending ({progress.turns_skipped} skipped)")
    filters = _filter_actions(character, names, character_ids)
    if item is None:
        await cl.Message(content=f"Nothing left to review for {who}. 🎉\n\n{counts}",
                         author="Review desk", actions=filters).send()
        cl.user_session.set("desk_turn", None)
        return
    turn = await asyncio.to_thread(store.get_turn, item.turn_id)
    if turn is None:
        await cl.Message(content="That turn was deleted meanwhile; showing the next one.",
                         author="Review desk").send()
        await asyncio.to_thread(store.skip, reviewer, item.turn_id)
        return await show_next(services)
    cl.user_session.set("desk_turn", turn.id)
    header = (f"{counts}\n\n**{names.get(turn.character_id, turn.character_id)}** · asked "
              f"{item.created_at:%Y-%m-%d %H:%M} UTC · priority {item.priority:.2f}"
              f"{' · skipped before' if item.skipped else ''} · {item.steps_done}/{item.steps_total} "
              f"steps rated by you\n\n> {turn.question}")
    nav = [cl.Action(name=ACTION, payload={"op": "next"}, label="Next turn"),
           cl.Action(name=ACTION, payload={"op": "skip", "turn_id": turn.id}, label="Skip this turn")]
    header += "\n\nRate the steps below, then go to the next turn — or skip this one for now."
    await render.show_stored_turn(store, turn, names.get(turn.character_id, turn.character_id), header,
                                  nav + filters)


async def on_action(services: Services, payload: Any) -> None:
    if not await _allowed(services):
        return
    payload = payload if isinstance(payload, dict) else {}
    op = payload.get("op")
    store, reviewer = services.store, render.current_name()
    if op == "skip" and isinstance(payload.get("turn_id"), str):
        try:
            await asyncio.to_thread(store.skip, reviewer, payload["turn_id"])
        except ValueError as exc:
            await cl.Message(content=str(exc), author="Review desk").send()
    elif op == "filter":
        cid = payload.get("character") or None
        cl.user_session.set("desk_filter", cid if isinstance(cid, str) else None)
    elif op == "next":
        current = cl.user_session.get("desk_turn")
        item = await asyncio.to_thread(store.next_turn, reviewer, cl.user_session.get("desk_filter"))
        if current and item is not None and item.turn_id == current:
            await cl.Message(content=f"This turn still has steps you have not rated "
                             f"({item.steps_done}/{item.steps_total} done): rate them, or skip it.",
                             author="Review desk").send()
            return
    else:
        await cl.Message(content="Unknown desk action.", author="Review desk").send()
        return
    await show_next(services)


async def on_message(services: Services, text: str) -> None:
    if not await _allowed(services):
        return
    word = (text or "").strip()
    if word.lower() == "next":
        return await on_action(services, {"op": "next"})
    if word.lower() == "skip":
        turn_id = cl.user_session.get("desk_turn")
        return await on_action(services, {"op": "skip", "turn_id": turn_id} if turn_id else {"op": "next"})
    if word.lower() in ("all", "*"):
        return await on_action(services, {"op": "filter", "character": ""})
    names = await asyncio.to_thread(_names, services)
    for cid, name in names.items():
        if word.lower() in (cid.lower(), name.lower()):
            return await on_action(services, {"op": "filter", "character": cid})
    await cl.Message(content="In the review desk, type `next`, `skip`, `all`, or a character's name "
                     "(" + ", ".join(names.values()) + ").", author="Review desk").send()
