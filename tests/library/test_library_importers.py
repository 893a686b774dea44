"""Importing: Gutenberg header/footer, encodings, chapters, EPUB, Korean, and bad input."""

from __future__ import annotations


import pytest

from app.library.errors import BadBookFile
from app.library.importers import read_book
from app.library.structure import chapters_of

from .conftest import BOOKS

EXPECTED = {  # file: (id, title, author, chapters, first chapter title)
    "study_in_scarlet_244.txt": ("gutenberg-244", "A Study In Scarlet", "Arthur Conan Doyle", 14,
                                 "PART I — CHAPTER I. MR. SHERLOCK HOLMES."),
    "sign_of_four_2097.txt": ("gutenberg-2097", "The Sign of the Four", "Arthur Conan Doyle", 12,
                              "Chapter I. The Science of Deduction"),
    "sherlock_adventures_1661.txt": ("gutenberg-1661", "The Adventures of Sherlock Holmes", "Arthur Conan Doyle",
                                     12, "ADVENTURE I. A SCANDAL IN BOHEMIA"),
    "hound_baskervilles_2852.txt": ("gutenberg-2852", "The Hound of the Baskervilles", "A. Conan Doyle", 15,
                                    "Chapter 1. Mr. Sherlock Holmes"),
    "alice_wonderland_11.txt": ("gutenberg-11", "Alice’s Adventures in Wonderland", "Lewis Carroll", 12,
                                "CHAPTER I. Down the Rabbit-Hole"),
    "pride_prejudice_1342.txt": ("gutenberg-1342", "Pride and Prejudice", "Jane Austen", 61, "Chapter 1"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_gutenberg_books_parse_with_metadata_and_chapters(name):
    book = read_book(BOOKS / name)
    book_id, title, author, n_chapters, first = EXPECTED[name]
    assert (book.meta.id, book.meta.title, book.meta.author, book.meta.language) == (book_id, title, author, "en")
    assert book.meta.source == f"gutenberg:{book_id.split('-')[1]}"
    assert len(book.chapters) == n_chapters
    assert book.chapters[0].title == first
    assert [c.number for c in book.chapters] == list(range(1, n_chapters + 1))
    text = "\n".join(p for c in book.chapters for p in c.paragraphs)
    assert "PROJECT GUTENBERG" not in text.upper().replace("PROJECT GUTENBERG-TM", "")
    assert "\ufeff" not in text and "\ufeff" not in book.meta.title
    assert all("\n" not in p for c in book.chapters for p in c.paragraphs)


def test_latin1_book_is_decoded_and_later_adventures_are_chapters():
    book = read_book(BOOKS / "sherlock_adventures_1661.txt")
    titles = [c.title for c in book.chapters]
    assert titles[6] == "VII. THE ADVENTURE OF THE BLUE CARBUNCLE"
    text = " ".join(p for c in book.chapters for p in c.paragraphs)
    assert "To Sherlock Holmes she is always THE woman." in text
    assert "\ufffd" not in text and "Ã" not in text


def test_study_in_scarlet_keeps_parts_and_titles_on_next_line():
    sign = read_book(BOOKS / "sign_of_four_2097.txt")
    assert sign.chapters[1].title == "Chapter II. The Statement of the Case"
    assert sign.chapters[0].paragraphs[0].startswith("Sherlock Holmes took his bottle")
    scarlet = read_book(BOOKS / "study_in_scarlet_244.txt")
    assert scarlet.chapters[7].title.startswith("PART II. The Country of the Saints — CHAPTER I.")


def test_korean_story_is_one_chapter_of_line_paragraphs():
    book = read_book(BOOKS / "ko" / "unsu_joeun_nal_hyeon_jingeon.txt", book_id="ko-unsu-joeun-nal",
                     title="운수 좋은 날")
    assert book.meta.language == "ko"
    assert len(book.chapters) == 1 and book.chapters[0].title == "운수 좋은 날"
    assert book.chapters[0].paragraphs[0] == "새침하게 흐린 품이 눈이 올 듯하더니 눈은 아니 오고 얼다가 만 비가 추적추적 내리었다."
    assert len(book.chapters[0].paragraphs) > 200


def test_numbered_korean_sections_and_plain_text_without_headings(tmp_path):
    assert [c.title for c in chapters_of("1\n\n첫째 이야기.\n\n2\n\n둘째 이야기.\n")] == ["1", "2"]
    assert [c.title for c in chapters_of("제1장 봄\n\n이야기 하나.\n\n제2장 여름\n\n이야기 둘.\n")] == \
        ["제1장 봄", "제2장 여름"]
    path = tmp_path / "notes.txt"
    path.write_text("First paragraph of a plain\nwrapped file.\n\nSecond paragraph here.\n", encoding="utf-8")
    book = read_book(path, title="Notes", author="Me")
    assert (book.meta.id, book.meta.title, book.meta.author, book.meta.source) == ("notes", "Notes", "Me",
                                                                                     "file:notes.txt")
    assert [c.paragraphs for c in book.chapters] == [["First paragraph of a plain wrapped file.",
                                                      "Second paragraph here."]]


def test_utf8_bom_and_undeclared_latin1(tmp_path):
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffCafé au lait.\n".encode("utf-8"))
    assert read_book(bom).chapters[0].paragraphs == ["Café au lait."]
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Le café était très bon, dit-il.\n".encode("latin-1"))
    assert read_book(latin).chapters[0].paragraphs == ["Le café était très bon, dit-il."]


def test_epub_chapters_and_metadata(tmp_path):
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("test-epub")
    book.set_title("The Little Test")
    book.set_language("en")
    book.add_author("A. Writer")
    chapters = []
    for n, (title, paras) in enumerate([("The Beginning", ["It began at dawn.", "Nobody saw it."]),
                                        ("The End", ["It ended at dusk."])], start=1):
        c = epub.EpubHtml(title=title, file_name=f"c{n}.xhtml", lang="en")
        c.content = f"<html><body><h1>{title}</h1>" + "".join(f"<p>{p}</p>" for p in paras) + "</body></html>"
        book.add_item(c)
        chapters.append(c)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = chapters
    path = tmp_path / "little.epub"
    epub.write_epub(str(path), book)
    parsed = read_book(path)
    assert (parsed.meta.title, parsed.meta.author, parsed.meta.language) == ("The Little Test", "A. Writer", "en")
    assert [(c.title, c.paragraphs) for c in parsed.chapters] == [
        ("The Beginning", ["It began at dawn.", "Nobody saw it."]), ("The End", ["It ended at dusk."])]


@pytest.mark.parametrize("name, content, problem", [
    ("empty.txt", b"", "file is empty"),
    ("blank.txt", b"\n\n   \n", "file is empty"),
    ("picture.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "binary file"),
    ("mixed.txt", b"Hello \x81\x82\x83 world " * 20 + "한국어".encode("utf-8"), "undecodable bytes at offset"),
    ("book.pdf", b"%PDF-1.4 some text", "unknown format '.pdf'"),
    ("broken.epub", b"PK\x03\x04 this is not really a zip", "not a readable EPUB"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadBookFile) as err:
        read_book(path)
    assert name in str(err.value) and problem in str(err.value)


def test_a_50_mb_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.txt"
    with open(path, "wb") as fh:
        fh.truncate(50 * 1024 * 1024)
    with pytest.raises(BadBookFile, match=r"huge.txt: file is 52.4 MB, larger than the 42 MB limit"):
        read_book(path, max_bytes=40 * 1024 * 1024)
