"""Answers computed in an engine process beside the chat server (BOOKBOT_ENGINE_PROCESSES=1):
the same events as in the server's own threads, the turn stored, and a child that dies
fails its turns with a plain error while the next question starts a new one."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.ui.engine_processes import EngineProcessError, EngineProcesses
from app.ui.services import Services, TurnRequest
from server_harness import book_opening
from test_engine_runner import run_fresh

QUESTION = "How did you know Watson had been in Afghanistan?"


@pytest.fixture()
def library_settings(settings, model_dir, shared_dir, tmp_path):
    from app.library import open_library
    from app.review.db import upgrade

    settings = settings.model_copy(update={"embed_model_dir": model_dir, "engine_processes": 1})
    settings.ensure_dirs()
    upgrade(settings.resolved_database_url)
    book = shared_dir / "books" / "study_in_scarlet_244.txt"
    library = open_library(settings)
    library.add_file(book, data=book_opening(book, 1), book_id="gutenberg-244")
    library.close()
    return settings


def test_engine_processes_default_to_one_on_a_database_server_and_none_on_sqlite(settings):
    assert settings.resolved_engine_processes == 0
    on_pg = settings.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:5432/test"})
    assert on_pg.resolved_engine_processes == 1
    assert on_pg.model_copy(update={"engine_processes": 0}).resolved_engine_processes == 0
    assert settings.model_copy(update={"engine_processes": 2}).resolved_engine_processes == 2


async def _turn(processes: EngineProcesses, request: TurnRequest) -> list:
    return [event async for event in processes.events(request)]


def test_a_turn_runs_in_the_engine_process_and_is_stored(library_settings):
    services = Services.build(library_settings)
    holmes = services.cards.get("sherlock-holmes")
    request = TurnRequest(holmes, QUESTION, conversation_id="c1", user_id="reader")
    processes = services.engine_processes()
    try:
        in_child = run_fresh(lambda: _turn(processes, request))
        assert services._library is None          # the chat server's side never opened the library
    finally:
        processes.stop()
    in_threads = run_fresh(lambda: _collect(services.runner().events(services.run_turn(request))))

    kinds = [type(e).__name__ for e in in_child]
    assert kinds[0] == "TurnStarted" and kinds[-1] == "TurnDone"
    assert kinds == [type(e).__name__ for e in in_threads]     # the same turn as in the server's threads
    turn = in_child[-1].turn
    stored = services.store.get_turn(turn.id)                  # stored by the child
    assert stored is not None and stored.question == QUESTION and stored.user_id == "reader"
    assert [s.name for s in stored.steps] == [s.name for s in turn.steps]
    assert any("Afghanistan" in e.text for s in stored.steps for e in s.excerpts)
    services.store.close()


async def _collect(events) -> list:
    return [event async for event in events]


def test_a_child_that_dies_fails_its_turn_plainly_and_the_next_question_gets_a_new_one(library_settings):
    services = Services.build(library_settings)
    holmes = services.cards.get("sherlock-holmes")
    processes = services.engine_processes()

    async def killed_mid_turn() -> str:
        processes.start()
        events = processes.events(TurnRequest(holmes, QUESTION))
        first = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.05)                  # the request is sent; the child is still starting
        processes._children[0].process.kill()
        try:
            await first
            async for _ in events:
                pass
        except EngineProcessError as exc:
            return str(exc)
        return "no error"

    try:
        message = run_fresh(killed_mid_turn)
        assert "engine process stopped" in message and "ask again" in message
        deadline = time.monotonic() + 10
        while processes._children[0].alive:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        events = run_fresh(lambda: _turn(processes, TurnRequest(holmes, QUESTION)))
        assert type(events[-1]).__name__ == "TurnDone"
        assert len([c for c in processes._children if c.alive]) == 1
        broken = processes._children[0]
        broken.conn.close()                          # a pipe that breaks between two questions
        events = run_fresh(lambda: _turn(processes, TurnRequest(holmes, QUESTION)))
        assert type(events[-1]).__name__ == "TurnDone"
        assert not broken.alive and processes._children[0] is not broken
    finally:
        processes.stop()
        services.store.close()


def test_an_event_that_cannot_cross_the_pipe_ends_its_turn_with_a_plain_error():
    import multiprocessing
    import queue
    import threading

    from app.ui.engine_processes import _send_all

    ours, theirs = multiprocessing.Pipe()
    outbox = queue.SimpleQueue()
    threading.Thread(target=_send_all, args=(theirs, outbox), daemon=True).start()
    outbox.put((7, "event", lambda: None))          # a function does not pickle
    outbox.put((8, "end", None))
    assert ours.poll(10)
    job, kind, payload = ours.recv()
    assert (job, kind) == (7, "error") and "could not be sent to the chat server" in str(payload)
    assert ours.recv() == (8, "end", None)          # the sender keeps going for the other turns
