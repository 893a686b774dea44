"""Sparse retrieval: a bm25s index over the terms of ``app.analyzer`` (the one text analyzer), on disk.

``BM25Index`` scores every document for a query (so a
book filter is a mask, and fusion can see the BM25 score of any candidate).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from app.analyzer import terms as analyze, terms_many as analyze_many

__all__ = ["BM25Index", "analyze", "analyze_many"]


class BM25Index:
    """bm25s over a fixed list of documents; ``scores(query)`` covers every document."""

    def __init__(self, ids: list[str], model, *, k1: float, b: float) -> None:
        self.ids = ids
        self.position = {doc_id: i for i, doc_id in enumerate(ids)}
        self._model = model
        self.k1, self.b = k1, b

    @classmethod
    def build(cls, ids: Sequence[str], texts: Sequence[str] | None = None, *,
              tokens: Sequence[list[str]] | None = None, k1: float = 1.2, b: float = 0.75) -> "BM25Index":
        import bm25s

        if tokens is None:
            tokens = analyze_many(texts or [])
        model = bm25s.BM25(k1=k1, b=b)
        if ids:
            model.index([list(t) or [""] for t in tokens], show_progress=False)
        return cls(list(ids), model if ids else None, k1=k1, b=b)

    def __len__(self) -> int:
        return len(self.ids)

    def scores(self, query: str | list[str]) -> np.ndarray:
        if self._model is None:
            return np.zeros(0, dtype=np.float32)
        terms = analyze(query) if isinstance(query, str) else query
        terms = [t for t in terms if t in self._model.vocab_dict]
        if not terms:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self._model.get_scores(terms), dtype=np.float32)

    # ------------------------------------------------------------ persistence

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        if self._model is not None:
            self._model.save(str(directory), show_progress=False)
        (directory / "ids.json").write_text(json.dumps({"ids": self.ids, "k1": self.k1, "b": self.b}))

    @classmethod
    def load(cls, directory: Path) -> "BM25Index":
        import bm25s

        directory = Path(directory)
        info = json.loads((directory / "ids.json").read_text())
        model = bm25s.BM25.load(str(directory), show_progress=False) if info["ids"] else None
        return cls(info["ids"], model, k1=info["k1"], b=info["b"])
