"""Bridges to LlamaIndex: our ONNX embedder as a ``BaseEmbedding``; excerpts <-> ``TextNode``s.

``LlamaEmbedding`` is the only embedding model any LlamaIndex component in
Bookbot gets (passed in explicitly, never through ``Settings.embed_model``).
Two ways with texts longer than the model window:

- ``long_texts="whole"`` (the library): a long text is embedded whole as the
  mean of window-sized pieces (``embed_long``), a query through the
  embedder's low-latency single-query path (``embed_query``);
- ``long_texts="truncate"``: cut to the window, as LlamaIndex's usual local
  embedders do — what the plain LlamaIndex baselines of the evaluation and the
  ingest benchmark measure.

Excerpts travel through LlamaIndex as ``TextNode``s whose metadata carry the
book location; the retriever adds the per-candidate scores under
``SCORE_KEYS`` (excluded from what embedders and LLMs see), and
``node_excerpt`` maps a scored node back to a domain ``Excerpt``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable

from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.schema import NodeWithScore, TextNode
from pydantic import PrivateAttr

from app.domain import Excerpt, Location, RetrievalScores

SCORE_KEYS = ("score_dense", "score_bm25", "score_fused", "rank_dense", "rank_bm25")
LOCATION_KEYS = ("book_id", "chapter_number", "chapter_title", "paragraph_start", "paragraph_end")


class LlamaEmbedding(BaseEmbedding):
    """Our ONNX embedder as a LlamaIndex ``BaseEmbedding`` (see the module docstring for ``long_texts``)."""

    _embedder: Any = PrivateAttr()
    _whole: bool = PrivateAttr()
    _queries: OrderedDict = PrivateAttr()
    _lock: Any = PrivateAttr()

    _memo: int = PrivateAttr()

    def __init__(self, embedder, *, long_texts: str = "truncate", query_memo: int = 512, **kwargs: Any) -> None:
        if long_texts not in ("whole", "truncate"):
            raise ValueError("long_texts must be 'whole' or 'truncate'")
        super().__init__(model_name=f"onnx:{embedder.name}", embed_batch_size=32, **kwargs)
        self._embedder = embedder
        self._whole = long_texts == "whole"
        self._memo = max(0, int(query_memo))
        self._queries = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def class_name(cls) -> str:
        return "BookbotOnnxEmbedding"

    @property
    def embedder(self):
        return self._embedder

    def _truncate(self, text: str) -> str:
        enc = self._embedder._tokenizer.encode(text, add_special_tokens=False)
        if len(enc.ids) <= self._embedder.max_tokens:
            return text
        return text[:enc.offsets[self._embedder.max_tokens - 1][1]]

    def _embed(self, texts: list[str]) -> list[list[float]]:
        if self._whole:
            return self._embedder.embed_long(texts).tolist()
        return self._embedder.embed([self._truncate(t) for t in texts]).tolist()

    def query_vector(self, query: str):
        """The query's unit vector as numpy (the last ``query_memo`` queries are remembered: a turn's
        steps and the evaluation's several rankings of one question embed it once)."""
        with self._lock:
            vector = self._queries.get(query)
            if vector is not None:
                self._queries.move_to_end(query)
                return vector
        vector = (self._embedder.embed_query(query) if self._whole
                  else self._embedder.embed([self._truncate(query)])[0])
        if self._memo:
            with self._lock:
                self._queries[query] = vector
                if len(self._queries) > self._memo:
                    self._queries.popitem(last=False)
        return vector

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.query_vector(query).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts)


def excerpt_metadata(excerpt: Excerpt) -> dict[str, Any]:
    loc = excerpt.location
    return {"book_id": excerpt.book_id, "chapter_number": loc.chapter_number,
            "chapter_title": loc.chapter_title, "paragraph_start": loc.paragraph_start,
            "paragraph_end": loc.paragraph_end}


def excerpt_node(excerpt: Excerpt, embedding: list[float] | None = None) -> TextNode:
    meta = excerpt_metadata(excerpt)
    hidden = list(meta) + list(SCORE_KEYS)
    return TextNode(id_=excerpt.id, text=excerpt.text, metadata=meta, embedding=embedding,
                    excluded_embed_metadata_keys=hidden, excluded_llm_metadata_keys=hidden)


def scored_node(node: TextNode, scores: RetrievalScores) -> NodeWithScore:
    """A per-query copy of ``node`` carrying its retrieval scores (the stored node is not touched)."""
    meta = dict(node.metadata)
    meta.update({"score_dense": scores.dense, "score_bm25": scores.bm25, "score_fused": scores.fused,
                 "rank_dense": scores.dense_rank, "rank_bm25": scores.bm25_rank})
    hidden = sorted(set(node.excluded_embed_metadata_keys) | set(SCORE_KEYS))
    copy = node.model_copy(update={"metadata": meta, "excluded_embed_metadata_keys": hidden,
                                   "excluded_llm_metadata_keys": sorted(
                                       set(node.excluded_llm_metadata_keys) | set(SCORE_KEYS))})
    return NodeWithScore(node=copy, score=scores.fused)


def node_scores(item: NodeWithScore) -> RetrievalScores:
    meta = item.node.metadata
    fused = meta.get("score_fused")
    return RetrievalScores(dense=meta.get("score_dense"), bm25=meta.get("score_bm25"),
                           fused=float(fused if fused is not None else (item.score or 0.0)),
                           dense_rank=meta.get("rank_dense"), bm25_rank=meta.get("rank_bm25"))


def node_excerpt(item: NodeWithScore, lookup: Callable[[str], Excerpt | None] | None = None) -> Excerpt:
    """The domain ``Excerpt`` of a retrieved node, with its scores (from ``lookup`` when it knows the id)."""
    from dataclasses import replace

    known = lookup(item.node.node_id) if lookup else None
    if known is None:
        meta = item.node.metadata
        book_id = str(meta.get("book_id", ""))
        known = Excerpt(id=item.node.node_id, book_id=book_id, text=item.node.get_content(),
                        location=Location(book_id, int(meta.get("chapter_number") or 0),
                                          str(meta.get("chapter_title") or ""),
                                          int(meta.get("paragraph_start") or 0),
                                          int(meta.get("paragraph_end") or 0)))
    return replace(known, scores=node_scores(item))
