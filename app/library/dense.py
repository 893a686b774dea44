"""The dense store: LlamaIndex TextNodes in a ChromaDB collection (embedded client or server).

``PersistentClient`` under ``<data_dir>/library/chroma`` by default; an
``HttpClient`` when ``BOOKBOT_CHROMA_URL`` is set (an ``EphemeralClient`` for
the evaluations' per-story collections), so several app instances
can share one vector store.  Each instance keeps its own catalog and BM25
snapshot in its data dir; on a shared server, reconciliation only adds
missing vectors and never deletes ones it does not know (they belong to the
other instances).  Embeddings are always passed in (Chroma's own
default embedder is never used); similarity is cosine.

A lab member may name another LlamaIndex vector store (one that stores text)
in the retrieval config (``app.library.plugins``): ``DenseStore.over(store)``
then writes, deletes and searches through the generic ``BasePydanticVectorStore``
calls; such a store is treated like a shared server (vectors it holds that the
catalog does not know are left alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

import numpy as np

from app.domain import Excerpt
from app.library.catalog import iter_batches

COLLECTION = "bookbot_excerpts"
BATCH = 1000


def make_client(data_dir: Path, chroma_url: str | None):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if chroma_url:
        url = urlparse(chroma_url if "://" in chroma_url else f"http://{chroma_url}")
        return chromadb.HttpClient(host=url.hostname or "localhost",
                                   port=url.port or (443 if url.scheme == "https" else 8000),
                                   ssl=url.scheme == "https", settings=chroma_settings)
    path = data_dir / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


def _excerpt_chroma_store(collection):
    """A ``ChromaVectorStore`` that, given a node source, fetches only ids and distances.

    LlamaIndex's Chroma store asks Chroma for every hit's text and metadata and
    rebuilds each node from JSON (~3.5 ms per 50-hit search on the six books);
    the library already holds every excerpt, so ``node_source(id)`` supplies the
    node.  Similarities stay Chroma's ``exp(-distance)``; ids the source does not
    know (another instance's vectors on a shared server) are left out.
    """
    import math

    from llama_index.core.vector_stores.types import VectorStoreQueryResult
    from llama_index.vector_stores.chroma import ChromaVectorStore
    from pydantic import PrivateAttr

    class ExcerptChromaVectorStore(ChromaVectorStore):
        _node_source: Any = PrivateAttr(default=None)

        @classmethod
        def class_name(cls) -> str:
            return "ExcerptChromaVectorStore"

        def set_node_source(self, source) -> None:
            self._node_source = source

        def _query(self, query_embeddings, n_results: int, where: dict, **kwargs) -> VectorStoreQueryResult:
            source = self._node_source
            if source is None or "include" in kwargs:
                return super()._query(query_embeddings, n_results, where, **kwargs)
            args = {"where": where} if where else {}
            found = self._collection.query(query_embeddings=query_embeddings, n_results=n_results,
                                           include=["distances"], **args, **kwargs)
            nodes, sims, ids = [], [], []
            for node_id, distance in zip(found["ids"][0], found["distances"][0]):
                node = source(node_id)
                if node is not None:
                    nodes.append(node)
                    sims.append(math.exp(-distance))
                    ids.append(node_id)
            return VectorStoreQueryResult(nodes=nodes, similarities=sims, ids=ids)

    return ExcerptChromaVectorStore(chroma_collection=collection)


def _keep_nodes():
    """A LlamaIndex transformation that changes nothing."""
    from llama_index.core.schema import TransformComponent

    class KeepNodes(TransformComponent):
        def __call__(self, nodes, **kwargs):
            return nodes

    return KeepNodes()


class DenseStore:
    """The vector store as a LlamaIndex store + ``VectorStoreIndex`` (Chroma by default)."""

    def __init__(self, client, embedder_name: str, *, shared: bool = False, embed_model=None,
                 collection: str = COLLECTION, vector_store=None) -> None:
        self.client = client
        self.shared = shared      # a server other instances use too: never delete what we do not own
        self.embed_model = embed_model
        self.collection = None
        if vector_store is None:
            self.collection = client.get_or_create_collection(
                collection, metadata={"hnsw:space": "cosine", "embedder": embedder_name},
                embedding_function=None)
            vector_store = _excerpt_chroma_store(self.collection)
        elif hasattr(vector_store, "_collection") and type(vector_store).__name__.endswith("ChromaVectorStore"):
            self.collection = vector_store.client
        self.vector_store = vector_store
        self._index = None

    @classmethod
    def over(cls, vector_store, embedder_name: str, *, embed_model=None) -> "DenseStore":
        """Any LlamaIndex vector store that stores text (named in the retrieval config)."""
        if not getattr(vector_store, "stores_text", False):
            raise ValueError(f"{type(vector_store).__name__} does not store text; the library needs a "
                             f"vector store that does (Chroma, Qdrant, LanceDB, pgvector, ...)")
        return cls(None, embedder_name, shared=True, embed_model=embed_model, vector_store=vector_store)

    def set_node_source(self, source) -> None:
        """Where searches get the nodes of hit ids (``ExcerptCorpus.node``); other stores ignore it."""
        setter = getattr(self.vector_store, "set_node_source", None)
        if setter is not None:
            setter(source)

    @property
    def index(self):
        """The ``VectorStoreIndex`` over the store, with our embedder (never LlamaIndex's default)."""
        if self._index is None:
            from llama_index.core import VectorStoreIndex

            if self.embed_model is None:
                raise ValueError("the vector index needs our embedding model (embed_model=LlamaEmbedding(...))")
            # transformations given (never used: nodes are written to the store directly), so the index
            # does not resolve LlamaIndex's default SentenceSplitter + tiktoken (~13 MB) from Settings
            self._index = VectorStoreIndex.from_vector_store(self.vector_store, embed_model=self.embed_model,
                                                             transformations=[_keep_nodes()])
        return self._index

    def count(self) -> int | None:
        """Vectors held (None when the store cannot say)."""
        return self.collection.count() if self.collection is not None else None

    def all_ids(self, candidates: Sequence[str] = ()) -> set[str]:
        """Ids held; a store that cannot list them is asked about ``candidates`` only."""
        if self.collection is None:
            found: set[str] = set()
            for batch in iter_batches(list(candidates), BATCH):
                found.update(n.node_id for n in self.vector_store.get_nodes(node_ids=list(batch)))
            return found
        ids: set[str] = set()
        offset = 0
        while True:
            got = self.collection.get(include=[], limit=5000, offset=offset)["ids"]
            ids.update(got)
            if len(got) < 5000:
                return ids
            offset += len(got)

    def add(self, excerpts: Sequence[Excerpt], vectors: np.ndarray) -> None:
        from app.library.llama_adapter import excerpt_node

        nodes = [excerpt_node(e, v.tolist()) for e, v in zip(excerpts, vectors)]
        for batch in iter_batches(nodes, BATCH):
            self.vector_store.add(list(batch))

    def delete(self, ids: Sequence[str]) -> None:
        for batch in iter_batches(list(ids), BATCH):
            if self.collection is not None:
                self.collection.delete(ids=list(batch))
            else:
                self.vector_store.delete_nodes(node_ids=list(batch))

    def query(self, vector: np.ndarray, n: int, book_ids: Sequence[str] | None = None
              ) -> tuple[list[str], np.ndarray]:
        """Chroma's own top-n (ids, cosine), bypassing LlamaIndex (the benchmark's previous path)."""
        where = None
        if book_ids:
            where = {"book_id": book_ids[0]} if len(book_ids) == 1 else {"book_id": {"$in": list(book_ids)}}
        result = self.collection.query(query_embeddings=[vector.astype(np.float32)], n_results=n,
                                       where=where, include=["distances"])
        ids = result["ids"][0]
        sims = 1.0 - np.asarray(result["distances"][0], dtype=np.float64)
        return ids, sims

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if not ids:
            return {}
        if self.collection is None:
            return {n.node_id: np.asarray(n.embedding, dtype=np.float32)
                    for n in self.vector_store.get_nodes(node_ids=list(ids)) if n.embedding is not None}
        got = self.collection.get(ids=list(ids), include=["embeddings"])
        return {i: np.asarray(v, dtype=np.float32) for i, v in zip(got["ids"], got["embeddings"])}
