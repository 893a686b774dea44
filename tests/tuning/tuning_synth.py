"""Synthetic retrieval world for the tuning unit tests (no library, engine or store needed).

Excerpts are bags of random words; a question is a few words of its target
excerpt.  The fake hybrid retriever fuses a noisy "dense" score with an exact
word-overlap "bm25" score, weighting the noisy side more, so its top-1 is often
wrong while the overlap features know better: there is something to learn.
"""

from __future__ import annotations

import random
from typing import Sequence

from app.domain import (Candidate, Citation, Excerpt, FaultTag, Location, RetrievalScores,
                        Review, ReviewKind, ReviewSource, Step)
from app.tuning.labels import LabelledStep

VOCAB = [f"w{i}" for i in range(300)]


def make_corpus(n: int = 40, words: int = 30, seed: int = 0) -> list[Excerpt]:
    rng = random.Random(seed)
    return [Excerpt(id=f"ex{seed}-{i}", book_id="synth", text=" ".join(rng.choices(VOCAB, k=words)),
                    location=Location("synth", 1, "One", i + 1, i + 1)) for i in range(n)]


class FakeHybrid:
    def __init__(self, corpus: Sequence[Excerpt], seed: int = 0, dense_weight: float = 3.0) -> None:
        self.corpus = list(corpus)
        self.rng = random.Random(seed)
        self.dense_weight = dense_weight
        self.by_id = {e.id: e for e in corpus}

    def retrieve(self, query: str, *, top_k: int = 5, book_ids=None) -> list[Excerpt]:
        q = set(query.split())
        bm25 = {e.id: float(len(q & set(e.text.split()))) for e in self.corpus}
        dense = {e.id: 0.1 * bm25[e.id] + self.rng.random() for e in self.corpus}
        d_rank = {eid: r + 1 for r, eid in enumerate(sorted(dense, key=lambda k: -dense[k]))}
        b_rank = {eid: r + 1 for r, eid in enumerate(sorted(bm25, key=lambda k: -bm25[k]))}
        fused = {eid: self.dense_weight / (10 + d_rank[eid]) + 1.0 / (10 + b_rank[eid]) for eid in dense}
        order = sorted(self.corpus, key=lambda e: -fused[e.id])[:top_k]
        return [Excerpt(e.id, e.book_id, e.text, e.location,
                        RetrievalScores(dense=dense[e.id], bm25=bm25[e.id], fused=fused[e.id],
                                        dense_rank=d_rank[e.id], bm25_rank=b_rank[e.id]))
                for e in order]

    def get(self, excerpt_id: str) -> Excerpt | None:
        return self.by_id.get(excerpt_id)


def question_for(target: Excerpt, rng: random.Random, n: int = 4) -> str:
    return " ".join(rng.sample(target.text.split(), n))


def simulate(corpus: Sequence[Excerpt], retriever, n_questions: int, seed: int = 1,
             step_index: int = 0) -> list[LabelledStep]:
    """Each question is answered by citing the retriever's top-1; an editor rates it against the target."""
    rng = random.Random(seed)
    out = []
    for q in range(n_questions):
        target = rng.choice(corpus)
        question = question_for(target, rng)
        pool = retriever.retrieve(question, top_k=5)
        cited = pool[0]
        good = cited.id == target.id
        cand = Candidate(text=cited.text[:40], citations=[Citation(cited.id, cited.text[:20])],
                         chosen=True, features={"quote_share": 0.5})
        step = Step(id=f"s{seed}-{q}", turn_id=f"t{seed}-{q}", index=step_index, name="locate",
                    text=cand.text, citations=cand.citations, excerpts=pool, candidates=[cand])
        review = Review(step.id, "sim", ReviewKind.editor, 1 if good else -1,
                        fault_tags=() if good else (FaultTag.wrong_excerpt,))
        out.append(LabelledStep("synth", question, step, review.rating, ReviewSource.human,
                                ReviewKind.editor, review.fault_tags, "", query=question))
    return out


def recall_at_1(retriever, corpus: Sequence[Excerpt], n: int, seed: int) -> float:
    rng = random.Random(seed)
    hits = 0
    for _ in range(n):
        target = rng.choice(corpus)
        hits += retriever.retrieve(question_for(target, rng), top_k=5)[0].id == target.id
    return hits / n
