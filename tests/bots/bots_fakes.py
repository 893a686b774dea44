"""In-memory fakes for the bots tests (imported by conftest and tests as ``bots_fakes``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from app.bots.grounding import tokens
from app.domain import Excerpt, Location, RetrievalScores


class FakeRetriever:
    """Token-overlap retrieval over a fixed list of excerpts; records every query."""

    def __init__(self, excerpts: Sequence[Excerpt]):
        self.excerpts = list(excerpts)
        self.queries: list[tuple[str, int, tuple[str, ...] | None]] = []

    def retrieve(self, query: str, *, top_k: int = 5, book_ids: Sequence[str] | None = None) -> list[Excerpt]:
        self.queries.append((query, top_k, tuple(book_ids) if book_ids is not None else None))
        q = set(tokens(query))
        scored = []
        for i, e in enumerate(self.excerpts):
            if book_ids is not None and e.book_id not in book_ids:
                continue
            overlap = len(q & set(tokens(e.text)))
            scored.append((overlap, -i, e))
        scored.sort(key=lambda t: (t[0], t[1]), reverse=True)
        out = []
        for rank, (overlap, _, e) in enumerate(scored[:top_k], start=1):
            out.append(replace(e, scores=RetrievalScores(bm25=float(overlap), fused=1.0 / (60 + rank),
                                                         bm25_rank=rank)))
        return out

    def get(self, excerpt_id: str) -> Excerpt | None:
        return next((e for e in self.excerpts if e.id == excerpt_id), None)


def make_excerpt(eid: str, text: str, book_id: str = "gutenberg-244", chapter: int = 1,
                 title: str = "A Study in Scarlet") -> Excerpt:
    return Excerpt(id=eid, book_id=book_id, text=text, book_title=title,
                   location=Location(book_id, chapter, f"Chapter {chapter}", 1, 2))


HOLMES_TEXTS = [
    ("e1", "You have been in Afghanistan, I perceive. I knew you came from Afghanistan because the train "
           "of thoughts ran so swiftly through my mind."),
    ("e2", "Here is a gentleman of a medical type, but with the air of a military man. Clearly an army "
           "doctor, then. He has just come from the tropics, for his face is dark."),
    ("e3", "It is a capital mistake to theorize before you have all the evidence. It biases the judgment."),
    ("e4", "When you have eliminated the impossible, whatever remains, however improbable, must be the "
           "truth."),
    ("e5", "The dog did nothing in the night-time. That was the curious incident, said Sherlock Holmes."),
    ("e6", "Alice was beginning to get very tired of sitting by her sister on the bank."),
]
