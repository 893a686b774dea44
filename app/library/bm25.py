"""Sparse retrieval: a language-aware analyser and a bm25s index persisted on disk.

English (and other Latin-script text): lower-cased words, English stop words
removed, Snowball-stemmed (PyStemmer).  Korean: Kiwi morphological analysis,
keeping content morphemes (nouns, verb/adjective stems, roots, adverbs,
numbers, foreign words) so "인력거를" and "인력거꾼" both meet "인력거".  A
mixed text gets both.  ``BM25Index`` scores every document for a query (so a
book filter is a mask, and fusion can see the BM25 score of any candidate).
"""

from __future__ import annotations

import json
import re
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
_HANGUL_RE = re.compile(r"[\uac00-\ud7a3]")
_KO_KEEP = ("NNG", "NNP", "NNB", "NR", "NP", "VV", "VA", "XR", "MAG", "SL", "SN", "SH", "MM")
# A few more stop words than bm25s' list: question words carry no evidence.
_EXTRA_STOP = {"what", "who", "whom", "whose", "why", "how", "when", "where", "which", "did", "does",
               "do", "was", "were", "is", "are", "had", "has", "have", "would", "could", "should",
               "she", "he", "her", "his", "him", "they", "them", "their", "i", "you", "me", "my",
               "we", "us", "our", "your", "its", "so", "been", "being", "am", "can", "from"}


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN) | _EXTRA_STOP


@lru_cache(maxsize=1)
def _kiwi():
    from kiwipiepy import Kiwi

    return Kiwi()


def analyze(text: str) -> list[str]:
    """Index terms of a text (documents and queries go through the same function)."""
    terms: list[str] = []
    if _HANGUL_RE.search(text):
        for token in _kiwi().tokenize(text):
            if token.tag.startswith(_KO_KEEP) or token.tag in _KO_KEEP:
                form = token.form.lower()
                if token.tag == "SL":
                    if form in _stopwords():
                        continue
                    form = _stemmer().stemWord(form)
                terms.append(form)
        return terms
    stop = _stopwords()
    words = [w for w in _WORD_RE.findall(text.lower()) if w not in stop]
    return _stemmer().stemWords(words)


def analyze_many(texts: Sequence[str]) -> list[list[str]]:
    return [analyze(t) for t in texts]


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
