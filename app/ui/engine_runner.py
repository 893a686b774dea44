"""Running engine turns for the chat server: worker threads of their own, first steps first.

Owns: `TurnPool`, a small pool of worker threads that advances turns (``Engine.run``, one
``next()`` at a time) and hands each outcome to a callback, and `EngineRunner`, which
puts that pool behind the event loop.  Two rules keep the first reasoning step quick
when many chats are answered at once:

- engine work never queues in asyncio's default executor, so the short calls a new
  question needs before its turn starts (token check, card, role, engine set-up) are not
  stuck behind other chats' retrieval and scoring;
- a turn that has not shown its first step goes ahead of turns already streaming (their
  readers are watching steps arrive; the new reader is watching nothing).

The same pool runs turns inside engine processes (``engine_processes``).  No chainlit
import.  Threads start on first use, not when the runner is built.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import threading
from typing import Any, AsyncIterator, Callable, Iterator

from app.bots.engine import StepStarted

NEW_TURN, STREAMING = 0, 1        # queue priorities: lower goes first
END = object()                    # what a finished turn's next() gives

Deliver = Callable[[Any, bool], None]      # (event, or END, or the exception; failed?)


def default_workers() -> int:
    """As many as asyncio's default executor has (cores + 4, at most 32)."""
    return min(32, (os.cpu_count() or 1) + 4)


def next_priority(priority: int, event: Any) -> int:
    """A turn that has shown its first step is streaming from then on."""
    return STREAMING if isinstance(event, StepStarted) else priority


class TurnPool:
    """Worker threads taking (priority, turn) from one queue and advancing the turn by one event."""

    def __init__(self, workers: int | None = None, name: str = "bookbot-engine") -> None:
        self.workers = workers or default_workers()
        self._name = name
        self._queue: list[tuple[int, int, Iterator[Any], Deliver, Callable[[], bool]]] = []
        self._ready = threading.Condition()
        self._order = itertools.count()
        self._started = False

    def submit(self, priority: int, iterator: Iterator[Any], deliver: Deliver,
               cancelled: Callable[[], bool] = lambda: False) -> None:
        """Advance `iterator` once on a worker; `deliver` gets the outcome there, unless
        `cancelled()` says by then that nobody wants it."""
        with self._ready:
            if not self._started:
                for n in range(self.workers):
                    threading.Thread(target=self._work, name=f"{self._name}-{n}", daemon=True).start()
                self._started = True
            heapq.heappush(self._queue, (priority, next(self._order), iterator, deliver, cancelled))
            self._ready.notify()

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                _, _, iterator, deliver, cancelled = heapq.heappop(self._queue)
            if cancelled():               # the chat went away: its turn is not continued
                continue
            try:
                outcome, failed = next(iterator, END), False
            except BaseException as exc:  # noqa: BLE001 - handed to whoever reads the turn
                outcome, failed = exc, True
            deliver(outcome, failed)


class EngineRunner:
    """A turn's events on the event loop, each produced on a worker thread of the pool."""

    def __init__(self, workers: int | None = None) -> None:
        self.pool = TurnPool(workers)

    async def events(self, iterator: Iterator[Any]) -> AsyncIterator[Any]:
        """The events of `iterator` (an engine run), each produced on a worker thread."""
        loop = asyncio.get_running_loop()
        priority = NEW_TURN
        while True:
            future = loop.create_future()
            self.pool.submit(priority, iterator, _deliver_to(future, loop), future.cancelled)
            event = await future
            if event is END:
                return
            priority = next_priority(priority, event)
            yield event


def _deliver_to(future: asyncio.Future, loop: asyncio.AbstractEventLoop) -> Deliver:
    def deliver(outcome: Any, failed: bool) -> None:
        try:
            loop.call_soon_threadsafe(_settle, future, outcome, failed)
        except RuntimeError:         # the event loop is closed: the server is stopping
            pass
    return deliver


def _settle(future: asyncio.Future, outcome: Any, failed: bool) -> None:
    if future.done():
        return
    if failed:
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
