"""Sentence evidence: how well each sentence of a step's excerpts answers the question, without ids.

A `SentencePool` holds the sentences of the excerpts retrieved for one step
and scores each against the question (and the step's own intent) with
features that mean the same in any book: idf-weighted coverage of the
question's terms in the sentence and in a two-sentence window, question
bigrams found in order, the cosine of question and sentence in the
embedder's space (when one is passed in), the excerpt's fused/BM25/dense
scores relative to the pool, and each value's margin to the pool's best.
No feature reads an excerpt id or a word list of a particular book, so a
verifier trained on one set of stories applies to any other.

`relevance` is the fixed, untrained combination the offline backend ranks
sentences by and the answer's conclusion is chosen with; its weights were
chosen by cross-validation over FairytaleQA *train* stories.  Sentence
vectors go through a `SentenceVectors` cache (passed in, shared by the
engine and the offline backend) so a sentence is embedded once per process.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from app.analyzer import is_korean, normalize, split_sentences, terms
from app.domain import Excerpt

MIN_WORDS = 3
EMBED_LIMIT = 6           # sentences per step whose meaning is compared; the rest rank below on words (train: same R@1 as all)
# untrained relevance: weights chosen on FairytaleQA train stories (docs/tuning.md); coverage counts
# squared, so one shared word out of four ("small") weighs little against a sentence that means the answer
RELEVANCE_WEIGHTS = {"cov": 1.0, "cov_win": 0.35, "bigrams": 0.1, "cos_q": 0.8, "cos_step": 0.2,
                     "excerpt_fused": 0.55, "excerpt_cov": 0.35}
SQUARED = frozenset({"cov", "cov_win", "excerpt_cov"})
MARGIN_KEYS = ("cov", "cov_win", "cos_q", "excerpt_cov", "relevance")


def relevance(features: dict[str, float], *, meaning: bool = True) -> float:
    """The untrained relevance of a sentence from its features (``meaning=False``: words only)."""
    total = 0.0
    for key, weight in RELEVANCE_WEIGHTS.items():
        if not meaning and key.startswith("cos"):
            continue
        value = features.get(key, 0.0)
        total += weight * (value * value if key in SQUARED else value)
    return total


class SentenceVectors:
    """Unit vectors of sentences and queries, cached by text (LRU); thread-safe."""

    def __init__(self, embedder, capacity: int = 50_000) -> None:
        self.embedder = embedder
        self.capacity = capacity
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        with self._lock:
            found = {t: self._cache.get(t) for t in texts}
        missing = [t for t, v in found.items() if v is None]
        if missing:
            fresh = [np.asarray(v, dtype=np.float32) for v in self.embedder.embed_long(missing)]
            found.update(zip(missing, fresh))
            with self._lock:
                self._cache.update(zip(missing, fresh))
                while len(self._cache) > self.capacity:
                    self._cache.popitem(last=False)
        return np.stack([found[t] for t in texts])

    def query(self, text: str) -> np.ndarray:
        return self.vectors([text])[0]


@dataclass
class Sentence:
    excerpt: Excerpt
    rank: int                      # the excerpt's place in retrieval order (0 = first)
    position: int                  # the sentence's place in its excerpt
    text: str
    features: dict[str, float]
    relevance: float = 0.0


def _idf(doc_terms: Sequence[Sequence[str]]) -> dict[str, float]:
    n = len(doc_terms)
    df: dict[str, int] = {}
    for t in doc_terms:
        for term in set(t):
            df[term] = df.get(term, 0) + 1
    return {term: math.log(1.0 + (n + 1) / (count + 0.5)) for term, count in df.items()}


def _coverage(q_terms: set[str], text_terms: set[str], idf: dict[str, float], default: float) -> float:
    total = sum(idf.get(t, default) for t in sorted(q_terms))
    return sum(idf.get(t, default) for t in sorted(q_terms & text_terms)) / total if total else 0.0


class SentencePool:
    """The scored sentences of one step's excerpts (retrieval order kept)."""

    def __init__(self, question: str, excerpts: Sequence[Excerpt], *, step_text: str = "",
                 vectors: SentenceVectors | None = None) -> None:
        self.question = question
        self.excerpts = list(excerpts)
        q_list = terms(question)
        self.q_terms = set(q_list)
        self.q_bigrams = set(zip(q_list, q_list[1:]))
        self.sentences: list[Sentence] = []
        raw: list[tuple[int, int, Excerpt, str]] = []
        for rank, ex in enumerate(self.excerpts):
            sents = split_sentences(ex.text)
            kept = [s for s in sents if len(s.split()) >= MIN_WORDS or is_korean(s)] or sents[:1]
            raw += [(rank, pos, ex, s) for pos, s in enumerate(kept)]
        sent_terms = [terms(s) for *_, s in raw]
        idf = _idf(sent_terms + [terms(e.text) for e in self.excerpts])
        default = math.log(1.0 + (len(sent_terms) + 1) / 0.5)
        self._idf, self._default = idf, default
        self._vectors = vectors
        self._step_text = step_text
        self._best: dict[str, float] = {}
        ex_stats = self._ex_stats = self._excerpt_stats()
        for i, ((rank, pos, ex, text), t) in enumerate(zip(raw, sent_terms)):
            nxt = sent_terms[i + 1] if i + 1 < len(raw) and raw[i + 1][0] == rank else []
            tset = set(t)
            f = {"cov": _coverage(self.q_terms, tset, idf, default),
                 "cov_win": _coverage(self.q_terms, tset | set(nxt), idf, default),
                 "bigrams": float(len(self.q_bigrams & set(zip(t, t[1:])))),
                 "cos_q": 0.0, "cos_step": 0.0,
                 "position": 1.0 / (1 + pos), "log_words": math.log1p(len(text.split())),
                 **ex_stats[rank]}
            self.sentences.append(Sentence(ex, rank, pos, text, f))
        if vectors is not None and self.sentences:
            self._add_cosines(vectors, question, step_text)
        self._add_margins()

    def _add_cosines(self, vectors: SentenceVectors, question: str, step_text: str) -> None:
        """Cosines for the ``EMBED_LIMIT`` sentences the words rank highest (a sentence the words
        rank lower is not chosen on meaning alone); the others get the lowest cosine measured."""
        lexical = sorted(self.sentences, key=lambda s: -relevance(s.features, meaning=False))
        chosen = lexical[:EMBED_LIMIT]
        mat = vectors.vectors([s.text for s in chosen])
        for key, text in (("cos_q", question), ("cos_step", step_text)):
            if not text.strip():
                continue
            cos = mat @ vectors.query(text)
            for sent, value in zip(chosen, cos):
                sent.features[key] = float(value)
            floor = float(cos.min())
            for sent in lexical[EMBED_LIMIT:]:
                sent.features[key] = floor

    def _excerpt_stats(self) -> list[dict[str, float]]:
        scores = [e.scores for e in self.excerpts]
        max_fused = max((s.fused for s in scores if s), default=0.0) or 1.0
        max_bm25 = max((s.bm25 or 0.0 for s in scores if s), default=0.0) or 1.0
        max_dense = max((s.dense for s in scores if s and s.dense is not None), default=0.0)
        out = []
        for rank, (ex, s) in enumerate(zip(self.excerpts, scores)):
            out.append({"excerpt_fused": (s.fused / max_fused) if s else 0.0,
                        "excerpt_bm25": ((s.bm25 or 0.0) / max_bm25) if s else 0.0,
                        "excerpt_dense_gap": (s.dense - max_dense) if s and s.dense is not None else -1.0,
                        "excerpt_rank": 1.0 / (1 + rank),
                        "excerpt_cov": _coverage(self.q_terms, set(terms(ex.text)), self._idf, self._default)})
        return out

    def _add_margins(self) -> None:
        if not self.sentences:
            return
        for s in self.sentences:
            s.relevance = s.features["relevance"] = relevance(s.features)
        self._best = {key: max(s.features[key] for s in self.sentences) for key in MARGIN_KEYS}
        for place, s in enumerate(sorted(self.sentences, key=lambda s: -s.relevance)):
            self._relate(s.features)
            s.features["relevance_rank"] = 1.0 / (1 + place)

    def _relate(self, f: dict[str, float]) -> None:
        """Margins of a feature dict to the pool's best sentence (0 for the best itself)."""
        for key in MARGIN_KEYS:
            f[f"{key}_margin"] = f.get(key, 0.0) - self._best.get(key, f.get(key, 0.0))

    def ranked(self) -> list[Sentence]:
        """Sentences, most relevant first (ties: retrieval order, then position)."""
        return sorted(self.sentences, key=lambda s: (-s.relevance, s.rank, s.position))

    def find(self, excerpt_id: str, quote: str) -> Sentence | None:
        """The pool sentence a quote from ``excerpt_id`` comes from (or lies in)."""
        q = normalize(quote).strip(" \"'.,;:!?")
        if not q:
            return None
        best = None
        for s in self.sentences:
            if s.excerpt.id != excerpt_id:
                continue
            text = normalize(s.text)
            if q in text or text.strip(" \"'.,;:!?") in q:
                if best is None or len(s.text) < len(best.text):
                    best = s
        return best

    def quote_features(self, excerpt_id: str, quote: str) -> dict[str, float]:
        """Features of a cited (excerpt, quote); a quote that is no pool sentence is scored as it is."""
        found = self.find(excerpt_id, quote)
        if found is not None:
            return dict(found.features)
        ex_rank = next((r for r, e in enumerate(self.excerpts) if e.id == excerpt_id), None)
        if ex_rank is None:
            return {}
        t = terms(quote)
        f = {"cov": _coverage(self.q_terms, set(t), self._idf, self._default),
             "bigrams": float(len(self.q_bigrams & set(zip(t, t[1:])))),
             "log_words": math.log1p(len(quote.split())), **self._ex_stats[ex_rank]}
        f["cov_win"] = f["cov"]
        if self._vectors is not None:
            v = self._vectors.vectors([quote])[0]
            f["cos_q"] = float(v @ self._vectors.query(self.question))
            if self._step_text.strip():
                f["cos_step"] = float(v @ self._vectors.query(self._step_text))
        f["relevance"] = relevance(f)
        self._relate(f)
        f["relevance_rank"] = 1.0 / (1 + sum(1 for s in self.sentences if s.relevance > f["relevance"]))
        return f

    def candidate_features(self, citations: Sequence[tuple[str, str]]) -> dict[str, float]:
        """``ev_*`` features of a candidate: those of its most relevant valid (excerpt id, quote)."""
        best: dict[str, float] = {}
        for excerpt_id, quote in citations:
            f = self.quote_features(excerpt_id, quote)
            if f and (not best or f.get("relevance", 0.0) > best.get("relevance", 0.0)):
                best = f
        return {f"ev_{k}": v for k, v in best.items()}
