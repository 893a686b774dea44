"""Excerpts: whole paragraphs, inside the embedder's window by the real tokenizer, stable ids."""

from __future__ import annotations

import hashlib

from app.library.excerpts import build_excerpts, excerpt_id
from app.library.importers import read_book
from app.library.structure import Chapter

from .conftest import BOOKS


def test_every_excerpt_of_the_holmes_books_fits_the_window_and_keeps_paragraphs_whole(embedder):
    for name in ("sherlock_adventures_1661.txt", "hound_baskervilles_2852.txt"):
        book = read_book(BOOKS / name)
        excerpts = build_excerpts(book.meta, book.chapters, embedder)
        counts = embedder.count_tokens([e.text for e in excerpts])
        assert max(counts) <= embedder.max_tokens == 254
        assert sum(counts) / len(counts) > 120           # packed, not one line each
        embedder.embed([e.text for e in excerpts[:4]])    # accepted without truncation
        chapters = {c.number: c for c in book.chapters}
        for e in excerpts:
            paras = chapters[e.location.chapter_number].paragraphs[
                e.location.paragraph_start - 1:e.location.paragraph_end]
            parts = e.text.split("\n\n")
            assert len(parts) == len(paras)
            # whole paragraphs in order; only an over-long paragraph at either end may be a piece
            assert parts[1:-1] == paras[1:-1]
            if len(parts) == 1:
                assert parts[0] in paras[0]
            else:
                assert paras[0].endswith(parts[0]) and paras[-1].startswith(parts[-1])
            assert all(p == q for p, q in zip(parts, paras) if len(q) < 1000)


def test_ids_are_stable_hashes_of_book_and_text(embedder):
    book = read_book(BOOKS / "study_in_scarlet_244.txt")
    first = build_excerpts(book.meta, book.chapters, embedder)
    again = build_excerpts(read_book(BOOKS / "study_in_scarlet_244.txt").meta, book.chapters, embedder)
    assert [e.id for e in first] == [e.id for e in again]
    assert len({e.id for e in first}) == len(first)
    e = first[0]
    assert e.id == "gutenberg-244:" + hashlib.sha256(f"gutenberg-244\n{e.text}".encode()).hexdigest()[:10]
    assert e.location.label().startswith("ch. 1 PART I — CHAPTER I. MR. SHERLOCK HOLMES., ¶1")


def test_an_over_long_paragraph_is_split_at_sentences_without_losing_words(embedder):
    sentence = "Holmes examined the mud on the boots of the visitor with his lens for a long while. "
    long_para = sentence * 40                           # ~20 tokens x 40 = far over 254
    chapter = Chapter(1, "One", ["Short opening.", long_para.strip(), "Short ending."])
    meta = read_book(BOOKS / "sign_of_four_2097.txt").meta
    excerpts = build_excerpts(meta, [chapter], embedder)
    pieces = [e for e in excerpts if e.location.paragraph_start <= 2 <= e.location.paragraph_end]
    assert len(pieces) >= 3
    assert all(n <= 254 for n in embedder.count_tokens([e.text for e in excerpts]))
    joined = " ".join(e.text for e in excerpts)
    assert joined.split() == ("Short opening. " + long_para + "Short ending.").split()
    assert all(p.text.endswith(".") for p in pieces)    # cut at sentence ends
    assert sum(embedder.count_tokens([p.text for p in pieces])) > 254 * 2


def test_repeated_text_gets_distinct_ids():
    assert excerpt_id("b", "“Yes.”") != excerpt_id("b", "“Yes.”", 1)
