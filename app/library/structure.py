"""Book structure: Gutenberg header/footer stripping, chapter headings, paragraphs.

Input is decoded text; output is a list of :class:`Chapter` (1-based numbers,
a title, whole paragraphs).  Recognised headings: ``CHAPTER I.``/``Chapter 1``
(+ a title on the same or next line), ``ADVENTURE I. A SCANDAL IN BOHEMIA``,
``VII. THE ADVENTURE OF …`` (all-caps title), ``PART I`` / ``BOOK II``
(prefixed to the chapters under them), ``STAVE``, Korean ``제1장`` / ``1화``.
A book without headings becomes one chapter; when it has no major headings,
lone section numbers (``1``, ``II.``, ``一``) split it instead.  Contents
lists (headings with no text under them) and short front matter are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.analyzer import hard_wrapped, line_blocks

_ROMAN = r"[IVXLCDM]+"
_NUMWORD = (r"ONE|TWO|THREE|FOUR|FIVE|SIX|SEVEN|EIGHT|NINE|TEN|ELEVEN|TWELVE|THIRTEEN|FOURTEEN|"
            r"FIFTEEN|SIXTEEN|SEVENTEEN|EIGHTEEN|NINETEEN|TWENTY|FIRST|SECOND|THIRD|LAST")
_CHAPTER_RE = re.compile(
    rf"^(?:CHAPTER|STAVE|LETTER|ADVENTURE)\s+(?:{_ROMAN}|\d+|{_NUMWORD})\b[.:]?(?:\s+(?P<title>.+))?$",
    re.IGNORECASE)
_CAPS_TITLE_RE = re.compile(rf"^{_ROMAN}\.\s+(?P<title>[A-Z][A-Z0-9 ,'’\-:;!?&]+)$")
_PART_RE = re.compile(rf"^(?:PART|BOOK|VOLUME)\s+(?:{_ROMAN}|\d+|{_NUMWORD})\b[.:,]?(?:\s+.+)?$",
                      re.IGNORECASE)
_KO_CHAPTER_RE = re.compile(r"^(?:제\s*\d+\s*[장화부절편]|\d+\s*[장화])(?:[.:]?\s+.+)?$")
_LONE_NUMBER_RE = re.compile(rf"^(?:{_ROMAN}|\d+|[一二三四五六七八九十]+)\.?$")
_START_RE = re.compile(r"^\*{3}\s*START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK.*$",
                       re.IGNORECASE | re.MULTILINE)
_END_RE = re.compile(r"^\*{3}\s*END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK.*$",
                     re.IGNORECASE | re.MULTILINE)
_END_LINE_RE = re.compile(r"^\s*End of (?:the )?Project Gutenberg.*\Z", re.IGNORECASE | re.MULTILINE | re.DOTALL)
_NOISE_RE = re.compile(r"^(?:\[Illustration[^\]]*\]|\*(?:\s*\*)+|Produced by .*|Transcribed from .*)$",
                       re.IGNORECASE | re.DOTALL)
_HEADER_FIELDS = ("Title", "Author", "Language", "Release Date", "Posting Date",
                  "Character set encoding")
_LANGUAGES = {"english": "en", "korean": "ko", "french": "fr", "german": "de", "spanish": "es",
              "italian": "it", "portuguese": "pt", "dutch": "nl", "japanese": "ja",
              "chinese": "zh", "russian": "ru", "latin": "la", "finnish": "fi"}
FRONT_MATTER_KEEP_CHARS = 2000


@dataclass
class Chapter:
    number: int
    title: str
    paragraphs: list[str] = field(default_factory=list)


@dataclass
class GutenbergParts:
    header: dict[str, str]
    body: str
    ebook_number: int | None


def split_gutenberg(text: str) -> GutenbergParts | None:
    """Header fields, the text between the START/END markers, and the ebook number; None if no markers."""
    start = _START_RE.search(text)
    if start is None:
        return None
    end = _END_RE.search(text, start.end())
    header_text = text[:start.start()]
    body = text[start.end():end.start() if end else len(text)]
    tail = _END_LINE_RE.search(body)
    if tail:
        body = body[:tail.start()]
    header: dict[str, str] = {}
    for name in _HEADER_FIELDS:
        m = re.search(rf"^{re.escape(name)}:\s*(.+?)\s*$", header_text, re.IGNORECASE | re.MULTILINE)
        if m:
            header[name.lower()] = m.group(1)
    number = None
    m = re.search(r"\[E-?Book #(\d+)\]", header_text, re.IGNORECASE)
    if m:
        number = int(m.group(1))
    return GutenbergParts(header=header, body=body, ebook_number=number)


def language_code(name: str) -> str:
    name = name.strip().lower()
    if len(name) in (2, 3) and name.isalpha():
        return name
    return _LANGUAGES.get(name.split()[0] if name else "", name[:2] or "en")


def declared_latin1(raw_head: bytes) -> bool:
    """Does a Gutenberg header declare ISO-8859-1 / Latin-1 / cp1252?"""
    m = re.search(rb"Character set encoding:\s*([\w\-]+)", raw_head, re.IGNORECASE)
    return bool(m and m.group(1).lower() in (b"iso-8859-1", b"latin-1", b"latin1",
                                             b"windows-1252", b"cp1252"))


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def paragraphs_of(text: str) -> list[str]:
    """Whole paragraphs: blank-line blocks of hard-wrapped text, else one paragraph per line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if hard_wrapped(text):
        paras = [_clean(" ".join(block)) for block in line_blocks(text)]
    else:
        paras = [_clean(line) for line in text.split("\n") if line.strip()]
    return [p for p in paras if p]


