"""Running engine turns for the chat server: worker threads of their own, first steps first.

Owns: `EngineRunner`, which produces a turn's events (``Engine.run``, one ``next()`` at a
time) on its own small pool of worker threads, and hands each event to the event loop.
Two rules keep the first reasoning step quick when many chats are answered at once:

- engine work never queues in asyncio's default executor, so the short calls a new
  question needs before its turn starts (token check, card, role, engine set-up) are not
  stuck behind other chats' retrieval and scoring;
- a turn that has not shown its first step goes ahead of turns already streaming (their
  readers are watching steps arrive; the new reader is watching nothing).

No chainlit import.  Threads start on first use, not when the runner is built.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import threading
from typing import Any, AsyncIterator, Iterator

from app.bots.engine import StepStarted

NEW_TURN, STREAMING = 0, 1        # queue priorities: lower goes first
_END = object()


def default_workers() -> int:
    """As many as asyncio's default executor has (cores + 4, at most 32)."""
    return min(32, (os.cpu_count() or 1) + 4)


class EngineRunner:
    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self._queue: list[tuple[int, int, Iterator[Any], asyncio.Future, asyncio.AbstractEventLoop]] = []
        self._ready = threading.Condition()
        self._order = itertools.count()
        self._started = False

    async def events(self, iterator: Iterator[Any]) -> AsyncIterator[Any]:
        """The events of `iterator` (an engine run), each produced on a worker thread."""
        loop = asyncio.get_running_loop()
        priority = NEW_TURN
        while True:
            future = loop.create_future()
            self._submit(priority, iterator, future, loop)
            event = await future
            if event is _END:
                return
            if isinstance(event, StepStarted):
                priority = STREAMING
            yield event

    def _submit(self, priority: int, iterator: Iterator[Any], future: asyncio.Future,
                loop: asyncio.AbstractEventLoop) -> None:
        with self._ready:
            if not self._started:
                for n in range(self.workers):
                    threading.Thread(target=self._work, name=f"bookbot-engine-{n}", daemon=True).start()
                self._started = True
            heapq.heappush(self._queue, (priority, next(self._order), iterator, future, loop))
            self._ready.notify()

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                _, _, iterator, future, loop = heapq.heappop(self._queue)
            if future.cancelled():       # the chat went away: its turn is not continued
                continue
            try:
                outcome, failed = next(iterator, _END), False
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                outcome, failed = exc, True
            try:
                loop.call_soon_threadsafe(_settle, future, outcome, failed)
            except RuntimeError:         # the event loop is closed: the server is stopping
                pass


def _settle(future: asyncio.Future, outcome: Any, failed: bool) -> None:
    if future.done():
        return
    if failed:
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
