"""The real reasoning engine (offline extractive backend, a real character card) writes its
turns into the real review store; the turn comes back whole and enters the review queue."""

from __future__ import annotations

from typing import Sequence

from app.domain import Excerpt, Location, Review, ReviewKind, ReviewSource, Role

TEXTS = [
    "It is a capital mistake to theorize before you have all the evidence. It biases the judgment.",
    "When you have eliminated the impossible, whatever remains, however improbable, must be the truth.",
    "You have been in Afghanistan, I perceive, said Holmes to the doctor with the tanned face.",
    "The dog did nothing in the night-time. That was the curious incident, said Sherlock Holmes.",
]


class ListRetriever:
    """Word-overlap retrieval over a fixed list (the library's index is not this test's subject)."""

    def __init__(self, book_id: str) -> None:
        self.excerpts = [Excerpt(id=f"x{i}", book_id=book_id, text=t, book_title="Holmes",
                                 location=Location(book_id, 1, "One", i + 1, i + 1)) for i, t in enumerate(TEXTS)]

    def retrieve(self, query: str, *, top_k: int = 5, book_ids: Sequence[str] | None = None) -> list[Excerpt]:
        words = set(query.lower().split())
        return sorted(self.excerpts, key=lambda e: -len(words & set(e.text.lower().split())))[:top_k]

    def get(self, excerpt_id: str) -> Excerpt | None:
        return next((e for e in self.excerpts if e.id == excerpt_id), None)


def test_engine_turns_land_in_the_store(sqlite_store, settings) -> None:  # noqa: ANN001
    from app.bots.backends.extractive import ExtractiveBackend
    from app.bots.cards import load_characters
    from app.bots.engine import Engine

    registry = load_characters(settings)
    holmes = next(c for c in registry.all() if "holmes" in c.id)
    engine = Engine(ListRetriever(holmes.book_ids[0]), ExtractiveBackend(), sink=sqlite_store, candidates=2)
    turn = engine.answer(holmes, "What is the curious incident of the dog?", conversation_id="thread-1",
                         user_id="rob")
    stored = sqlite_store.get_turn(turn.id)
    assert stored is not None and stored.conversation_id == "thread-1" and stored.user_id == "rob"
    assert [s.id for s in stored.steps] == [s.id for s in turn.steps]          # the path as taken (Holmes's graph)
    assert [(s.index, s.visit, s.via) for s in stored.steps] == [(s.index, s.visit, s.via) for s in turn.steps]
    for a, b in zip(stored.steps, turn.steps):
        assert (a.text, a.grounded, a.citations) == (b.text, b.grounded, b.citations)
        assert [c.features for c in a.candidates] == [c.features for c in b.candidates]
        assert [e.id for e in a.excerpts] == [e.id for e in b.excerpts]
    (item,) = sqlite_store.queue(reviewer="edith")
    assert item.turn_id == turn.id and item.steps_total == len(turn.steps)
    first = turn.steps[0]
    sqlite_store.record_review(Review(step_id=first.id, reviewer="edith", kind=ReviewKind.editor, rating=-1,
                                      correction="The dog's silence, not its bark, is the clue."), Role.editor)
    later = [r for s in turn.steps[1:] for r in sqlite_store.reviews_for_step(s.id)]
    assert len(later) == len(turn.steps) - 1 and all(r.source is ReviewSource.inferred for r in later)
    assert sqlite_store.queue(reviewer="edith") == []
