"""The library's retriever, built from LlamaIndex parts, and the domain adapter around it.

- ``ExcerptCorpus``: one immutable view of what can be found — excerpts by id,
  their BM25 index, which book each belongs to, and the dense store; nodes are
  made per search from the excerpts (``llama_adapter.excerpt_node``).  The ``Library`` swaps in a new one after each change;
  ``build_section_index`` makes one over given sections.
- ``BM25sRetriever`` (``BaseRetriever``): bm25s over ``app.analyzer`` terms, a
  book filter as a mask; every document has a score, so fusion can ask for
  the BM25 score of a dense-only candidate.
- ``ConvexFusionRetriever`` (``BaseRetriever``): the query embedded once by
  our ``LlamaEmbedding``; the BM25 top-n and the top-n of a
  ``VectorStoreIndex`` retriever over the vector store (Chroma), each
  candidate completed with its other score; ``retrieval.fuse`` ranks them;
  then the node postprocessors (``BaseNodePostprocessor``) run on a pool of
  ``pool_factor`` x top_k and the top_k are kept.
- ``LibraryRetriever``: the ``domain.Retriever`` the engine, the CLI and the
  evaluations use — ``retrieve(query, top_k=, book_ids=)`` runs the LlamaIndex
  retriever (so instrumentation handlers see each search) and maps nodes back
  to ``Excerpt``s with their scores; ``get(id)``.

Nothing here touches ``llama_index.core.Settings``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from app.domain import Excerpt
from app.library.bm25 import BM25Index
from app.library.llama_adapter import excerpt_node, node_excerpt, scored_node
from app.library.retrieval import DEFAULT_FUSION, FusionConfig, Pools

# Chroma's metadata filter is slow next to its HNSW search (~8-25 ms vs ~2 ms on the six books):
# when the wanted books hold at least this share of the library, search unfiltered and filter here.
FILTER_LOCALLY_SHARE = 0.25


class ExcerptCorpus:
    """Excerpts + BM25 + dense store, as one consistent snapshot the retrievers read."""

    def __init__(self, excerpts: dict[str, Excerpt], bm25: BM25Index, dense=None, embed_model=None) -> None:
        self.excerpts = excerpts
        self.bm25 = bm25
        self.dense = dense                    # app.library.dense.DenseStore or None (BM25 only)
        self.embed_model = embed_model        # LlamaEmbedding or None
        books = sorted({e.book_id for e in excerpts.values()})
        self.book_index = {b: n for n, b in enumerate(books)}
        self.doc_book = np.array([self.book_index[excerpts[i].book_id] for i in bm25.ids], dtype=np.int32)
        if dense is not None:
            dense.set_node_source(self.known_node)

    def current(self) -> "ExcerptCorpus":
        return self

    @property
    def corpus(self) -> "ExcerptCorpus":
        return self

    def get(self, excerpt_id: str) -> Excerpt | None:
        return self.excerpts.get(excerpt_id)

    def node(self, excerpt_id: str) -> TextNode:
        """A fresh node per search (~8 µs each; a cache of every excerpt's node would cost ~5 MB)."""
        return excerpt_node(self.excerpts[excerpt_id])

    def known_node(self, excerpt_id: str) -> TextNode | None:
        return self.node(excerpt_id) if excerpt_id in self.excerpts else None

    def book_mask(self, book_ids: Sequence[str] | None) -> np.ndarray | None:
        """None for every book; else a boolean mask over ``bm25.ids``."""
        if not book_ids:
            return None
        wanted = [self.book_index[b] for b in book_ids if b in self.book_index]
        return np.isin(self.doc_book, wanted)


class BM25sRetriever(BaseRetriever):
    """LlamaIndex retriever over our bm25s index (``app.analyzer`` terms); top-n with a positive score."""

    def __init__(self, source, *, similarity_top_k: int = 50, book_ids: Sequence[str] | None = None,
                 **kwargs: Any) -> None:
        self._source = source
        self.similarity_top_k = similarity_top_k
        self.book_ids = list(book_ids) if book_ids else None
        self._last: tuple[Any, str, np.ndarray] | None = None
        super().__init__(**kwargs)

    def scores(self, query: str, corpus: ExcerptCorpus | None = None) -> np.ndarray:
        """BM25 score of every document (0 outside the wanted books); the last query's are kept."""
        corpus = corpus or self._source.corpus
        last = self._last
        if last is not None and last[0] is corpus and last[1] == query:
            return last[2]
        scores = corpus.bm25.scores(query)
        mask = corpus.book_mask(self.book_ids)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        self._last = (corpus, query, scores)
        return scores

    def top(self, query: str, corpus: ExcerptCorpus) -> list[tuple[str, float]]:
        scores = self.scores(query, corpus)
        n = self.similarity_top_k
        if len(scores) > n:
            top = np.argpartition(-scores, n - 1)[:n]
        else:
            top = np.arange(len(scores))
        top = sorted((i for i in top if scores[i] > 0), key=lambda i: (-scores[i], i))
        return [(corpus.bm25.ids[i], float(scores[i])) for i in top]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        corpus = self._source.corpus
        return [NodeWithScore(node=corpus.node(i), score=s) for i, s in self.top(query_bundle.query_str, corpus)]


def _cosine_from(vector_store) -> Callable[[float], float]:
    """Turn a vector store's similarity back into the cosine fusion scales (Chroma reports exp(-distance))."""
    from llama_index.vector_stores.chroma import ChromaVectorStore

    if isinstance(vector_store, ChromaVectorStore):
        return lambda s: 1.0 + math.log(max(s, 1e-300))
    return float


class ConvexFusionRetriever(BaseRetriever):
    """BM25 + vector-index candidates fused by our convex score fusion, then node postprocessors."""

    def __init__(self, source, *, config: FusionConfig = DEFAULT_FUSION, similarity_top_k: int = 5,
                 book_ids: Sequence[str] | None = None, postprocessors: Sequence = (),
                 pool_factor: int = 3, **kwargs: Any) -> None:
        self._source = source
        self.config = config
        self.similarity_top_k = similarity_top_k
        self.book_ids = list(book_ids) if book_ids else None
        self.postprocessors = list(postprocessors)
        self.pool_factor = max(1, int(pool_factor))
        self.bm25 = BM25sRetriever(source, similarity_top_k=config.candidates, book_ids=self.book_ids,
                                   **kwargs)
        super().__init__(**kwargs)

    def configured(self, *, top_k: int, book_ids: Sequence[str] | None,
                   config: FusionConfig | None = None) -> "ConvexFusionRetriever":
        """A copy for one search (LlamaIndex retrievers take top-k and filters at construction)."""
        return ConvexFusionRetriever(self._source, config=config or self.config, similarity_top_k=top_k,
                                     book_ids=book_ids, postprocessors=self.postprocessors,
                                     pool_factor=self.pool_factor, callback_manager=self.callback_manager)

    # ------------------------------------------------------------ candidates

    def _vector_retriever(self, corpus: ExcerptCorpus, n: int, book_ids: Sequence[str] | None):
        from llama_index.core.vector_stores import FilterOperator, MetadataFilter, MetadataFilters

        filters = None
        if book_ids:
            value = book_ids[0] if len(book_ids) == 1 else list(book_ids)
            op = FilterOperator.EQ if len(book_ids) == 1 else FilterOperator.IN
            filters = MetadataFilters(filters=[MetadataFilter(key="book_id", value=value, operator=op)])
        return corpus.dense.index.as_retriever(similarity_top_k=max(1, n), filters=filters)

    def _dense_top(self, corpus: ExcerptCorpus, query_bundle: QueryBundle, n: int) -> list[tuple[str, float]]:
        """Top-n (id, cosine) among the wanted books, from the vector index."""
        total = len(corpus.doc_book)
        n = min(n, max(total, 1))
        cosine = _cosine_from(corpus.dense.index.vector_store)

        def search(k: int, book_ids) -> list[tuple[str, float]]:
            hits = self._vector_retriever(corpus, k, book_ids).retrieve(query_bundle)
            return [(h.node.node_id, cosine(h.score or 0.0)) for h in hits if h.node.node_id in corpus.excerpts]

        mask = corpus.book_mask(self.book_ids)
        if mask is None:
            return search(n, None)
        share = float(mask.mean()) if total else 0.0
        if share >= FILTER_LOCALLY_SHARE:
            wanted = {b for b in self.book_ids or ()}
            hits = [h for h in search(min(int(n / share * 1.5) + 1, total), None)
                    if corpus.excerpts[h[0]].book_id in wanted][:n]
            if len(hits) >= min(n, int(share * total)) // 2:
                return hits
        return search(n, [b for b in self.book_ids or () if b in corpus.book_index])

    def pools(self, query_bundle: QueryBundle, corpus: ExcerptCorpus | None = None) -> Pools:
        """Both candidate lists of one query, each candidate with both scores."""
        corpus = corpus or self._source.corpus
        query = query_bundle.query_str
        if not query.strip() or not corpus.bm25.ids:
            return Pools()
        if self.book_ids and not any(b in corpus.book_index for b in self.book_ids):
            return Pools()
        sparse = [(h.node.node_id, h.score or 0.0) for h in self.bm25.retrieve(query_bundle)]
        bm25 = dict(sparse)
        pools = Pools(bm25=bm25, bm25_rank={i: r for r, (i, _) in enumerate(sparse, start=1)})
        if corpus.dense is None or corpus.embed_model is None or self.config.method == "bm25":
            return pools
        if query_bundle.embedding is None:
            query_bundle.embedding = corpus.embed_model.get_query_embedding(query)
        qv = np.asarray(query_bundle.embedding, dtype=np.float32)
        dense_hits = self._dense_top(corpus, query_bundle, self.config.candidates)
        dense = dict(dense_hits)
        pools.dense = dense
        pools.dense_rank = {i: r for r, (i, _) in enumerate(dense_hits, start=1)}
        missing = [i for i in bm25 if i not in dense]
        for i, v in corpus.dense.vectors(missing).items():
            dense[i] = float(v @ qv)
        all_scores = self.bm25.scores(query, corpus)
        for i in dense:
            if i not in bm25 and i in corpus.bm25.position:
                bm25[i] = float(all_scores[corpus.bm25.position[i]])
        return pools

    # ------------------------------------------------------------ retrieval

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        corpus = self._source.current()
        ranked = self.pools(query_bundle, corpus).fuse(self.config)
        pool = self.similarity_top_k * (self.pool_factor if self.postprocessors else 1)
        nodes = [scored_node(corpus.node(s.id), s.scores) for s in ranked[:pool]]
        for postprocessor in self.postprocessors:
            nodes = postprocessor.postprocess_nodes(nodes, query_bundle=query_bundle)
        return nodes[:self.similarity_top_k]


class LibraryRetriever:
    """The ``domain.Retriever`` over a LlamaIndex ``ConvexFusionRetriever`` (chat, CLI and evaluations)."""

    def __init__(self, source, fusion: FusionConfig = DEFAULT_FUSION, *, postprocessors: Sequence = (),
                 pool_factor: int = 3, callback_manager=None) -> None:
        self.source = source
        self.fusion = fusion
        self.llama = ConvexFusionRetriever(source, config=fusion, postprocessors=postprocessors,
                                           pool_factor=pool_factor, callback_manager=callback_manager)

    @property
    def postprocessors(self) -> list:
        return self.llama.postprocessors

    def with_postprocessors(self, postprocessors: Sequence, *, replace: bool = False,
                            pool_factor: int | None = None) -> "LibraryRetriever":
        """The same index and fusion with more (or, ``replace=True``, other) node postprocessors."""
        chain = list(postprocessors) if replace else [*self.postprocessors, *postprocessors]
        return LibraryRetriever(self.source, self.fusion, postprocessors=chain,
                                pool_factor=self.llama.pool_factor if pool_factor is None else pool_factor,
                                callback_manager=self.llama.callback_manager)

    @property
    def excerpts(self) -> list[Excerpt]:
        corpus = self.source.current()
        return [corpus.excerpts[i] for i in corpus.bm25.ids]

    @property
    def ids(self) -> list[str]:
        return list(self.source.current().bm25.ids)

    def get(self, excerpt_id: str) -> Excerpt | None:
        return self.source.corpus.get(excerpt_id)

    def retrieve(self, query: str, *, top_k: int = 5, book_ids: Sequence[str] | None = None,
                 config: FusionConfig | None = None) -> list[Excerpt]:
        """Top-k excerpts with their scores; runs (and instruments) the LlamaIndex retriever."""
        retriever = self.llama.configured(top_k=top_k, book_ids=book_ids, config=config)
        nodes = retriever.retrieve(query)          # picks up changes other processes made first
        lookup = self.source.corpus.get
        return [node_excerpt(n, lookup) for n in nodes]

    def pools(self, query: str, *, book_ids: Sequence[str] | None = None,
              candidates: int | None = None) -> Pools:
        """The fusion's candidates for ``query`` (evaluation and tuning score many configs on them)."""
        config = self.fusion if candidates is None else FusionConfig(candidates=candidates)
        return self.llama.configured(top_k=1, book_ids=book_ids, config=config).pools(QueryBundle(query))

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
