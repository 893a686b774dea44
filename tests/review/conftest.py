"""Review-store fixtures: a migrated database on SQLite (tmp file) and on the real PostgreSQL
server at 127.0.0.1:5432 (each test gets its own database, dropped afterwards), and a
factory for realistic turns."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Callable

import pytest

from app.domain import Candidate, Citation, Excerpt, Location, RetrievalScores, Step, Turn
from app.review import db

@pytest.fixture()
def sqlite_url(tmp_path) -> str:  # noqa: ANN001
    return f"sqlite:///{tmp_path / 'data' / 'bookbot.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def blank_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture()
def store_url(blank_url: str) -> str:
    db.upgrade(blank_url)
    return blank_url


@pytest.fixture()
def store(store_url: str):  # noqa: ANN201
    from app.review.store import ReviewStore

    s = ReviewStore(store_url)
    yield s
    s.close()


@pytest.fixture()
def sqlite_store(sqlite_url: str):  # noqa: ANN201
    from app.review.store import ReviewStore

    db.upgrade(sqlite_url)
    s = ReviewStore(sqlite_url)
    yield s
    s.close()


STEP_NAMES = ("Observe", "Deduce", "Conclude")


def make_turn(*, character: str = "holmes", question: str = "Who stole the letter?",
              grounded: tuple[bool, ...] = (True, True, True), created_at: datetime | None = None,
              conversation_id: str | None = None, candidates: int = 2, answer: str = "It was the minister.",
              ) -> Turn:
    turn_id = uuid.uuid4().hex
    steps = []
    for i, g in enumerate(grounded):
        ex = Excerpt(id=f"ex-{i}", book_id="gutenberg-1661", text=f"Excerpt text number {i} about the letter.",
                     location=Location("gutenberg-1661", 1, "A Scandal in Bohemia", i + 1, i + 2),
                     scores=RetrievalScores(dense=0.5, bm25=3.2, fused=0.03, dense_rank=1, bm25_rank=2),
                     book_title="The Adventures of Sherlock Holmes")
        cite = Citation(excerpt_id=ex.id, quote="about the letter", valid=g,
                        problem="" if g else "quote not in excerpt")
        cands = [Candidate(text=f"{STEP_NAMES[i % 3]} candidate {c} of {question}", citations=[cite],
                           score=0.9 - 0.1 * c, chosen=c == 0, features={"valid_citations": float(g), "len": 7.0})
                 for c in range(candidates)]
        steps.append(Step(id=f"{turn_id}-s{i}", turn_id=turn_id, index=i, name=STEP_NAMES[i % 3],
                          text=cands[0].text if cands else f"step {i}", citations=[cite], excerpts=[ex],
                          candidates=cands, score=0.9 if g else 0.1, grounded=g, retrieval_ms=12.5,
                          generation_ms=40.0))
    return Turn(id=turn_id, conversation_id=conversation_id or uuid.uuid4().hex, character_id=character,
                question=question, steps=steps, answer=answer, backend="offline",
                created_at=created_at or datetime.now(timezone.utc), user_id="reader1")


@pytest.fixture()
def turn_factory() -> Callable[..., Turn]:
    return make_turn


def minutes_ago(n: int) -> datetime:
    return datetime.now(timezone.utc) - timedelta(minutes=n)


@pytest.fixture()
def ago() -> Callable[[int], datetime]:
    return minutes_ago
