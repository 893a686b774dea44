"""The one text analyzer: words, stop words, stems, Korean morphemes, sentences, quote normalisation.

Every part of Bookbot that looks at words goes through this module, so BM25's
index terms, the words grounding compares, the sentences the offline backend
quotes and the features tuning learns from are the same at index, answer and
training time:

- ``terms(text)``: index terms.  English (and other Latin-script text):
  lower-cased words, English stop words and question words removed, irregular
  verb forms put in their base form (lemminflect: "knew" → "know", "hid" →
  "hide", so "How did he know?" meets "he knew"), Snowball-stemmed (PyStemmer).
  ``ANALYZER_VERSION`` names this behaviour: a library whose stored terms were
  made by another version re-analyses them on open.  Korean: Kiwi morphemes, keeping content
  morphemes (nouns, verb/adjective stems, roots, adverbs, numbers, foreign
  words) so "인력거를" and "인력거꾼" both meet "인력거".
- ``words(text)``: lower-cased word tokens, nothing removed.
- ``split_sentences(text)``: sentences (or lines); "Mr." and initials do not end one, nor does
  a line break inside a hard-wrapped paragraph (Gutenberg text, FairytaleQA sections).
- ``normalize(text)``: the form quotes are matched in (case, quote marks,
  dashes, whitespace unified).

Kiwi, the stemmer and the lemma tables are loaded on first use, never at import time.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Sequence

# Bump when terms() changes what it returns.  1: stems; 2: irregular verbs in their base form first
# (FairytaleQA train, 2,251 / 2,114 questions: retriever R@1 +1.1 / +0.4 points, engine +1.1 / +0.8)
ANALYZER_VERSION = 2

_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
_HANGUL_RE = re.compile(r"[\uac00-\ud7a3]")
_KO_KEEP = ("NNG", "NNP", "NNB", "NR", "NP", "VV", "VA", "XR", "MAG", "SL", "SN", "SH", "MM")
# A few more stop words than bm25s' list: question words and pronouns carry no evidence.
_EXTRA_STOP = {"what", "who", "whom", "whose", "why", "how", "when", "where", "which", "did", "does",
               "do", "was", "were", "is", "are", "had", "has", "have", "would", "could", "should",
               "she", "he", "her", "his", "him", "they", "them", "their", "i", "you", "me", "my",
               "we", "us", "our", "your", "its", "so", "been", "being", "am", "can", "from"}


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def _lemmas():
    import lemminflect

    return lemminflect


@lru_cache(maxsize=131072)
def _base_form(word: str) -> str:
    """A verb form's base form ("knew" → "know", "walked" → "walk"); other words as they are."""
    verbs = _lemmas().getAllLemmas(word).get("VERB")
    return verbs[0] if verbs else word


def _stems(words: Sequence[str]) -> list[str]:
    return _stemmer().stemWords([_base_form(w) for w in words])


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN) | _EXTRA_STOP


@lru_cache(maxsize=1)
def _kiwi():
    from kiwipiepy import Kiwi

    return Kiwi()


def is_korean(text: str) -> bool:
    return bool(_HANGUL_RE.search(text or ""))


def _analyze(text: str) -> tuple[str, ...]:
    out: list[str] = []
    if is_korean(text):
        stop = stopwords()
        for token in _kiwi().tokenize(text):
            if token.tag.startswith(_KO_KEEP) or token.tag in _KO_KEEP:
                form = token.form.lower()
                if token.tag == "SL":
                    if form in stop:
                        continue
                    form = _stems([form])[0]
                out.append(form)
        return tuple(out)
    stop = stopwords()
    return tuple(_stems([w for w in _WORD_RE.findall(text.lower()) if w not in stop]))


@lru_cache(maxsize=32768)
def _terms_cached(text: str) -> tuple[str, ...]:
    return _analyze(text)


def terms(text: str) -> list[str]:
    """Index terms of a text; documents and queries go through this same function."""
    text = text or ""
    return list(_terms_cached(text) if len(text) <= 4000 else _analyze(text))


def terms_many(texts: Sequence[str]) -> list[list[str]]:
    return [list(_analyze(t or "")) for t in texts]


@lru_cache(maxsize=32768)
def _words(text: str) -> tuple[str, ...]:
    return tuple(w.lower() for w in _WORD_RE.findall(text))


def words(text: str) -> list[str]:
    """Lower-cased word tokens, nothing removed (token F1, bigrams, lengths)."""
    return list(_words(text or ""))


# ------------------------------------------------------------------ sentences

_SENT_SPLIT = re.compile(r"(?<=[.!?\u3002])[\"'\u201d\u2019)]*\s+|\n+")
_ABBREV = re.compile(r"(?:\b(?:Mr|Mrs|Messrs|Ms|Dr|St|Col|Capt|Gen|Lieut|Prof|Rev|Sr|Jr|Mme|Mlle|No|vol|"
                     r"ch|cf|etc|i\.e|e\.g|viz)|\b[A-Z])\.$")


def line_blocks(text: str) -> list[list[str]]:
    """The non-empty lines of a text, grouped into blocks separated by blank lines."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in text.split("\n"):
        if line.strip():
            current.append(line.rstrip())
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def hard_wrapped(text: str) -> bool:
    """Lines wrapped inside paragraphs (Gutenberg) end mid-sentence; one-line paragraphs end a sentence.

    Looks at every line of a multi-line block except the block's last one.
    """
    inner = [line for block in line_blocks(text) for line in block[:-1]]
    if not inner:
        return True
    finals = sum(1 for line in inner if line.endswith((".", "!", "?", "…", "\"", "”", "’", "'", ")", "]")))
    return finals / len(inner) < 0.6


@lru_cache(maxsize=16384)
def _sentences(text: str) -> tuple[str, ...]:
    if "\n" in text and hard_wrapped(text):       # a wrapped line does not end a sentence
        text = "\n\n".join(" ".join(block) for block in line_blocks(text))
    out: list[str] = []
    glue = False
    for part in _SENT_SPLIT.split(text):
        s = re.sub(r"\s+", " ", part or "").strip()
        if not s:
            continue
        if glue and out:
            out[-1] = f"{out[-1]} {s}"
        else:
            out.append(s)
        glue = bool(_ABBREV.search(out[-1]))
    return tuple(out)


def split_sentences(text: str) -> list[str]:
    """Sentences (or lines) of a text; "Mr." and initials do not end a sentence."""
    return list(_sentences(text or ""))


# ------------------------------------------------------------------ quote matching form

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
                         "\u00ab": '"', "\u00bb": '"', "\u2013": "-", "\u2014": "-", "\u2015": "-",
                         "\u2212": "-", "\u00a0": " ", "_": " "})


def normalize(text: str) -> str:
    """Lower-case, unify quote marks and dashes, collapse whitespace."""
    text = unicodedata.normalize("NFKC", text or "").translate(_QUOTES).lower()
    text = re.sub(r"-{2,}", "-", text)
    return re.sub(r"\s+", " ", text).strip()
