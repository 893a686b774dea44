"""Excerpts: paragraph-aligned chunks that fit the embedder's window, with stable ids.

An excerpt is one or more whole consecutive paragraphs of a chapter, packed up
to ``target_tokens`` word pieces (never more than ``max_tokens``, the model's
window minus [CLS]/[SEP]).  A paragraph longer than the window is split at
sentence boundaries (then at word boundaries), never truncated.  Token counts
come from the embedder's real tokenizer; without one, a conservative estimate.
Ids are ``<book id>:<10 hex of sha256(book id + text)>`` so the same text gives
the same id on every machine; repeated identical text in one book gets an
occurrence number mixed into the hash.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from app.domain import BookMeta, Excerpt, Location
from app.library.structure import Chapter

DEFAULT_TARGET_TOKENS = 200
DEFAULT_MAX_TOKENS = 254          # 256-token window minus [CLS] and [SEP]
_SENTENCE_RE = re.compile(r"(?<=[.!?。…][\"'”’)\]])\s+|(?<=[.!?。…])\s+")


class TokenCounter(Protocol):
    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


class ApproxTokenCounter:
    """Used only when no tokenizer is available: over-estimates BERT word pieces."""

    name = "approx"

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        out = []
        for text in texts:
            words = re.findall(r"[A-Za-z]+|\d|[^\sA-Za-z\d]", text)
            out.append(sum(1 + len(w) // 6 if w.isalpha() and w.isascii() else 3 for w in words))
        return out


def excerpt_id(book_id: str, text: str, occurrence: int = 0) -> str:
    key = f"{book_id}\n{text}" + (f"\n#{occurrence}" if occurrence else "")
    return f"{book_id}:{hashlib.sha256(key.encode('utf-8')).hexdigest()[:10]}"


@dataclass
class _Piece:
    first: int        # 1-based paragraph numbers in the chapter
    last: int
    text: str
    tokens: int


def _split_long(text: str, counter: TokenCounter, max_tokens: int) -> list[tuple[str, int]]:
    """Split one over-long paragraph into pieces of at most max_tokens (sentences, then words)."""
    sentences = [s for s in _SENTENCE_RE.split(text) if s and s.strip()]
    units: list[str] = []
    for sentence, n in zip(sentences, counter.count_tokens(sentences)):
        if n <= max_tokens:
            units.append(sentence.strip())
            continue
        words = sentence.split()
        counts = counter.count_tokens(words)
        chunk: list[str] = []
        total = 0
        for word, c in zip(words, counts):
            if chunk and total + c > max_tokens:
                units.append(" ".join(chunk))
                chunk, total = [], 0
            chunk.append(word)
            total += c
        if chunk:
            units.append(" ".join(chunk))
    pieces: list[tuple[str, int]] = []
    current: list[str] = []
    for unit in units:
        candidate = " ".join(current + [unit])
        if current and counter.count_tokens([candidate])[0] > max_tokens:
            joined = " ".join(current)
            pieces.append((joined, counter.count_tokens([joined])[0]))
            current = [unit]
        else:
            current.append(unit)
    if current:
        joined = " ".join(current)
        pieces.append((joined, counter.count_tokens([joined])[0]))
    return pieces


def chunk_chapter(chapter: Chapter, counter: TokenCounter, *, target_tokens: int = DEFAULT_TARGET_TOKENS,
                  max_tokens: int = DEFAULT_MAX_TOKENS, counts: Sequence[int] | None = None) -> list[_Piece]:
    counts = counts if counts is not None else counter.count_tokens(chapter.paragraphs)
    pieces: list[_Piece] = []
    for number, (para, n) in enumerate(zip(chapter.paragraphs, counts), start=1):
        if n <= max_tokens:
            pieces.append(_Piece(number, number, para, n))
        else:
            pieces.extend(_Piece(number, number, t, c) for t, c in _split_long(para, counter, max_tokens))
    chunks: list[_Piece] = []
    for piece in pieces:
        last = chunks[-1] if chunks else None
        if last is not None and last.tokens + piece.tokens <= target_tokens:
            chunks[-1] = _Piece(last.first, piece.last, f"{last.text}\n\n{piece.text}",
                                last.tokens + piece.tokens)
        else:
            chunks.append(piece)
    # fold a tiny tail into its neighbour when the window allows
    if len(chunks) >= 2 and chunks[-1].tokens < target_tokens // 5 \
            and chunks[-2].tokens + chunks[-1].tokens <= max_tokens:
        a, b = chunks[-2], chunks[-1]
        chunks[-2:] = [_Piece(a.first, b.last, f"{a.text}\n\n{b.text}", a.tokens + b.tokens)]
    return chunks


def build_excerpts(meta: BookMeta, chapters: Sequence[Chapter], counter: TokenCounter, *,
                   target_tokens: int = DEFAULT_TARGET_TOKENS, max_tokens: int = DEFAULT_MAX_TOKENS,
                   on_chapter: Callable[[int], None] | None = None) -> list[Excerpt]:
    """All excerpts of a book, in reading order."""
    seen: dict[str, int] = {}
    out: list[Excerpt] = []
    all_counts = counter.count_tokens([p for c in chapters for p in c.paragraphs])
    offset = 0
    for chapter in chapters:
        counts = all_counts[offset:offset + len(chapter.paragraphs)]
        offset += len(chapter.paragraphs)
        for piece in chunk_chapter(chapter, counter, target_tokens=target_tokens, max_tokens=max_tokens,
                                   counts=counts):
            occurrence = seen.get(piece.text, 0)
            seen[piece.text] = occurrence + 1
            out.append(Excerpt(
                id=excerpt_id(meta.id, piece.text, occurrence), book_id=meta.id, text=piece.text,
                location=Location(meta.id, chapter.number, chapter.title, piece.first, piece.last),
                book_title=meta.title))
        if on_chapter:
            on_chapter(chapter.number)
    return out
