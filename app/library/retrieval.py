"""Hybrid retrieval: BM25 + dense scores fused into one ranking, and in-memory section indexes.

Fusion (``FusionConfig``): a convex combination of per-query normalised
scores — BM25 divided by the query's best BM25 score, cosine similarity
min-max scaled over the candidates — weighted towards BM25, over the union of
both top-``candidates`` lists (each candidate gets both scores).  Plain
reciprocal-rank fusion is kept as ``method="rrf"`` for comparison.  Weights
were chosen on FairytaleQA *train* (``bookbot eval retrieval --tune``) and
are measured on *val* (docs/readme/library.md).

``build_section_index(sections, language, embedder)`` builds a throw-away
in-memory index over given (id, text) sections — one excerpt per section,
ids as given — used by the FairytaleQA evaluations.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from app.domain import Excerpt, Location, RetrievalScores
from app.library.bm25 import BM25Index


@dataclass(frozen=True)
class FusionConfig:
    method: str = "convex"        # "convex" | "rrf" | "bm25" | "dense"
    bm25_weight: float = 0.6      # convex: weight of normalised BM25; tuned on FairytaleQA train (40 stories)
    candidates: int = 50          # taken from each list before fusing
    rrf_k: int = 60


DEFAULT_FUSION = FusionConfig()


@dataclass
class Scored:
    id: str
    scores: RetrievalScores



def fuse(bm25: dict[str, float], dense: dict[str, float] | None, *, bm25_rank: dict[str, int],
         dense_rank: dict[str, int], config: FusionConfig = DEFAULT_FUSION) -> list[Scored]:
    """Fuse candidate scores (every candidate should carry both scores when dense is on)."""
    ids = list(dict.fromkeys(list(bm25) + list(dense or {})))
    if not ids:
        return []
    method = config.method if dense is not None else "bm25"
    b = np.array([bm25.get(i, 0.0) for i in ids], dtype=np.float64)
    d = np.array([(dense or {}).get(i, np.nan) for i in ids], dtype=np.float64)
    if method == "rrf":
        fused = np.array([(1 / (config.rrf_k + bm25_rank[i]) if i in bm25_rank else 0.0)
                          + (1 / (config.rrf_k + dense_rank[i]) if i in dense_rank else 0.0) for i in ids])
    elif method == "bm25":
        fused = b
    elif method == "dense":
        fused = np.nan_to_num(d, nan=-1.0)
    else:
        nb = b / b.max() if b.max() > 0 else np.zeros_like(b)
        finite = d[~np.isnan(d)]
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        nd = np.nan_to_num((d - lo) / (hi - lo) if hi > lo else np.ones_like(d), nan=0.0)
        w = config.bm25_weight
        fused = w * nb + (1 - w) * nd
    order = np.argsort(-fused, kind="stable")
    return [Scored(ids[i], RetrievalScores(
        dense=None if dense is None or np.isnan(d[i]) else float(d[i]), bm25=float(b[i]),
        fused=float(fused[i]), dense_rank=dense_rank.get(ids[i]), bm25_rank=bm25_rank.get(ids[i])))
        for i in order]


def top_candidates(ids: Sequence[str], bm25_all: np.ndarray, dense_all: np.ndarray | None,
                   config: FusionConfig, mask: np.ndarray | None = None) -> list[Scored]:
    """Fusion when both score arrays cover every document (in-memory indexes)."""
    if mask is not None:
        keep = np.flatnonzero(mask)
        ids = [ids[i] for i in keep]
        bm25_all = bm25_all[keep]
        dense_all = dense_all[keep] if dense_all is not None else None
    if not ids:
        return []
    n = min(config.candidates, len(ids))
    b_top = np.argsort(-bm25_all, kind="stable")[:n]
    b_top = [i for i in b_top if bm25_all[i] > 0]
    bm25_rank = {ids[i]: r for r, i in enumerate(b_top, start=1)}
    dense_rank: dict[str, int] = {}
    pool = set(b_top)
    if dense_all is not None:
        d_top = np.argsort(-dense_all, kind="stable")[:n]
        dense_rank = {ids[i]: r for r, i in enumerate(d_top, start=1)}
        pool |= set(d_top.tolist())
    bm25 = {ids[i]: float(bm25_all[i]) for i in pool}
    dense = {ids[i]: float(dense_all[i]) for i in pool} if dense_all is not None else None
    return fuse(bm25, dense, bm25_rank=bm25_rank, dense_rank=dense_rank, config=config)


class SectionIndex:
    """In-memory hybrid index over given sections (one excerpt per section, ids as given)."""

    def __init__(self, excerpts: list[Excerpt], bm25: BM25Index, vectors: np.ndarray | None,
                 embedder, language: str, config: FusionConfig = DEFAULT_FUSION) -> None:
        self.excerpts = excerpts
        self._by_id = {e.id: e for e in excerpts}
        self.ids = [e.id for e in excerpts]
        self.bm25 = bm25
        self.vectors = vectors
        self.embedder = embedder
        self.language = language
        self.config = config

    def with_config(self, config: FusionConfig) -> "SectionIndex":
        return SectionIndex(self.excerpts, self.bm25, self.vectors, self.embedder, self.language, config)

    def scores(self, query: str) -> tuple[np.ndarray, np.ndarray | None]:
        bm25_all = self.bm25.scores(query)
        dense_all = None
        if self.vectors is not None and self.embedder is not None:
            dense_all = self.vectors @ self.embedder.embed_query(query)
        return bm25_all, dense_all

    def retrieve(self, query: str, *, top_k: int = 5, book_ids: Sequence[str] | None = None,
                 config: FusionConfig | None = None) -> list[Excerpt]:
        mask = None
        if book_ids:
            wanted = set(book_ids)
            mask = np.array([e.book_id in wanted for e in self.excerpts])
        bm25_all, dense_all = self.scores(query)
        ranked = top_candidates(self.ids, bm25_all, dense_all, config or self.config, mask)
        return [replace(self._by_id[s.id], scores=s.scores) for s in ranked[:top_k]]

    def get(self, excerpt_id: str) -> Excerpt | None:
        return self._by_id.get(excerpt_id)


def build_section_index(sections: Sequence[tuple[str, str]], language: str, embedder, *,
                        book_id: str = "sections", config: FusionConfig = DEFAULT_FUSION) -> SectionIndex:
    """In-memory hybrid index: one excerpt per (id, text) section, ids kept as given.

    ``embedder`` may be None (BM25 only).  Long sections are embedded whole
    (mean of window-sized pieces), never truncated.
    """
    excerpts = [Excerpt(id=str(sid), book_id=book_id, text=text,
                        location=Location(book_id, n, str(sid), 1, 1))
                for n, (sid, text) in enumerate(sections, start=1)]
    bm25 = BM25Index.build([e.id for e in excerpts], [e.text for e in excerpts])
    vectors = embedder.embed_long([e.text for e in excerpts]) if embedder is not None and excerpts else None
    return SectionIndex(excerpts, bm25, vectors, embedder, language, config)
