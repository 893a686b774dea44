"""The production retriever over given (id, text) sections, in an in-process Chroma collection.

``build_section_index(sections, language, embedder)`` is what the FairytaleQA
evaluations build per story: one excerpt per section, ids kept as given, a
BM25 index over ``app.analyzer`` terms, and (with an embedder) one Chroma
collection in a process-wide ``EphemeralClient`` holding the section vectors —
long sections embedded whole as the mean of window-sized pieces
(``embed_long``), as the library does on reconcile.  It returns the same
``LibraryRetriever`` class the chat uses; ``close()`` (or garbage collection)
drops the collection.
"""

from __future__ import annotations

import uuid
import weakref
from functools import lru_cache
from typing import Sequence

from app.domain import Excerpt, Location
from app.library.bm25 import BM25Index
from app.library.retrieval import DEFAULT_FUSION, FusionConfig
from app.library.retrievers import ExcerptCorpus, LibraryRetriever


@lru_cache(maxsize=1)
def ephemeral_client():
    """One in-memory Chroma client per process, made on first use."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    return chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))


def _drop(client, name: str) -> None:
    try:
        client.delete_collection(name)
    except Exception:  # already gone, or the interpreter is shutting down
        pass


class SectionCorpus(ExcerptCorpus):
    """An ``ExcerptCorpus`` over sections whose vectors live in a throw-away Chroma collection."""

    def __init__(self, excerpts: dict[str, Excerpt], bm25: BM25Index, dense=None, embed_model=None) -> None:
        super().__init__(excerpts, bm25, dense, embed_model)
        self._finalizer = (weakref.finalize(self, _drop, dense.client, dense.collection.name)
                           if dense is not None else None)

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()


def build_section_index(sections: Sequence[tuple[str, str]], language: str, embedder, *,
                        book_id: str = "sections", config: FusionConfig = DEFAULT_FUSION,
                        postprocessors: Sequence = (), pool_factor: int = 3, client=None,
                        embed_model=None) -> LibraryRetriever:
    """The production ``LibraryRetriever`` over one excerpt per (id, text) section, ids kept as given.

    ``embedder`` may be None (BM25 only).  ``client`` is a Chroma client (default: the
    process's ``EphemeralClient``); each call makes its own collection.
    """
    from app.library.dense import DenseStore
    from app.library.llama_adapter import LlamaEmbedding, excerpt_node

    excerpts = [Excerpt(id=str(sid), book_id=book_id, text=text,
                        location=Location(book_id, n, str(sid), 1, 1))
                for n, (sid, text) in enumerate(sections, start=1)]
    by_id = {e.id: e for e in excerpts}
    bm25 = BM25Index.build([e.id for e in excerpts], [e.text for e in excerpts])
    dense = None
    if embedder is not None and excerpts:
        embed_model = embed_model or LlamaEmbedding(embedder, long_texts="whole")
        dense = DenseStore(client or ephemeral_client(), embedder.name, embed_model=embed_model,
                           collection=f"sections-{uuid.uuid4().hex}")
        vectors = embedder.embed_long([e.text for e in excerpts])
        dense.vector_store.add([excerpt_node(e, v.tolist()) for e, v in zip(excerpts, vectors)])
    corpus = SectionCorpus(by_id, bm25, dense, embed_model if dense is not None else None)
    return LibraryRetriever(corpus, config, postprocessors=postprocessors, pool_factor=pool_factor)
