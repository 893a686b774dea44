"""The book library: import books, stable excerpts, hybrid retrieval (LlamaIndex + ChromaDB + BM25).

Public entry points (other areas build against these names):

- ``open_library(settings) -> Library`` — ``Library.retriever(postprocessors=[...])``
  returns a ``LibraryRetriever`` (the ``domain.Retriever``: ``retrieve(query, top_k=,
  book_ids=)`` returns Excerpts with dense/BM25/fused scores and ranks; ``get(excerpt_id)``),
  whose ``.llama`` is the LlamaIndex ``BaseRetriever`` it runs (``app.library.retrievers``);
  ``Library.books()``, ``Library.add_file(path, ...)``, ``Library.remove(book_id)``.
- ``app.library.sync.ensure_books(settings, on_progress=None) -> SyncReport``.
- ``build_section_index(sections: Sequence[tuple[str, str]], language: str, embedder,
  *, book_id="sections", config=DEFAULT_FUSION, postprocessors=()) -> LibraryRetriever`` —
  the same retriever class over an in-process Chroma collection, one excerpt per
  (id, text) section, ids kept as given; ``embedder`` may be None (BM25 only).
  ``retrieve(query, top_k=5)`` returns Excerpts whose ``id`` is the section id;
  ``.excerpts``, ``.ids``, ``get(id)``, ``close()``; ``.with_postprocessors([...])`` gives
  the same index with more node postprocessors.
- ``ExcerptRerankerPostprocessor(reranker)`` (``app.library.postprocessors``): any
  ``rerank(query, excerpts) -> excerpts`` object as a LlamaIndex node postprocessor.
- ``load_default_embedder(settings)`` -> (OnnxEmbedder | None, warning text).

Nothing is imported or built at import time; these functions import lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from app.library.library import Library
    from app.library.retrievers import LibraryRetriever
    from app.settings import Settings


def open_library(settings: "Settings", *, embedder=None, warn=None, on_progress=None,
                 postprocessors=None) -> "Library":
    from app.library.library import Library

    return Library.open(settings, embedder=embedder, warn=warn, on_progress=on_progress,
                        postprocessors=postprocessors)


def build_section_index(sections: Sequence[tuple[str, str]], language: str, embedder,
                        **kwargs) -> "LibraryRetriever":
    from app.library.sections import build_section_index as build

    return build(sections, language, embedder, **kwargs)


def load_default_embedder(settings: "Settings"):
    from app.library.embedder import load_embedder

    return load_embedder(settings.resolved_embed_model_dir)


__all__ = ["open_library", "build_section_index", "load_default_embedder"]
