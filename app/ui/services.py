"""The collaborators one Chainlit server process shares, built once on first use.

Owns: wiring settings → character cards (hot reload), review store, LLM
backend, book library and, per turn, an Engine with the character's active
tuning snapshot (verifier scorer, re-ranking retriever, exemplars) when one
exists.  No chainlit import: the UI modules and the load benchmark use it the
same way.  Nothing is built at import time; ``get_services()`` builds on the
first call (the Chainlit entry module calls it inside its callbacks).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from app.settings import Settings

log = logging.getLogger("bookbot.ui")


@dataclass
class Services:
    settings: Settings
    cards: Any                      # app.bots.cards.CardRegistry
    store: Any                      # app.review.store.ReviewStore
    backend: Any                    # app.bots.backends.Backend
    _library: Any = None
    _vectors: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: Settings) -> "Services":
        from app.bots.backends import make_backend
        from app.bots.cards import load_characters
        from app.review.queue import least_grounded_first
        from app.review.store import ReviewStore
        from app.tuning.service import snapshot_priority

        settings.ensure_dirs()
        priority = snapshot_priority(settings, fallback=least_grounded_first)   # verifier uncertainty once tuned
        return cls(settings=settings, cards=load_characters(settings),
                   store=ReviewStore(settings.resolved_database_url, priority=priority),
                   backend=make_backend(settings))

    @property
    def offline(self) -> bool:
        return bool(getattr(self.backend, "offline", False))

    def library(self) -> Any:
        with self._lock:
            if self._library is None:
                from app.library import open_library

                self._library = open_library(self.settings, warn=lambda msg: log.warning("%s", msg))
            return self._library

    def sentence_vectors(self):
        """One sentence-vector cache per process over the library's embedder (None without a model)."""
        if self._vectors is None and self.library().embedder is not None:
            from app.evidence import SentenceVectors

            self._vectors = SentenceVectors(self.library().embedder)
        return self._vectors

    def engine_for(self, character_id: str) -> tuple[Any, str | None]:
        """An Engine for one character (its active tuning snapshot applied) and the snapshot id."""
        from app.bots.engine import Engine

        from app.tuning.snapshots import tuned_parts

        retriever, scorer, exemplars, snapshot_id = tuned_parts(
            self.settings, character_id, self.library().retriever(), warn=lambda msg: log.warning("%s", msg))
        engine = Engine(retriever, self.backend, sink=self.store, scorer=scorer, exemplars=exemplars,
                        candidates=self.settings.candidates_per_step, top_k=self.settings.top_k,
                        vectors=self.sentence_vectors())
        return engine, snapshot_id


_services: Services | None = None
_services_lock = threading.Lock()


def get_services(settings: Settings | None = None) -> Services:
    """The process-wide Services, built on first call from ``Settings()`` (BOOKBOT_* env)."""
    global _services
    with _services_lock:
        if _services is None:
            _services = Services.build(settings or Settings())
        return _services


def reset_services() -> None:
    global _services
    with _services_lock:
        _services = None
