"""The dense store: LlamaIndex TextNodes in a ChromaDB collection (embedded client or server).

``PersistentClient`` under ``<data_dir>/library/chroma`` by default; an
``HttpClient`` when ``BOOKBOT_CHROMA_URL`` is set, so several app instances
can share one vector store.  Each instance keeps its own catalog and BM25
snapshot in its data dir; on a shared server, reconciliation only adds
missing vectors and never deletes ones it does not know (they belong to the
other instances).  Embeddings are always passed in (Chroma's own
default embedder is never used); similarity is cosine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence
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


class DenseStore:
    def __init__(self, client, embedder_name: str, *, shared: bool = False) -> None:
        from llama_index.vector_stores.chroma import ChromaVectorStore

        self.client = client
        self.shared = shared      # a server other instances use too: never delete what we do not own
        self.collection = client.get_or_create_collection(
            COLLECTION, metadata={"hnsw:space": "cosine", "embedder": embedder_name},
            embedding_function=None)
        self.vector_store = ChromaVectorStore(chroma_collection=self.collection)

    def count(self) -> int:
        return self.collection.count()

    def all_ids(self) -> set[str]:
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
            self.collection.delete(ids=list(batch))

    def query(self, vector: np.ndarray, n: int, book_ids: Sequence[str] | None = None
              ) -> tuple[list[str], np.ndarray]:
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
        got = self.collection.get(ids=list(ids), include=["embeddings"])
        return {i: np.asarray(v, dtype=np.float32) for i, v in zip(got["ids"], got["embeddings"])}
