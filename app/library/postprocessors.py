"""Node postprocessors of the library's retriever: a bridge from excerpt re-rankers to LlamaIndex.

``ExcerptRerankerPostprocessor(reranker)`` turns any object with
``rerank(query: str, excerpts: list[Excerpt]) -> list[Excerpt]`` (the tuning
snapshot's learned re-ranker, a lab member's experiment) into a LlamaIndex
``BaseNodePostprocessor``: the fused nodes become domain ``Excerpt``s with their
dense/BM25/fused scores and ranks, the re-ranker orders (and may drop) them,
and the nodes come back in that order.  Pass it to
``Library.retriever(postprocessors=[...])`` or ``build_section_index(...,
postprocessors=[...])``; the retriever hands it ``pool_factor`` x top_k
candidates and keeps the top_k it returns.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle
from pydantic import Field, PrivateAttr

from app.domain import Excerpt
from app.library.llama_adapter import node_excerpt


class ExcerptRerankerPostprocessor(BaseNodePostprocessor):
    """A LlamaIndex node postprocessor over an excerpt re-ranker (``rerank(query, excerpts)``)."""

    reranker: Any = Field(description="object with rerank(query: str, excerpts: list[Excerpt]) -> list[Excerpt]")
    top_n: Optional[int] = Field(default=None, description="keep at most this many (None: all it returns)")
    _lookup: Optional[Callable[[str], Optional[Excerpt]]] = PrivateAttr(default=None)

    def __init__(self, reranker: Any, *, top_n: int | None = None,
                 lookup: Callable[[str], Excerpt | None] | None = None, **kwargs: Any) -> None:
        if not callable(getattr(reranker, "rerank", None)):
            raise TypeError(f"{type(reranker).__name__} has no rerank(query, excerpts) method")
        super().__init__(reranker=reranker, top_n=top_n, **kwargs)
        self._lookup = lookup

    @classmethod
    def class_name(cls) -> str:
        return "ExcerptRerankerPostprocessor"

    def _postprocess_nodes(self, nodes: list[NodeWithScore],
                           query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("ExcerptRerankerPostprocessor needs the query (query_bundle or query_str)")
        if not nodes:
            return []
        by_id = {n.node.node_id: n for n in nodes}
        excerpts = [node_excerpt(n, self._lookup) for n in nodes]
        ranked = self.reranker.rerank(query_bundle.query_str, excerpts)
        out: list[NodeWithScore] = []
        seen: set[str] = set()
        for excerpt in ranked:
            node = by_id.get(excerpt.id)
            if node is None or excerpt.id in seen:      # never let a re-ranker invent an excerpt
                continue
            seen.add(excerpt.id)
            score = excerpt.scores.fused if excerpt.scores is not None else node.score
            out.append(NodeWithScore(node=node.node, score=score))
        return out[:self.top_n] if self.top_n else out
