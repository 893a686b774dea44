"""Two real `bookbot serve` instances on one PostgreSQL database and one `chroma run` server.

Each instance has its own data dir (nothing shared on disk).  A book added with the CLI
next to instance A is found by a question asked on instance B; a review given on A shows
in B's review desk; a sign-in made on A is accepted by B (one auth secret); a tuning
snapshot built next to A and activated once (with B's CLI) is used by both.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from chat_client import ChatClient
from server_harness import (ROOT, book_opening, engine_children, prepare_data, server_env, start_chroma,
                            start_server, stop_server)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
PROFILE = "Sherlock Holmes"
DESK = "Review desk"
ED = ("ed", "editor-password")


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=server_env(settings),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def run(coro):
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def ask(url: str, question: str, *, review: int | None = None) -> list[dict]:
    """Ask as the editor on one instance; optionally rate the first step; the step elements."""
    client = ChatClient(url, *ED, PROFILE)
    async with httpx.AsyncClient(timeout=60) as http:
        await client.login(http)
        await client.connect(timeout=60)
        timing = await client.ask(question, timeout=120)
        controls = [e for e in timing.elements if e["name"] == "StepReview"]
        if review is not None:
            out = await client.call_action(http, "review_step", {
                "step_id": controls[0]["props"]["step_id"], "kind": "editor", "rating": review,
                "correction": "", "fault_tags": []})
            assert out["response"]["ok"] is True, out
        await client.settle(1.0)
        await client.close()
    return controls


async def desk_on(url_b: str, url_a: str) -> str:
    """Sign in on A, open B's review desk with A's cookie; the desk's first message text."""
    client = ChatClient(url_b, *ED, DESK)
    texts: list[str] = []
    put = client.events.put

    async def recording_put(event) -> None:        # connect() drains the queue; keep the messages
        name, data, _ = event
        if name in ("new_message", "update_message") and isinstance(data, dict):
            texts.append(data.get("output") or "")
        await put(event)

    client.events.put = recording_put
    async with httpx.AsyncClient(timeout=60) as http:
        client.base_url = url_a
        await client.login(http)              # token signed by instance A …
        client.base_url = url_b                # … used on instance B
        await client.connect(timeout=60)
    await client.close()
    return "\n".join(texts)


def test_two_instances_share_catalog_reviews_sign_in_and_snapshots(pg_url, tmp_path, model_dir, shared_dir):
    from app.review.models import TurnRow
    from app.review.store import ReviewStore
    from app.tuning import snapshots as snap

    chroma, chroma_url = start_chroma(tmp_path / "chroma", tmp_path / "chroma.log")
    procs = []
    try:
        a = prepare_data(tmp_path / "a", model_dir, None, {"ed": ("editor", ED[1])},
                         database_url=pg_url, chroma_url=chroma_url)
        b = prepare_data(tmp_path / "b", model_dir, None, {"ed": ("editor", ED[1])},
                         database_url=pg_url, chroma_url=chroma_url)
        proc_a, url_a = start_server(a, tmp_path / "a.log")
        procs.append(proc_a)
        proc_b, url_b = start_server(b, tmp_path / "b.log")
        procs.append(proc_b)
        for proc in procs:        # on PostgreSQL each instance answers in an engine process of its own
            assert len(engine_children(proc.pid)) == 1

        # 1. a book added with A's CLI is found by a question asked on B (B started with no books)
        book = tmp_path / "pg244.txt"
        book.write_bytes(book_opening(shared_dir / "books" / "study_in_scarlet_244.txt", 1))
        cli(a, "books", "add", str(book), "--id", "gutenberg-244")
        controls_b = run(ask(url_b, "How did you know Watson had been in Afghanistan?"))
        assert controls_b, "instance B answered without steps"
        store = ReviewStore(pg_url)
        with store._tx() as s:
            (turn_b_id,) = s.scalars(select(TurnRow.id))
        turn_b = store.get_turn(turn_b_id)
        cited = {e.book_id for st in turn_b.steps for e in st.excerpts}
        assert cited == {"gutenberg-244"}
        assert any("Afghanistan" in e.text for st in turn_b.steps for e in st.excerpts)
        assert not (Path(b.data_dir) / "library" / "catalog.sqlite3").exists()   # B's catalog is the database's
        assert not (Path(a.data_dir) / "library" / "chroma").exists()            # vectors on the server only

        # 2. a review given on A shows in B's review desk (and A's sign-in token works on B)
        run(ask(url_a, "What is the science of deduction?", review=-1))
        desk = run(desk_on(url_b, url_a))
        assert "1 of 2 turns done" in desk, desk
        assert "What is the science of deduction?" not in desk        # A's turn is done: B's is shown
        assert "How did you know Watson had been in Afghanistan?" in desk

        # 3. a snapshot built next to A, activated once with B's CLI, is used by both instances
        meta = snap.SnapshotMeta("sherlock-holmes", "v1", snap.now_iso(), notes="two-instance test")
        snap.save_artefacts(a, meta, verifier=None, reranker=None, priors=None, exemplars=None,
                            mirror=snap.StoreMirror(store))
        assert not (Path(b.data_dir) / "snapshots" / "sherlock-holmes" / "v1").exists()
        cli(b, "snapshots", "activate", "sherlock-holmes", "v1")
        assert store.active_snapshot("sherlock-holmes").id == "sherlock-holmes@v1"
        run(ask(url_a, "Why did Stamford bring Watson to the laboratory?"))
        run(ask(url_b, "What did Holmes know about literature and philosophy?"))
        with store._tx() as s:
            used = dict(s.execute(select(TurnRow.question, TurnRow.snapshot_id)).all())
        assert used["Why did Stamford bring Watson to the laboratory?"] == "sherlock-holmes@v1"
        assert used["What did Holmes know about literature and philosophy?"] == "sherlock-holmes@v1"
        assert used["What is the science of deduction?"] is None
        store.close()
    finally:
        for proc in procs:
            stop_server(proc)
        stop_server(chroma)
