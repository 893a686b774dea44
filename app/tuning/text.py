"""Small text helpers the tuning models share: overlap, idf, similarity and token F1.

Words and terms come from ``app.analyzer`` (the one analyzer BM25, grounding and
the offline backend use), so features computed at training and answer time match.
"""

from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache
from typing import Iterable, Sequence

from app.analyzer import terms
from app.analyzer import terms as content_tokens, words as tokens  # the names tuning code reads

__all__ = ["content_tokens", "tokens", "overlap", "bigram_overlap", "idf_table", "idf_for_texts",
           "weighted_overlap", "cosine", "token_f1", "rouge_l"]


def overlap(query_terms: Sequence[str], text_terms: Iterable[str]) -> float:
    """Share of distinct query terms that occur in the text (0 when the query is empty)."""
    q = set(query_terms)
    if not q:
        return 0.0
    t = set(text_terms)
    return len(q & t) / len(q)


def bigram_overlap(query_terms: Sequence[str], text_terms: Sequence[str]) -> float:
    q = set(zip(query_terms, query_terms[1:]))
    if not q:
        return 0.0
    t = set(zip(text_terms, text_terms[1:]))
    return len(q & t) / len(q)


def idf_table(documents: Iterable[Sequence[str]]) -> dict[str, float]:
    docs = [set(d) for d in documents]
    n = len(docs)
    df: Counter[str] = Counter()
    for d in docs:
        df.update(d)
    return {term: math.log((n + 1) / (count + 0.5)) for term, count in df.items()}


@lru_cache(maxsize=1024)
def idf_for_texts(texts: tuple[str, ...]) -> dict[str, float]:
    """idf over a pool of texts, cached: a step's candidates all share one retrieved pool."""
    return idf_table(terms(t) for t in texts)


def weighted_overlap(query_terms: Sequence[str], text_terms: Iterable[str],
                     idf: dict[str, float], default_idf: float) -> float:
    q = set(query_terms)
    if not q:
        return 0.0
    t = set(text_terms)
    # summed in sorted order: set order follows the per-process string hash, and float sums
    # in a different order can flip near-ties between candidates from one run to the next
    total = sum(idf.get(term, default_idf) for term in sorted(q))
    hit = sum(idf.get(term, default_idf) for term in sorted(q & t))
    return hit / total if total > 0 else 0.0


def cosine(a: Counter[str], b: Counter[str]) -> float:
    if not a or not b:
        return 0.0
    dot = sum(v * b.get(k, 0.0) for k, v in a.items())
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    return dot / (na * nb) if na and nb else 0.0


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD-style token F1 (lower-cased word tokens, articles and punctuation ignored)."""
    p = [t for t in tokens(prediction) if t not in {"a", "an", "the"}]
    g = [t for t in tokens(gold) if t not in {"a", "an", "the"}]
    if not p or not g:
        return float(p == g)
    common = Counter(p) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, gold: str) -> float:
    """ROUGE-L F1 (longest common subsequence of lower-cased word tokens), as FairytaleQA reports it."""
    p, g = tokens(prediction), tokens(gold)
    if not p or not g:
        return 0.0
    prev = [0] * (len(g) + 1)
    for a in p:
        cur = [0]
        for j, b in enumerate(g, start=1):
            cur.append(prev[j - 1] + 1 if a == b else max(prev[j], cur[j - 1]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(g)
    return 2 * precision * recall / (precision + recall)
