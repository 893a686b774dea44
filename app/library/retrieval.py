"""Hybrid fusion: BM25 + dense candidate scores fused into one ranking (the math, no I/O).

Fusion (``FusionConfig``): a convex combination of per-query normalised
scores — BM25 divided by the query's best BM25 score, cosine similarity
min-max scaled over the candidates — weighted towards BM25, over the union of
both top-``candidates`` lists (each candidate gets both scores).  Plain
reciprocal-rank fusion is kept as ``method="rrf"`` for comparison.  Weights
were chosen on FairytaleQA *train* (``bookbot eval retrieval --tune``) and
are measured on *val* (docs/library.md).

``Pools`` holds one query's candidates from both lists (each candidate with
both scores); ``Pools.fuse(config)`` ranks them under any fusion config,
so the evaluation and the tuning grid score many configs from one search.
The LlamaIndex retriever that gathers the pools is ``app.library.retrievers``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.domain import RetrievalScores


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


@dataclass
class Pools:
    """One query's candidates: both top-n lists (ranks) and both scores of every candidate."""
    bm25: dict[str, float] = field(default_factory=dict)
    dense: dict[str, float] | None = None
    bm25_rank: dict[str, int] = field(default_factory=dict)
    dense_rank: dict[str, int] = field(default_factory=dict)

    def restrict(self, candidates: int) -> "Pools":
        """The pools a search with ``candidates`` per list would have gathered (scores are exact)."""
        bm25_rank = {i: r for i, r in self.bm25_rank.items() if r <= candidates}
        dense_rank = {i: r for i, r in self.dense_rank.items() if r <= candidates}
        keep = list(dict.fromkeys([*sorted(bm25_rank, key=bm25_rank.get),
                                   *sorted(dense_rank, key=dense_rank.get)]))
        dense = None if self.dense is None else {i: self.dense[i] for i in keep if i in self.dense}
        return Pools({i: self.bm25.get(i, 0.0) for i in keep}, dense, bm25_rank, dense_rank)

    def fuse(self, config: FusionConfig = DEFAULT_FUSION) -> list[Scored]:
        pools = self.restrict(config.candidates)
        return fuse(pools.bm25, pools.dense, bm25_rank=pools.bm25_rank, dense_rank=pools.dense_rank,
                    config=config)
