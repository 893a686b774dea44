"""Roles are enforced on the server: a hand-made editor payload from a reader stores nothing.

Speaks Chainlit's own protocol (HTTP login + socket.io, see chat_client.py)
against the real server, the way a tampering browser would.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from app.domain import ReviewKind
from chat_client import ChatClient
from conftest import USERS

pytestmark = pytest.mark.slow


def run(coro):
    with ThreadPoolExecutor(1) as pool:           # keeps asyncio away from Playwright's loop
        return pool.submit(asyncio.run, coro).result()


async def _forge(base: str) -> dict:
    client = ChatClient(base, "rita", USERS["rita"][1], "Sherlock Holmes")
    async with httpx.AsyncClient(timeout=30) as http:
        await client.login(http)
        await client.connect()
        empty = await client.ask("   ")
        timing = await client.ask("What is the science of deduction?")
        controls = [e for e in timing.elements if e.get("name") == "StepReview"]
        assert controls, (f"no review controls seen: steps={len(timing.steps)} "
                          f"elements={[e.get('name') for e in timing.elements]} "
                          f"messages={[m.get('output', '')[:60] for m in timing.messages]}")
        step_id = controls[-1]["props"]["step_id"]
        role_seen = controls[-1]["props"]["role"]
        forged = await client.call_action(http, "review_step", {
            "step_id": step_id, "kind": "editor", "rating": -1, "correction": "forged",
            "fault_tags": ["other"], "role": "editor"})
        unknown = await client.call_action(http, "review_step", {
            "step_id": "not-a-step-of-this-chat", "kind": "reader", "rating": 1})
        honest = await client.call_action(http, "review_step", {
            "step_id": step_id, "kind": "reader", "rating": -1})
        await client.close()
    return {"empty": empty, "step_id": step_id, "role_seen": role_seen, "forged": forged, "unknown": unknown,
            "honest": honest, "timing": timing}


def test_reader_forging_an_editor_review_is_refused_and_nothing_is_stored(ui_server, ui_store):
    out = run(_forge(ui_server))
    assert out["empty"].first_step_s is None                       # nothing was run ...
    assert any("empty" in m.get("output", "") for m in out["empty"].messages)   # ... and it says why
    assert out["timing"].first_step_s is not None and out["timing"].answer_s is not None
    assert out["role_seen"] == "reader"
    forged = out["forged"]["response"]
    assert forged["ok"] is False and "editor role" in forged["error"]
    assert out["unknown"]["response"]["ok"] is False
    assert out["honest"]["response"]["ok"] is True
    stored = ui_store.reviews_for_step(out["step_id"])
    assert [(r.kind, r.rating) for r in stored] == [(ReviewKind.reader, -1)]
    assert ui_store.reviews_for_step(out["step_id"], kind=ReviewKind.editor) == []


def test_new_character_card_shows_up_for_new_chats_without_restart(ui_server, ui_settings):
    import yaml

    async def profiles() -> list[str]:
        client = ChatClient(ui_server, "rita", USERS["rita"][1], "Sherlock Holmes")
        async with httpx.AsyncClient(timeout=30) as http:
            await client.login(http)
            r = await http.get(f"{ui_server}/project/settings?language=en-US",
                               headers={"Cookie": client.cookie_header})
            return [p["name"] for p in r.json()["chatProfiles"]]

    assert "Watson" not in run(profiles())
    card = yaml.safe_load((ui_settings.characters_dir / "sherlock-holmes.yaml").read_text())
    card.update(id="watson", name="Watson", greeting="Watson here.")
    path = ui_settings.characters_dir / "watson.yaml"
    path.write_text(yaml.safe_dump(card, allow_unicode=True))
    try:
        assert "Watson" in run(profiles())
    finally:
        path.unlink()
