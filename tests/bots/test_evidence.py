"""Sentence evidence (app/evidence.py) and what the offline answer does with it, with the real MiniLM."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.bots.backends import ExtractiveBackend
from app.bots.backends.extractive import conclusion
from app.bots.engine import Engine
from app.domain import Excerpt, Location, RetrievalScores
from app.evidence import SentencePool, SentenceVectors

from bots_fakes import FakeRetriever


@pytest.fixture(scope="module")
def vectors(model_dir):
    from app.library.embedder import load_embedder

    embedder, warning = load_embedder(model_dir)
    assert embedder is not None, warning
    return SentenceVectors(embedder)


def _excerpt(i: int, text: str, fused: float) -> Excerpt:
    return Excerpt(id=f"tm#{i}", book_id="tm", text=text, book_title="The Time Machine",
                   location=Location("tm", 1, "One", i, i), scores=RetrievalScores(bm25=fused, fused=fused))


# The question a new user asked of a novel nobody here tuned on: the right passage says what
# the people are like without the word "small"; the wrong one has "small" and nothing else.
SMALL_TABLE = _excerpt(1, "There was a small table near the window. A lamp stood on the small table and "
                          "the room was quiet.", 0.9)
ELOI = _excerpt(2, "They were slight, graceful creatures, no taller than a child, with pretty faces "
                   "and the manner of children at play. The sun was setting behind the hill.", 0.6)
QUESTION = "Who are the small, elegant, childlike adults?"


def test_a_quote_sharing_one_word_is_not_chosen_over_one_that_answers(vectors):
    pool = SentencePool(QUESTION, [SMALL_TABLE, ELOI], vectors=vectors)
    best = pool.ranked()[0]
    assert best.excerpt.id == "tm#2" and best.text.startswith("They were slight, graceful creatures")
    words_only = SentencePool(QUESTION, [SMALL_TABLE, ELOI])          # without meaning, "small" wins
    assert words_only.ranked()[0].excerpt.id == "tm#1"
    features = pool.candidate_features([("tm#2", best.text)])
    assert features["ev_relevance_rank"] == 1.0 and features["ev_cos_q"] > 0.3
    assert not any("tm#" in k for k in features)                     # features carry no ids


def test_sentence_vectors_are_computed_once(vectors):
    class Counting:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def embed_long(self, texts):
            self.calls += len(texts)
            return self.inner.embed_long(texts)

    counting = Counting(vectors.embedder)
    cache = SentenceVectors(counting, capacity=3)
    cache.vectors(["a b c", "d e f", "a b c"])
    cache.vectors(["a b c"])
    assert counting.calls == 2
    cache.vectors(["g h", "i j", "k l"])                             # over capacity: oldest evicted
    cache.vectors(["a b c"])
    assert counting.calls == 6


def test_offline_answer_concludes_with_the_best_supported_quote(holmes, vectors):
    teller = replace(holmes, id="storyteller", book_ids=("tm",), templates={})
    retriever = FakeRetriever([SMALL_TABLE, ELOI])
    assert retriever.retrieve(QUESTION)[0].id == "tm#1"            # retrieval alone puts "small" first
    turn = Engine(retriever, ExtractiveBackend(), candidates=2, vectors=vectors).answer(teller, QUESTION)
    cited = [s.citations[0].excerpt_id for s in turn.steps if s.citations]
    assert cited[:2] == ["tm#2", "tm#1"]        # the answer first; the next step cites another passage
    assert conclusion(QUESTION, turn.steps).startswith("They were slight, graceful creatures")
    assert turn.answer.startswith("\u201cThey were slight, graceful creatures")
