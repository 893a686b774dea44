"""Bridges to LlamaIndex: our ONNX embedder as a ``BaseEmbedding``, excerpts as ``TextNode``s.

``LlamaEmbedding`` behaves like LlamaIndex's usual local embedders: texts
longer than the model window are truncated to it (that is what the baselines
in the evaluation and the ingest benchmark measure).  The library itself never
relies on that truncation: its excerpts fit the window.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.embeddings import BaseEmbedding
from llama_index.core.schema import TextNode
from pydantic import PrivateAttr

from app.domain import Excerpt


class LlamaEmbedding(BaseEmbedding):
    _embedder: Any = PrivateAttr()

    def __init__(self, embedder, **kwargs: Any) -> None:
        super().__init__(model_name=f"onnx:{embedder.name}", embed_batch_size=32, **kwargs)
        self._embedder = embedder

    def _truncate(self, text: str) -> str:
        enc = self._embedder._tokenizer.encode(text, add_special_tokens=False)
        if len(enc.ids) <= self._embedder.max_tokens:
            return text
        return text[:enc.offsets[self._embedder.max_tokens - 1][1]]

    def _embed(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed([self._truncate(t) for t in texts]).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embed([query])[0]

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
    return TextNode(id_=excerpt.id, text=excerpt.text, metadata=meta, embedding=embedding,
                    excluded_embed_metadata_keys=list(meta), excluded_llm_metadata_keys=list(meta))
