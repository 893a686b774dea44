"""Bookbot's own question set over the novels (benchmarks/novel_questions.yaml): loading and evidence.

Each question names a book and the character that answers it, 1-3 gold answers,
and an evidence phrase: a few words copied verbatim from the one paragraph that
answers it (the repository never stores book text).  This module owns reading
that file into `NovelQA` records, with an error naming the file and the entry
when an entry is malformed, and mapping a question's evidence phrase onto the
excerpt ids of a book as the library builds it (`evidence_excerpt_ids`), so the
"fairy tales → novels" evaluation can score which excerpts a bot cites.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

import yaml

MIN_EVIDENCE_WORDS = 6
MAX_EVIDENCE_WORDS = 15
_FIELDS = ("id", "book", "character", "question", "answers", "evidence", "evidence_answer")
_WS = re.compile(r"\s+")


class NovelQAError(ValueError):
    """A malformed question file or entry; the message names the file and the entry."""


@dataclass(frozen=True)
class NovelQA:
    id: str
    book: str                  # book id, e.g. "gutenberg-1661"
    character: str             # character card id, e.g. "sherlock-holmes"
    question: str
    answers: tuple[str, ...]   # 1-3 short gold answers
    evidence: str              # verbatim phrase locating the answering paragraph
    evidence_answer: bool      # a gold answer occurs in the evidence paragraph


class _ExcerptLike(Protocol):
    id: str
    text: str


def normalize_space(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _entry(path: Path, n: int, raw: Any) -> NovelQA:
    label = f"entry {n}"
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        label += f" (id '{raw['id']}')"

    def fail(why: str) -> NovelQAError:
        return NovelQAError(f"{path}: {label}: {why}")

    if not isinstance(raw, dict):
        raise fail(f"expected a mapping, got {type(raw).__name__}")
    missing = [f for f in _FIELDS if f not in raw]
    if missing:
        raise fail(f"missing field(s) {', '.join(missing)}")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise fail(f"unknown field(s) {', '.join(map(str, unknown))}")
    for name in ("id", "book", "character", "question", "evidence"):
        if not isinstance(raw[name], str) or not raw[name].strip():
            raise fail(f"'{name}' must be a non-empty string")
    answers = raw["answers"]
    if isinstance(answers, str):
        answers = [answers]
    if (not isinstance(answers, list) or not 1 <= len(answers) <= 3
            or not all(isinstance(a, str) and a.strip() for a in answers)):
        raise fail("'answers' must be a list of 1-3 non-empty strings")
    words = len(raw["evidence"].split())
    if not MIN_EVIDENCE_WORDS <= words <= MAX_EVIDENCE_WORDS:
        raise fail(f"'evidence' has {words} words; it must have "
                   f"{MIN_EVIDENCE_WORDS}-{MAX_EVIDENCE_WORDS}")
    if not isinstance(raw["evidence_answer"], bool):
        raise fail("'evidence_answer' must be true or false")
    return NovelQA(id=raw["id"].strip(), book=raw["book"].strip(), character=raw["character"].strip(),
                   question=raw["question"].strip(), answers=tuple(a.strip() for a in answers),
                   evidence=normalize_space(raw["evidence"]), evidence_answer=raw["evidence_answer"])


def load_novel_questions(path: Path | str) -> list[NovelQA]:
    """All questions of a file: a YAML list, or a mapping with a `questions:` list."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise NovelQAError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise NovelQAError(f"{path}: not valid YAML: {exc}") from exc
    if isinstance(data, dict):
        data = data.get("questions")
    if not isinstance(data, list) or not data:
        raise NovelQAError(f"{path}: expected a non-empty list of questions (or `questions:` holding one)")
    out: list[NovelQA] = []
    seen: set[str] = set()
    for n, raw in enumerate(data, start=1):
        qa = _entry(path, n, raw)
        if qa.id in seen:
            raise NovelQAError(f"{path}: entry {n} (id '{qa.id}'): duplicate id")
        seen.add(qa.id)
        out.append(qa)
    return out


def evidence_excerpt_ids(qa: NovelQA, excerpts: Iterable[_ExcerptLike]) -> frozenset[str]:
    """Ids of the excerpts (of `qa.book`, in reading order) that hold the evidence phrase.

    Whitespace is collapsed on both sides; matching is case-sensitive.  When the
    phrase is in no single excerpt but straddles two adjacent ones (a paragraph
    split at a sentence boundary), both ids are returned.  Empty when not found.
    """
    phrase = normalize_space(qa.evidence)
    items = [(e.id, normalize_space(e.text)) for e in excerpts]
    hits = {eid for eid, text in items if phrase in text}
    if hits:
        return frozenset(hits)
    for (a_id, a), (b_id, b) in zip(items, items[1:]):
        if phrase in f"{a} {b}":
            hits.update((a_id, b_id))
    return frozenset(hits)


def import_books(library, books_dir: Path, manifests_dir: Path, wanted: Iterable[str],
                 on_import=None) -> list[str]:
    """Import the wanted books the library lacks from ``books_dir`` (file names from the manifests)."""
    wanted = set(wanted)
    have = {b.id for b in library.books()}
    done = []
    for manifest in sorted(Path(manifests_dir).glob("*.yaml")):
        meta = yaml.safe_load(manifest.read_text(encoding="utf-8"))
        if meta["id"] in wanted and meta["id"] not in have:
            if on_import:
                on_import(meta["id"])
            library.add_file(Path(books_dir) / meta["file"], book_id=meta["id"], source=meta.get("source"))
            done.append(meta["id"])
    return done


def evidence_map(questions: Iterable[NovelQA], library) -> dict[str, frozenset[str]]:
    """Evidence excerpt ids per question id, over the library's excerpts of each question's book."""
    out = {qa.id: evidence_excerpt_ids(qa, library.excerpts(qa.book)) for qa in questions}
    missing = sorted(q for q, ids in out.items() if not ids)
    if missing:
        raise NovelQAError(f"evidence phrases not found in the library's excerpts: {', '.join(missing)} "
                           "(is the book imported, and the same edition?)")
    return out


__all__ = ["NovelQA", "NovelQAError", "load_novel_questions", "evidence_excerpt_ids", "normalize_space",
           "import_books", "evidence_map"]
