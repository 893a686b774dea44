"""The collaborators one Chainlit server process shares, built once and handed to every handler.

Owns: wiring settings → character cards (hot reload), review store, LLM
backend, book library, the engine runner (the worker threads that produce turns)
or the engine processes (``BOOKBOT_ENGINE_PROCESSES``: the same, in child processes)
and, per turn, an Engine with the character's active
tuning snapshot (verifier scorer, re-ranking retriever, exemplars) when one
exists — from the data dir's folders on one machine, from the shared database
(``SharedSnapshots``) when several instances share PostgreSQL.  No chainlit
import: the UI modules and the load benchmark use it the same way.  Nothing is
built at import time; the Chainlit entry module (``main``) builds one
``Services`` on first use and passes it to the handlers in ``actions``,
``desk`` and ``render``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator, Optional

from app.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from app.bots.backends.base import Backend
    from app.bots.cards import CardRegistry
    from app.bots.engine import Engine
    from app.evidence import SentenceVectors
    from app.library.library import Library
    from app.review.store import ReviewStore
    from app.tuning.snapshots import LoadedSnapshot
    from app.ui.engine_processes import EngineProcesses
    from app.ui.engine_runner import EngineRunner

log = logging.getLogger("bookbot.ui")


@dataclass(frozen=True)
class TurnRequest:
    """One question for the engine: what a chat server hands to a worker thread or an engine process."""
    character: Any                      # domain.Character
    question: str
    history: tuple[tuple[str, str], ...] = ()
    conversation_id: str = ""
    user_id: Optional[str] = None


@dataclass
class Services:
    settings: Settings
    cards: "CardRegistry"
    store: "ReviewStore"
    backend: "Backend"
    snapshots: Optional[Callable[[str], Optional["LoadedSnapshot"]]] = None   # None: the data dir's folders
    _library: Optional["Library"] = None
    _vectors: Optional["SentenceVectors"] = None
    _runner: Optional["EngineRunner"] = None
    _processes: Optional["EngineProcesses"] = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: Settings) -> "Services":
        from app.bots.backends import make_backend
        from app.bots.cards import load_characters
        from app.review.queue import least_grounded_first
        from app.review.store import ReviewStore
        from app.tuning.service import snapshot_priority
        from app.tuning.snapshots import SharedSnapshots

        settings.ensure_dirs()
        store = ReviewStore(settings.resolved_database_url)
        snapshots = SharedSnapshots(settings, store) if settings.shared_database else None
        # queue priority of new turns: the verifier's uncertainty once tuned
        store.priority = snapshot_priority(settings, fallback=least_grounded_first, snapshots=snapshots)
        return cls(settings=settings, cards=load_characters(settings), store=store,
                   backend=make_backend(settings), snapshots=snapshots)

    @property
    def offline(self) -> bool:
        return bool(getattr(self.backend, "offline", False))

    def library(self) -> "Library":
        with self._lock:
            if self._library is None:
                from app.library import open_library

                self._library = open_library(self.settings, warn=lambda msg: log.warning("%s", msg))
            return self._library

    def sentence_vectors(self) -> Optional["SentenceVectors"]:
        """One sentence-vector cache per process over the library's embedder (None without a model)."""
        if self._vectors is None and self.library().embedder is not None:
            from app.evidence import SentenceVectors

            self._vectors = SentenceVectors(self.library().embedder)
        return self._vectors

    def runner(self) -> "EngineRunner":
        """The worker threads that produce every turn's events (``engine_runner``)."""
        with self._lock:
            if self._runner is None:
                from app.ui.engine_runner import EngineRunner

                self._runner = EngineRunner()
            return self._runner

    def engine_processes(self) -> Optional["EngineProcesses"]:
        """The engine processes of ``BOOKBOT_ENGINE_PROCESSES`` (None when turns run in threads here)."""
        if self.settings.resolved_engine_processes <= 0:
            return None
        with self._lock:
            if self._processes is None:
                from app.ui.engine_processes import EngineProcesses

                self._processes = EngineProcesses(self.settings, self.settings.resolved_engine_processes)
            return self._processes

    def turn_events(self, request: TurnRequest) -> AsyncIterator[Any]:
        """A turn's events on the event loop, computed in an engine process or a worker thread."""
        processes = self.engine_processes()
        if processes is not None:
            return processes.events(request)
        return self.runner().events(self.run_turn(request))

    def run_turn(self, request: TurnRequest) -> Iterator[Any]:
        """The engine's events for one question, with the character's active snapshot (set up lazily,
        on the worker that takes the turn's first step)."""
        engine, snapshot_id = self.engine_for(request.character.id)
        yield from engine.run(request.character, request.question, list(request.history),
                              conversation_id=request.conversation_id, user_id=request.user_id,
                              snapshot_id=snapshot_id)

    def engine_for(self, character_id: str) -> tuple["Engine", str | None]:
        """An Engine for one character (its active tuning snapshot applied) and the snapshot id."""
        from app.bots.engine import Engine
        from app.tuning.snapshots import tuned_parts

        retriever, scorer, exemplars, snapshot_id = tuned_parts(
            self.settings, character_id, self.library().retriever(), warn=lambda msg: log.warning("%s", msg),
            snapshots=self.snapshots)
        engine = Engine(retriever, self.backend, sink=self.store, scorer=scorer, exemplars=exemplars,
                        candidates=self.settings.candidates_per_step, top_k=self.settings.top_k,
                        vectors=self.sentence_vectors())
        return engine, snapshot_id


_services: Services | None = None
_services_lock = threading.Lock()


def get_services(settings: Settings | None = None) -> Services:
    """The process-wide Services, built on first call from ``Settings()`` (BOOKBOT_* env).
    Only the Chainlit entry module calls it; handlers receive the Services it returns."""
    global _services
    with _services_lock:
        if _services is None:
            _services = Services.build(settings or Settings())
        return _services


def reset_services() -> None:
    global _services
    with _services_lock:
        _services = None