def _heading_kind(block: str) -> tuple[str, bool] | None:
    """('chapter'|'part'|'number', has its own title) when a paragraph is a heading."""
    if len(block) > 120:
        return None
    if m := _CHAPTER_RE.match(block):
        return "chapter", bool(m.group("title"))
    if _CAPS_TITLE_RE.match(block):
        return "chapter", True
    if m := _KO_CHAPTER_RE.match(block):
        return "chapter", bool(re.search(r"\s\S", block))
    if _PART_RE.match(block):
        return "part", True
    if _LONE_NUMBER_RE.match(block):
        return "number", False
    return None


def _is_title_line(block: str) -> bool:
    """A short line right after a bare 'Chapter I' that names the chapter."""
    return (len(block) <= 80 and not block.endswith((".”", "?”", "!”", "’", "\"", ","))
            and len(block.split()) <= 12 and _heading_kind(block) is None
            and not re.search(r"[.!?]\s+\S", block)
            and (block.isupper() or not block.endswith((".", "!", "?", "…"))))


def chapters_of(text: str, untitled: str = "Text") -> list[Chapter]:
    """Detect chapters in a book body; paragraphs are kept whole."""
    paras = [p for p in paragraphs_of(text) if not _NOISE_RE.match(p)]
    kinds = [_heading_kind(p) for p in paras]
    has_major = any(k and k[0] == "chapter" for k in kinds)
    split_kinds = {"chapter"} if has_major else {"number"}
    chapters: list[Chapter] = []
    front: list[str] = []
    part = ""
    current: Chapter | None = None
    i = 0
    while i < len(paras):
        para, kind = paras[i], kinds[i]
        if kind and kind[0] == "part":
            part = para.replace("_", "").rstrip(".")
            i += 1
            continue
        if kind and kind[0] in split_kinds:
            title = para
            if (kind[0] == "chapter" and not kind[1] and i + 1 < len(paras) and kinds[i + 1] is None and _is_title_line(paras[i + 1])
                    and i + 2 < len(paras)):
                title = f"{para.rstrip('.')}. {paras[i + 1]}"
                i += 1
            if part:
                title = f"{part} — {title}"
            current = Chapter(number=0, title=title)
            chapters.append(current)
            i += 1
            continue
        if kind and kind[0] == "number" and has_major:
            i += 1          # sub-section numbers inside a chapter ("I.", "II.") are not text
            continue
        (current.paragraphs if current else front).append(para)
        i += 1
    chapters = [c for c in chapters if c.paragraphs]          # contents lists, empty headings
    if sum(len(p) for p in front) > FRONT_MATTER_KEEP_CHARS or not chapters:
        title = "Front matter" if chapters else untitled
        if front:
            chapters.insert(0, Chapter(number=0, title=title, paragraphs=front))
    for n, chapter in enumerate(chapters, start=1):
        chapter.number = n
    return chapters
