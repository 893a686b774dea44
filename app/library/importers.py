"""Reading book files: format detection, decoding, metadata, and structure.

``read_book(path, ...)`` returns a :class:`ParsedBook` (BookMeta + chapters)
or raises :class:`~app.library.errors.BadBookFile` naming the file and the
problem: empty, binary, undecodable, unknown format, larger than the limit.
Formats: Project Gutenberg plain text (header/footer stripped, metadata from
the header), plain UTF-8 text (with or without BOM; Latin-1 when declared or
when the bytes are clearly Latin-1 text), Korean text, EPUB (ebooklib).
Nothing here touches the index.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from app.domain import BookMeta
from app.library.errors import BadBookFile
from app.library.structure import (Chapter, chapters_of, declared_latin1, language_code,
                                   paragraphs_of, split_gutenberg)

TEXT_SUFFIXES = {".txt", ".text", ".md", ""}
EPUB_SUFFIXES = {".epub"}
GUTENBERG_LICENCE = "Public domain in the USA; Project Gutenberg License (gutenberg.org/license)"


@dataclass
class ParsedBook:
    meta: BookMeta
    chapters: list[Chapter]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def slugify(text: str) -> str:
    slug = re.sub(r"[^\w]+", "-", text.lower(), flags=re.UNICODE).strip("-")
    return slug[:60] or "book"


def _looks_binary(data: bytes) -> bool:
    sample = data[:8192]
    if b"\x00" in sample:
        return True
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13, 27))
    return controls > max(8, len(sample) // 100)


def decode_text(data: bytes, path: Path, encoding: str | None = None) -> str:
    """UTF-8 (BOM stripped); Latin-1 when declared, asked for, or clearly Latin-1; else an error."""
    if encoding:
        try:
            return data.decode(encoding).lstrip("\ufeff")
        except (UnicodeDecodeError, LookupError) as exc:
            raise BadBookFile(path, f"cannot decode as {encoding}: {exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf8_error = exc
    if declared_latin1(data[:4096]):
        return data.decode("latin-1")
    high = [b for b in data if b >= 0x80]
    # Latin-1 prose: a few accented letters (0xC0-0xFF) and punctuation (0xA0-0xBF),
    # never C1 controls, and mostly ASCII.
    if high and all(b >= 0xA0 for b in high) and len(high) < len(data) * 0.3:
        return data.decode("latin-1")
    raise BadBookFile(path, f"undecodable bytes at offset {utf8_error.start}: not UTF-8 and not "
                      "Latin-1 text", "convert it to UTF-8 or pass --encoding")


class _HtmlText(HTMLParser):
    """Headings and paragraphs of one XHTML document of an EPUB."""

    BLOCKS = {"p", "div", "li", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "br", "tr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[tuple[str, str]] = []   # (tag, text)
        self._buf: list[str] = []
        self._tag = "p"
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "head"):
            self._skip += 1
        elif tag in self.BLOCKS:
            self._flush()
            self._tag = tag

    def handle_endtag(self, tag):
        if tag in ("script", "style", "head"):
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCKS:
            self._flush()
            self._tag = "p"

    def handle_data(self, data):
        if not self._skip:
            self._buf.append(data)

    def _flush(self):
        text = re.sub(r"\s+", " ", "".join(self._buf)).strip()
        if text:
            self.parts.append((self._tag, text))
        self._buf = []


def _read_epub(path: Path, data: bytes) -> tuple[dict[str, str], list[Chapter]]:
    import ebooklib
    from ebooklib import epub

    try:
        book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": True})
    except Exception as exc:  # ebooklib raises many types for broken archives
        raise BadBookFile(path, f"not a readable EPUB: {exc}") from exc

    def first(field: str) -> str:
        values = book.get_metadata("DC", field)
        return str(values[0][0]).strip() if values else ""

    meta = {"title": first("title"), "author": first("creator"), "language": first("language")}
    chapters: list[Chapter] = []
    for item_id, _linear in book.spine:
        item = book.get_item_with_id(item_id)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        parser = _HtmlText()
        parser.feed(item.get_content().decode("utf-8", errors="replace"))
        parser.close()
        parser._flush()
        title = next((t for tag, t in parser.parts if tag in ("h1", "h2", "h3")), "")
        paras = [t for tag, t in parser.parts if t != title or tag not in ("h1", "h2", "h3")]
        if paras:
            chapters.append(Chapter(number=0, title=title or f"Section {len(chapters) + 1}",
                                    paragraphs=paras))
    for n, chapter in enumerate(chapters, start=1):
        chapter.number = n
    return meta, chapters


def read_book(path: Path, *, book_id: str | None = None, title: str | None = None,
              author: str | None = None, language: str | None = None, source: str | None = None,
              licence: str | None = None, encoding: str | None = None,
              max_bytes: int = 40 * 1024 * 1024, data: bytes | None = None) -> ParsedBook:
    """Parse one book file; options override what the file says about itself."""
    path = Path(path)
    if data is None:
        if not path.is_file():
            raise BadBookFile(path, "no such file")
        size = path.stat().st_size
        if size > max_bytes:
            raise BadBookFile(path, f"file is {size / 1e6:.1f} MB, larger than the "
                              f"{max_bytes / 1e6:.0f} MB limit", "raise BOOKBOT_MAX_BOOK_BYTES")
        data = path.read_bytes()
    elif len(data) > max_bytes:
        raise BadBookFile(path, f"file is {len(data) / 1e6:.1f} MB, larger than the "
                          f"{max_bytes / 1e6:.0f} MB limit", "raise BOOKBOT_MAX_BOOK_BYTES")
    if not data.strip():
        raise BadBookFile(path, "file is empty")
    suffix = path.suffix.lower()
    is_zip = data[:4] == b"PK\x03\x04"
    header: dict[str, str] = {}
    number = None
    if suffix in EPUB_SUFFIXES or (is_zip and b"application/epub+zip" in data[:200]):
        if not is_zip or not zipfile.is_zipfile(io.BytesIO(data)):
            raise BadBookFile(path, "not a readable EPUB: not a zip archive")
        header, chapters = _read_epub(path, data)
        fmt = "epub"
    elif suffix in TEXT_SUFFIXES:
        if _looks_binary(data):
            raise BadBookFile(path, "binary file, not text", "supported: .txt (UTF-8/Latin-1), .epub")
        text = decode_text(data, path, encoding).replace("\r\n", "\n").replace("\r", "\n")
        parts = split_gutenberg(text)
        if parts is not None:
            header, number = parts.header, parts.ebook_number
            body = parts.body
            fmt = "gutenberg"
        else:
            body = text
            fmt = "text"
        chapters = chapters_of(body, untitled=title or header.get("title") or path.stem)
    else:
        raise BadBookFile(path, f"unknown format '{suffix}'", "supported: .txt (UTF-8/Latin-1), .epub")
    if not any(c.paragraphs for c in chapters):
        raise BadBookFile(path, "no text found in the file")
    book_title = title or header.get("title") or path.stem.replace("_", " ")
    resolved_language = language or language_code(header.get("language", "")) if (
        language or header.get("language")) else _guess_language(chapters)
    if book_id is None:
        book_id = f"gutenberg-{number}" if number else slugify(path.stem)
    meta = BookMeta(
        id=book_id, title=book_title, author=author or header.get("author") or "Unknown",
        language=resolved_language,
        source=source or (f"gutenberg:{number}" if number else f"file:{path.name}"),
        licence=licence or (GUTENBERG_LICENCE if fmt == "gutenberg" else ""),
        sha256=sha256_bytes(data))
    return ParsedBook(meta=meta, chapters=chapters)


def _guess_language(chapters: list[Chapter]) -> str:
    sample = " ".join(p for c in chapters[:2] for p in c.paragraphs[:20])[:5000]
    hangul = sum(1 for ch in sample if "\uac00" <= ch <= "\ud7a3")
    letters = sum(1 for ch in sample if ch.isalpha()) or 1
    return "ko" if hangul / letters > 0.3 else "en"


__all__ = ["ParsedBook", "read_book", "decode_text", "paragraphs_of", "sha256_bytes", "slugify"]
