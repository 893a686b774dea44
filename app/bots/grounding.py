"""Citation validation and the grounding features/score of a candidate step.

Owns: quote matching (in ``app.analyzer``'s normal form, fragments split at
ellipses), ``validate_citations`` (excerpt id must be among those
retrieved for this step, the quote must occur in that excerpt),
``candidate_features`` (numbers the tuning verifier trains on; stored in
``Candidate.features``) and ``GroundingScorer``, the default StepScorer.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

from app.analyzer import normalize, terms as tokens
from app.domain import Candidate, Citation, Excerpt, ProcedureStep

MIN_QUOTE_CHARS = 4
_ELLIPSIS = re.compile(r"\s*(?:\.\s*\.\s*\.|\u2026|\[\.\.\.\])\s*")


def _strip_quote(quote: str) -> str:
    q = normalize(quote)
    return q.strip(" \"'`.,;:!?")


def quote_in_text(quote: str, text: str) -> bool:
    """True when the quote (fragments split at ellipses, in order) occurs in text."""
    q = _strip_quote(quote)
    if len(q.replace(" ", "")) < MIN_QUOTE_CHARS:
        return False
    hay = normalize(text)
    pos = 0
    for fragment in _ELLIPSIS.split(q):
        fragment = fragment.strip(" \"'`.,;:!?")
        if not fragment:
            continue
        found = hay.find(fragment, pos)
        if found < 0:
            return False
        pos = found + len(fragment)
    return True


def validate_citations(citations: Sequence[Citation], excerpts: Sequence[Excerpt]) -> list[Citation]:
    """Return the citations with ``valid``/``problem`` set against this step's excerpts."""
    by_id = {e.id: e for e in excerpts}
    out: list[Citation] = []
    seen: set[tuple[str, str]] = set()
    for c in citations:
        key = (c.excerpt_id, normalize(c.quote))
        if key in seen:
            continue
        seen.add(key)
        excerpt = by_id.get(c.excerpt_id)
        if excerpt is None:
            problem = "unknown excerpt: not among those retrieved for this step"
        elif not _strip_quote(c.quote):
            problem = "no quote given"
        elif len(_strip_quote(c.quote).replace(" ", "")) < MIN_QUOTE_CHARS:
            problem = "quote too short to check"
        elif not quote_in_text(c.quote, excerpt.text):
            problem = "quote not in excerpt"
        else:
            problem = ""
        out.append(Citation(excerpt_id=c.excerpt_id, quote=c.quote.strip(), valid=not problem,
                            problem=problem))
    return out


# ------------------------------------------------------------------ features

def candidate_features(candidate: Candidate, excerpts: Sequence[Excerpt]) -> dict[str, float]:
    """Features of one (validated) candidate against the excerpts retrieved for its step.

    ``excerpts`` are in retrieval order; every value is a float, 0 when undefined.
    """
    rank = {e.id: i + 1 for i, e in enumerate(excerpts)}
    by_id = {e.id: e for e in excerpts}
    valid = [c for c in candidate.citations if c.valid]
    cited = [by_id[c.excerpt_id] for c in valid if c.excerpt_id in by_id]
    cited_unique = list({e.id: e for e in cited}.values())
    text_tokens = tokens(candidate.text)
    text_set = set(text_tokens)
    cited_tokens: set[str] = set()
    for e in cited_unique:
        cited_tokens.update(tokens(e.text))
    quote_tokens: set[str] = set()
    for c in valid:
        quote_tokens.update(tokens(c.quote))
    n_cit = len(candidate.citations)
    ranks = [rank[e.id] for e in cited_unique]
    fused = [e.scores.fused for e in cited_unique if e.scores]
    dense = [e.scores.dense for e in cited_unique if e.scores and e.scores.dense is not None]
    bm25 = [e.scores.bm25 for e in cited_unique if e.scores and e.scores.bm25 is not None]
    return {
        "n_citations": float(n_cit),
        "n_valid_citations": float(len(valid)),
        "valid_fraction": len(valid) / n_cit if n_cit else 0.0,
        "n_cited_excerpts": float(len(cited_unique)),
        "grounded": 1.0 if valid else 0.0,
        "quote_coverage": len(text_set & quote_tokens) / len(text_set) if text_set else 0.0,
        "token_overlap": len(text_set & cited_tokens) / len(text_set) if text_set else 0.0,
        "quote_chars": float(sum(len(c.quote) for c in valid)),
        "text_tokens": float(len(text_tokens)),
        "log_text_tokens": math.log1p(len(text_tokens)),
        "best_cited_rank_recip": 1.0 / min(ranks) if ranks else 0.0,
        "mean_cited_rank_recip": sum(1.0 / r for r in ranks) / len(ranks) if ranks else 0.0,
        "max_cited_fused": max(fused) if fused else 0.0,
        "max_cited_dense": max(dense) if dense else 0.0,
        "max_cited_bm25": max(bm25) if bm25 else 0.0,
        "n_retrieved": float(len(excerpts)),
    }


def grounding_score(features: dict[str, float]) -> float:
    """0..2.6; every grounded candidate outranks every ungrounded one."""
    if not features.get("grounded"):
        return 0.1 * min(features.get("token_overlap", 0.0), 1.0)
    return (1.0
            + 0.35 * features.get("valid_fraction", 0.0)
            + 0.30 * min(features.get("token_overlap", 0.0), 1.0)
            + 0.20 * features.get("best_cited_rank_recip", 0.0)
            + 0.15 * min(2.0 * features.get("quote_coverage", 0.0), 1.0)
            + 0.60 * features.get("ev_relevance_rank", 0.0))     # how well the quote answers (app.evidence)


class GroundingScorer:
    """Default StepScorer: how well a candidate stands on the excerpts it cites."""

    name = "grounding"
    score_max = 2.6          # the top of `grounding_score`; a step's confidence is score / score_max

    def score(self, *, question: str, step: ProcedureStep, step_index: int,
              candidate: Candidate, excerpts: Sequence[Excerpt]) -> float:
        features = candidate.features or candidate_features(candidate, excerpts)
        return grounding_score(features)

    @classmethod
    def confidence(cls, score: float) -> float:
        """The score on the 0..1 scale cards' transition thresholds are written in."""
        return max(0.0, min(1.0, float(score) / cls.score_max))
