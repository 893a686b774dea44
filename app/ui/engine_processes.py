"""Answers computed in engine processes beside the chat server (``BOOKBOT_ENGINE_PROCESSES``).

Owns: `EngineProcesses`, the chat server's side, and `serve_turns`, what runs in each child.
A Chainlit server spends its own core on its event loop (socket.io, Chainlit steps, the
database driver); retrieval and scoring in threads of the same process compete with it
for one interpreter lock, so one instance cannot use two cores.  With engine processes,
a chat server sends each question (`TurnRequest`) to a child over a pipe; the child —
its own ``Services`` from the same settings: library, snapshots, review store — runs the
turn on a `TurnPool` (new turns first, as in the server) and sends every event back as it
is produced; the turn is stored by the child, as the server would store it.

A chat that goes away cancels its turn in the child.  A child that dies fails the turns it
was running with a plain error, and the next question starts a new child.  Children are
started with ``spawn`` (no fork of a running event loop) and stop when the server's end
of their pipe closes.  No chainlit import.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import pickle
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from app.ui.engine_runner import END, NEW_TURN, TurnPool, next_priority

log = logging.getLogger("bookbot.ui")


class EngineProcessError(RuntimeError):
    """The engine process answering a turn stopped."""


@dataclass
class _Child:
    process: Any
    conn: Any
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    alive: bool = True
    stopping: bool = False            # stopped on purpose: no warning when its pipe closes

    def send(self, message: tuple) -> None:
        with self.send_lock:
            self.conn.send(message)


class EngineProcesses:
    def __init__(self, settings: Any, processes: int = 1, workers: int | None = None) -> None:
        self.settings, self.processes, self.workers = settings, max(1, processes), workers
        self._children: list[_Child] = []
        self._jobs: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue, _Child]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the children now (the server's start-up), not on the first question."""
        with self._lock:
            self._children = [c for c in self._children if c.alive]
            while len(self._children) < self.processes:
                self._children.append(self._spawn())

    def stop(self) -> None:
        with self._lock:
            children, self._children = self._children, []
        for child in children:
            child.stopping = True
            child.conn.close()
            child.process.join(5)
            if child.process.is_alive():
                child.process.terminate()

    async def events(self, request: Any) -> AsyncIterator[Any]:
        """The events of one turn, as the child produces them."""
        loop, inbox = asyncio.get_running_loop(), asyncio.Queue()
        job, child = next(self._ids), None
        finished = False
        try:
            child = self._send_turn(job, request, loop, inbox)
            while True:
                kind, payload = await inbox.get()
                if kind == "end":
                    finished = True
                    return
                if kind == "error":
                    finished = True
                    raise payload
                yield payload
        finally:
            with self._lock:
                self._jobs.pop(job, None)
            if child is not None and not finished and child.alive:
                try:
                    child.send(("cancel", job, None))
                except OSError:
                    pass

    def _send_turn(self, job: int, request: Any, loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue) -> _Child:
        """Hand the turn to the least busy child; a child whose pipe is broken is replaced once."""
        for _ in range(2):
            self.start()
            with self._lock:
                child = min(self._children, key=lambda c: len(self._jobs_of(c)))
                self._jobs[job] = (loop, inbox, child)
            try:
                child.send(("turn", job, request))
                return child
            except OSError:
                child.alive = False
        raise EngineProcessError("no engine process could take the question; ask again, and if this "
                                 "persists, look at the server log")

    def _jobs_of(self, child: _Child) -> list[int]:
        return [job for job, (_, _, owner) in self._jobs.items() if owner is child]

    def _spawn(self) -> _Child:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=serve_turns, args=(self.settings, theirs, self.workers),
                                  name="bookbot-engine", daemon=True)
        process.start()
        theirs.close()
        child = _Child(process, ours)
        threading.Thread(target=self._read, args=(child,), name="bookbot-engine-reader", daemon=True).start()
        return child

    def _read(self, child: _Child) -> None:
        while True:
            try:
                job, kind, payload = child.conn.recv()
            except (EOFError, OSError):
                break
            self._hand_over(job, kind, payload)
        child.alive = False
        try:
            child.conn.close()
        except OSError:                   # closed already, by stop() or a broken-pipe send
            pass
        child.process.join(1)
        code = child.process.exitcode
        why = "its pipe broke" if code is None else f"exit code {code}"
        error = EngineProcessError(f"the engine process stopped ({why}); ask again: the next question "
                                   "starts a new one")
        with self._lock:
            pending = self._jobs_of(child)
        for job in pending:
            self._hand_over(job, "error", error)
        if not child.stopping:
            log.warning("%s", error)

    def _hand_over(self, job: int, kind: str, payload: Any) -> None:
        entry = self._jobs.get(job)
        if entry is None:                 # the chat went away
            return
        loop, inbox, _ = entry
        try:
            loop.call_soon_threadsafe(inbox.put_nowait, (kind, payload))
        except RuntimeError:              # the event loop is closed: the server is stopping
            pass


def serve_turns(settings: Any, conn: Any, workers: int | None = None) -> None:
    """The child: answer each ("turn", job, request) on a TurnPool until the pipe closes."""
    from app.ui.services import Services

    services = Services.build(settings)
    try:
        services.library()
    except Exception as exc:  # noqa: BLE001 - the first question reports it, as in the server
        log.warning("library not opened at start-up: %s", exc)
    pool, outbox = TurnPool(workers), queue.SimpleQueue()
    cancelled: set[int] = set()
    threading.Thread(target=_send_all, args=(conn, outbox), name="bookbot-engine-sender", daemon=True).start()

    def advance(job: int, turn: Any, priority: int) -> None:
        def deliver(outcome: Any, failed: bool) -> None:
            if failed or outcome is END:
                cancelled.discard(job)
                outbox.put((job, "error", _portable(outcome)) if failed else (job, "end", None))
            else:
                outbox.put((job, "event", outcome))
                advance(job, turn, next_priority(priority, outcome))

        def dropped() -> bool:
            if job in cancelled:
                cancelled.discard(job)
                return True
            return False

        pool.submit(priority, turn, deliver, dropped)

    while True:
        try:
            kind, job, payload = conn.recv()
        except (EOFError, OSError):       # the chat server went away
            return
        if kind == "turn":
            advance(job, services.run_turn(payload), NEW_TURN)
        elif kind == "cancel":
            cancelled.add(job)


def _send_all(conn: Any, outbox: queue.SimpleQueue) -> None:
    while True:
        job, kind, payload = outbox.get()
        try:
            conn.send((job, kind, payload))
        except (OSError, ValueError):      # the chat server went away
            return
        except Exception as exc:  # noqa: BLE001 - pickling fails before a byte is written
            conn.send((job, "error", RuntimeError(f"this turn's {type(payload).__name__} could not be "
                                                  f"sent to the chat server: {exc}")))


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it survives the pipe, else a RuntimeError saying what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure
        return RuntimeError(f"{type(exc).__name__}: {exc}")
