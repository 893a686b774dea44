"""The whole server on the real PostgreSQL: chat history, turns and reviews in one database."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select

from app.domain import ReviewSource
from chat_client import ChatClient
from server_harness import prepare_data, start_server, stop_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres]




async def _session(url: str) -> tuple[str, dict]:
    client = ChatClient(url, "ed", "editor-password", "Sherlock Holmes")
    async with httpx.AsyncClient(timeout=30) as http:
        await client.login(http)
        await client.connect()
        timing = await client.ask("How did you know Watson had been in Afghanistan?")
        control = next(e for e in timing.elements if e["name"] == "StepReview")
        out = await client.call_action(http, "review_step", {
            "step_id": control["props"]["step_id"], "kind": "editor", "rating": -1,
            "correction": "Holmes saw the tan and the stiff arm.", "fault_tags": ["faulty_logic"]})
        await client.settle(1.0)                       # Chainlit persists steps in the background
        await client.close()
    return control["props"]["step_id"], out


def test_chat_and_review_on_postgresql(pg_url, tmp_path, model_dir, shared_dir):
    import psycopg

    from app.review.models import TurnRow
    from app.review.store import ReviewStore

    settings = prepare_data(tmp_path, model_dir, shared_dir / "books" / "study_in_scarlet_244.txt",
                            {"ed": ("editor", "editor-password")}, chapters=1, database_url=pg_url)
    proc, url = start_server(settings, tmp_path / "server.log")
    try:
        with ThreadPoolExecutor(1) as pool:
            step_id, out = pool.submit(asyncio.run, _session(url)).result()
    finally:
        stop_server(proc)
    assert out["response"]["ok"] is True, out
    store = ReviewStore(pg_url)
    with store._tx() as s:
        turn = store.get_turn(s.scalar(select(TurnRow.id)))
    assert turn.steps[0].id == step_id
    labels = [[(r.rating, r.source) for r in store.reviews_for_step(st.id)] for st in turn.steps]
    assert labels == [[(-1, ReviewSource.human)]] + [[(-1, ReviewSource.inferred)]] * (len(turn.steps) - 1)
    store.close()
    with psycopg.connect(pg_url) as conn:
        (thread_id, tags), = conn.execute("SELECT id, tags FROM threads").fetchall()
        assert thread_id == turn.conversation_id and tags == ["Sherlock Holmes"]
        n_controls = conn.execute("""SELECT count(*) FROM elements WHERE name = 'StepReview'
                                     AND props::jsonb->>'step_id' IS NOT NULL""").fetchone()[0]
        assert n_controls == len(turn.steps)
