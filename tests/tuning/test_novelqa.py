"""The shipped novel question set: well-formed, and every evidence phrase locates its paragraph and excerpt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from app.library.excerpts import ApproxTokenCounter, build_excerpts
from app.library.importers import decode_text, read_book
from app.tuning.novelqa import (NovelQA, NovelQAError, evidence_excerpt_ids, load_novel_questions,
                                normalize_space)

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = ROOT / "benchmarks" / "novel_questions.yaml"
BOOKS_DIR = ROOT.parent / "shared" / "books"
HOLMES_BOOKS = {"gutenberg-244", "gutenberg-2097", "gutenberg-1661", "gutenberg-2852"}


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_shipped_set_is_well_formed():
    questions = load_novel_questions(QUESTIONS)
    assert len(questions) == 40
    books = {p.stem: _yaml(p) for p in (ROOT / "books").glob("*.yaml")}
    characters = {p.stem: _yaml(p) for p in (ROOT / "characters").glob("*.yaml")}
    per_book: dict[str, int] = {}
    for qa in questions:
        assert qa.book in books, qa.id
        assert qa.character in characters, qa.id
        assert qa.book in characters[qa.character]["books"], f"{qa.id}: {qa.character} does not use {qa.book}"
        per_book[qa.book] = per_book.get(qa.book, 0) + 1
    assert sum(per_book.get(b, 0) for b in HOLMES_BOOKS) == 30
    assert all(per_book.get(b, 0) >= 5 for b in HOLMES_BOOKS), per_book
    assert per_book.get("gutenberg-11") == 10
    assert len({qa.question.lower() for qa in questions}) == 40


@dataclass
class _Book:
    text: str                 # whole file, whitespace collapsed
    paragraphs: list[str]     # whitespace collapsed
    excerpts: list


@pytest.fixture(scope="module")
def books() -> dict[str, _Book]:
    if not BOOKS_DIR.is_dir():
        pytest.skip(f"the book texts are not present ({BOOKS_DIR}); they live in ../shared/books")
    out = {}
    for path in (ROOT / "books").glob("*.yaml"):
        meta = _yaml(path)
        if meta["id"] not in HOLMES_BOOKS | {"gutenberg-11"}:
            continue
        file = BOOKS_DIR / meta["file"]
        if not file.is_file():
            pytest.skip(f"book file {file} is not present")
        parsed = read_book(file, book_id=meta["id"])
        out[meta["id"]] = _Book(
            text=normalize_space(decode_text(file.read_bytes(), file)),
            paragraphs=[normalize_space(p) for c in parsed.chapters for p in c.paragraphs],
            excerpts=build_excerpts(parsed.meta, parsed.chapters, ApproxTokenCounter()))
    return out


def test_every_evidence_locates_one_paragraph_and_its_excerpts(books):
    for qa in load_novel_questions(QUESTIONS):
        book = books[qa.book]
        assert book.text.count(qa.evidence) == 1, f"{qa.id}: evidence must occur exactly once in {qa.book}"
        paragraphs = [p for p in book.paragraphs if qa.evidence in p]
        assert len(paragraphs) == 1, f"{qa.id}: evidence is in {len(paragraphs)} paragraphs"
        in_paragraph = any(a.lower() in paragraphs[0].lower() for a in qa.answers)
        assert in_paragraph == qa.evidence_answer, f"{qa.id}: evidence_answer should be {in_paragraph}"
        ids = evidence_excerpt_ids(qa, book.excerpts)
        assert 1 <= len(ids) <= 2, f"{qa.id}: evidence maps to {len(ids)} excerpts"
        assert all(i.startswith(f"{qa.book}:") for i in ids)
        if qa.evidence_answer:
            cited = " ".join(normalize_space(e.text) for e in book.excerpts if e.id in ids).lower()
            assert any(a.lower() in cited for a in qa.answers), qa.id


@dataclass
class _Ex:
    id: str
    text: str


def _qa(evidence: str) -> NovelQA:
    return NovelQA("q", "b", "c", "?", ("a",), evidence, True)


def test_evidence_straddling_two_excerpts_returns_both():
    excerpts = [_Ex("b:1", "One two three four."), _Ex("b:2", "Five six\nseven eight."), _Ex("b:3", "nine")]
    assert evidence_excerpt_ids(_qa("three four. Five  six seven"), excerpts) == {"b:1", "b:2"}
    assert evidence_excerpt_ids(_qa("Five six seven eight."), excerpts) == {"b:2"}
    assert evidence_excerpt_ids(_qa("five six seven eight."), excerpts) == frozenset()


def test_malformed_entry_names_file_and_entry(tmp_path):
    good = {"id": "x1", "book": "b", "character": "c", "question": "Q?", "answers": ["a"],
            "evidence": "one two three four five six", "evidence_answer": True}
    path = tmp_path / "qs.yaml"
    path.write_text(yaml.safe_dump({"questions": [good, {**good, "id": "x2", "evidence": "too short"}]}))
    with pytest.raises(NovelQAError, match=r"qs\.yaml: entry 2 \(id 'x2'\): 'evidence' has 2 words"):
        load_novel_questions(path)
    path.write_text(yaml.safe_dump([good, {k: v for k, v in good.items() if k != "answers"}]))
    with pytest.raises(NovelQAError, match=r"qs\.yaml: entry 2 .*missing field\(s\) answers"):
        load_novel_questions(path)
    path.write_text(yaml.safe_dump([good, good]))
    with pytest.raises(NovelQAError, match="duplicate id"):
        load_novel_questions(path)
