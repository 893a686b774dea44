"""What the chat shows, as plain data: no chainlit import, so it is unit-tested directly.

Owns: checking a reader's message before it reaches the engine (empty, too
long, another language than the character's book), turning an excerpt and the
quotes cited from it into highlight segments for the side panel, the props of
the per-step review control (``public/elements/StepReview.jsx``), and parsing
the payload that control sends back — including the server-side role check
(a reader who hand-crafts an editor payload is refused before anything is
stored).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from app.domain import Citation, Excerpt, FaultTag, Review, ReviewKind, Role, Step

MAX_QUESTION_CHARS = 4000
MAX_CORRECTION_CHARS = 8000       # the review store's limit (app.review.models.MAX_CORRECTION_CHARS)

FAULT_LABELS: dict[str, str] = {
    FaultTag.not_in_book.value: "not in the book",
    FaultTag.wrong_excerpt.value: "wrong excerpt",
    FaultTag.out_of_character.value: "out of character",
    FaultTag.faulty_logic.value: "faulty logic",
    FaultTag.other.value: "other",
}

EDITOR_ROLES = (Role.editor, Role.lab)

LANGUAGE_NAMES = {"en": "English", "ko": "Korean"}


class PayloadError(ValueError):
    """A review payload that is refused; the message is shown to the user as is."""


# ---------------------------------------------------------------- questions

def check_question(text: str | None) -> str | None:
    """Return a message explaining why this question is not sent, or None if it is fine."""
    if text is None or not text.strip():
        return "Your message is empty — type a question about the book and press Enter."
    if len(text) > MAX_QUESTION_CHARS:
        return (f"Your message is {len(text):,} characters long; the limit is "
                f"{MAX_QUESTION_CHARS:,}. Ask a shorter question (a sentence or two is best) "
                "— nothing was sent to the character.")
    return None


def _script_of(ch: str) -> str | None:
    if not ch.isalpha():
        return None
    if "\uac00" <= ch <= "\ud7a3" or "\u1100" <= ch <= "\u11ff" or "\u3130" <= ch <= "\u318f":
        return "ko"
    name = unicodedata.name(ch, "")
    if name.startswith("LATIN"):
        return "latin"
    if name.startswith("CJK") or name.startswith("HIRAGANA") or name.startswith("KATAKANA"):
        return "cjk"
    if name.startswith("CYRILLIC"):
        return "cyrillic"
    return "other"


def question_script(text: str) -> str | None:
    """The dominant writing system of a question ("ko", "latin", ...), None if it has no letters."""
    counts: dict[str, int] = {}
    for ch in text:
        script = _script_of(ch)
        if script:
            counts[script] = counts.get(script, 0) + 1
    if not counts:
        return None
    return max(counts, key=counts.__getitem__)


def language_notice(question: str, book_language: str) -> str | None:
    """A plain note when the question is written in another script than the character's book."""
    script = question_script(question)
    if script is None:
        return None
    book_script = "ko" if book_language.startswith("ko") else "latin"
    if script == book_script:
        return None
    book_name = LANGUAGE_NAMES.get(book_language.split("-")[0], book_language)
    return (f"Note: this character's book is in {book_name}, and your question is not. "
            f"The search matches words of the book, so asking in {book_name} gives far better "
            "excerpts. Answering anyway.")


# ---------------------------------------------------------------- excerpts

def highlight_segments(text: str, quotes: Iterable[str]) -> list[dict[str, Any]]:
    """Split ``text`` into ``[{"text", "mark"}]`` runs where cited quotes are marked.

    Matching is case-insensitive and whitespace-tolerant; overlapping quotes merge.
    The result is plain text runs, rendered by React as text (never as HTML).
    """
    spans: list[tuple[int, int]] = []
    for quote in quotes:
        words = quote.strip().split()
        if not words:
            continue
        pattern = r"\s+".join(re.escape(w) for w in words)
        for m in re.finditer(pattern, text, flags=re.IGNORECASE):
            spans.append((m.start(), m.end()))
    spans.sort()
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    segments: list[dict[str, Any]] = []
    pos = 0
    for start, end in merged:
        if start > pos:
            segments.append({"text": text[pos:start], "mark": False})
        segments.append({"text": text[start:end], "mark": True})
        pos = end
    if pos < len(text):
        segments.append({"text": text[pos:], "mark": False})
    return segments


def short_title(title: str, limit: int = 28) -> str:
    title = title.strip() or "book"
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


MAX_SOURCES = 4   # one public/elements/Source N.jsx file per number (Chainlit loads the JSX by element name)


def excerpt_name(number: int) -> str:
    """The side-panel element name; the same text in the step output becomes the link that opens it."""
    return f"Source {number}"


def excerpt_label(excerpt: Excerpt) -> str:
    loc = excerpt.location
    return f"{short_title(excerpt.book_title or excerpt.book_id)}, ch. {loc.chapter_number} ¶{loc.paragraph_start}"


def excerpt_props(excerpt: Excerpt, citations: Sequence[Citation], number: int,
                  step_title: str = "") -> dict[str, Any]:
    quotes = [c.quote for c in citations if c.excerpt_id == excerpt.id and c.quote and c.valid]
    loc = excerpt.location
    return {
        "number": number,
        "step": step_title,
        "excerpt_id": excerpt.id,
        "book": excerpt.book_title or excerpt.book_id,
        "chapter": chapter_heading(loc.chapter_number, loc.chapter_title),
        "location": (f"paragraph {loc.paragraph_start}" if loc.paragraph_start == loc.paragraph_end
                     else f"paragraphs {loc.paragraph_start}–{loc.paragraph_end}"),
        "segments": highlight_segments(excerpt.text, quotes),
        "cited": bool(quotes) or any(c.excerpt_id == excerpt.id and c.valid for c in citations),
    }


def chapter_heading(number: int, title: str) -> str:
    """"Chapter 3: Silver Blaze"; a title that already names its chapter is shown as it is."""
    title = (title or "").strip().rstrip(".")
    if not title:
        return f"Chapter {number}"
    if re.search(r"\bchapter\b|\bpart\b|장", title, flags=re.IGNORECASE):
        return title
    return f"Chapter {number}: {title}"


def cited_excerpts(step: Step, limit: int = MAX_SOURCES) -> list[Excerpt]:
    """The excerpts to show for a step: cited ones first (in citation order), then retrieved."""
    by_id = {e.id: e for e in step.excerpts}
    chosen: list[Excerpt] = []
    for c in step.citations:
        e = by_id.get(c.excerpt_id)
        if c.valid and e is not None and e not in chosen:
            chosen.append(e)
    if not chosen:
        chosen = list(step.excerpts[:1])
    return chosen[:limit]


def step_title(index: int, name: str, visit: int = 1) -> str:
    """"3 · Hypothesise"; a step the procedure came back to says so: "5 · Hypothesise ↺ revisit 2"."""
    return f"{index + 1} · {name}" + (f" ↺ revisit {visit}" if visit > 1 else "")


def jump_line(reason: str) -> str:
    """The one line saying why the procedure jumped (markdown, shown above the step's text)."""
    return f"↪ _{reason.strip()}_" if reason.strip() else ""


def path_line(steps: Sequence[Step]) -> str:
    """"Observe → Hypothesise → Eliminate → Hypothesise ↺2 → …", or "" for a path that is the plain list."""
    if all(s.visit == 1 and not s.via for s in steps):
        return ""
    return "Path: " + " → ".join(s.name + (f" ↺{s.visit}" if s.visit > 1 else "") for s in steps)


def step_markdown(step: Step, sources: Sequence[tuple[str, str]]) -> str:
    """The step's text plus one line per source: ``(element name, label)``; names become links."""
    body = step.text.strip() or "_(no text)_"
    if step.via:
        body = jump_line(step.via) + "\n\n" + body
    if sources:
        body += "\n\n" + "\n".join(f"- {name}: {label}" for name, label in sources)
    invalid = [c for c in step.citations if not c.valid]
    if invalid:
        body += "\n\n_" + "; ".join(f"dropped citation {c.excerpt_id}: {c.problem}" for c in invalid[:3]) + "_"
    if step.origin in ORIGIN_LABELS:   # which steps the model wrote and which fell back offline
        body += f"\n\n_{ORIGIN_LABELS[step.origin]}_"
    return body


ORIGIN_LABELS = {"model": "Written by the language model.",
                 "fallback": "Offline fallback: the language model failed, so this step is quoted from the book."}


# ---------------------------------------------------------------- review control

def review_dict(review: Review | None) -> dict[str, Any] | None:
    if review is None:
        return None
    stamp = review.updated_at or review.created_at
    return {
        "rating": review.rating,
        "correction": review.correction,
        "fault_tags": [t.value if isinstance(t, FaultTag) else str(t) for t in review.fault_tags],
        "source": review.source.value if hasattr(review.source, "value") else str(review.source),
        "updated": stamp.strftime("%Y-%m-%d %H:%M UTC") if stamp else "",
    }


def can_edit(role: Role | str) -> bool:
    return Role(role) in EDITOR_ROLES


def review_props(step_id: str, step_name: str, role: Role | str, *,
                 reader: Review | None = None, editor: Review | None = None,
                 turn_id: str = "", step_index: int = 0) -> dict[str, Any]:
    """Props of StepReview.jsx for one viewer; editor fields only exist for editor roles."""
    role = Role(role)
    props: dict[str, Any] = {
        "step_id": step_id, "turn_id": turn_id, "step_index": step_index,
        "step_name": step_name, "role": role.value,
        "reader": review_dict(reader),
    }
    if can_edit(role):
        props["editor"] = review_dict(editor)
        props["fault_labels"] = FAULT_LABELS
    return props


@dataclass(frozen=True)
class ReviewRequest:
    step_id: str
    kind: ReviewKind
    rating: int
    correction: str
    fault_tags: tuple[FaultTag, ...]

    def to_review(self, reviewer: str) -> Review:
        return Review(step_id=self.step_id, reviewer=reviewer, kind=self.kind, rating=self.rating,
                      correction=self.correction, fault_tags=self.fault_tags)


def parse_review_payload(payload: Any, role: Role | str) -> ReviewRequest:
    """Validate what StepReview.jsx sent; raise PayloadError with a clear message otherwise.

    The role comes from the server-side session, never from the payload.
    """
    if not isinstance(payload, dict):
        raise PayloadError("review refused: malformed request")
    step_id = payload.get("step_id")
    if not isinstance(step_id, str) or not step_id or len(step_id) > 200:
        raise PayloadError("review refused: no step given")
    try:
        kind = ReviewKind(payload.get("kind"))
    except ValueError:
        raise PayloadError("review refused: kind must be 'reader' or 'editor'") from None
    if kind is ReviewKind.editor and not can_edit(role):
        raise PayloadError(f"review refused: rating steps −1/0/+1 needs the editor role (you are {Role(role).value})")
    rating = payload.get("rating")
    if isinstance(rating, bool) or not isinstance(rating, int):
        raise PayloadError("review refused: rating must be a whole number")
    allowed = (-1, 1) if kind is ReviewKind.reader else (-1, 0, 1)
    if rating not in allowed:
        raise PayloadError(f"review refused: rating {rating} is not one of {allowed}")
    correction = payload.get("correction") or ""
    tags_raw = payload.get("fault_tags") or []
    if kind is ReviewKind.reader and (correction or tags_raw):
        raise PayloadError("review refused: corrections and fault tags are for editors")
    if not isinstance(correction, str):
        raise PayloadError("review refused: correction must be text")
    if len(correction) > MAX_CORRECTION_CHARS:
        raise PayloadError(f"review refused: correction is {len(correction):,} characters; "
                           f"the limit is {MAX_CORRECTION_CHARS:,}")
    if not isinstance(tags_raw, list):
        raise PayloadError("review refused: fault tags must be a list")
    tags: list[FaultTag] = []
    for t in tags_raw:
        try:
            tag = FaultTag(t)
        except ValueError:
            raise PayloadError(f"review refused: unknown fault tag {t!r}; use one of "
                               + ", ".join(FAULT_LABELS)) from None
        if tag not in tags:
            tags.append(tag)
    return ReviewRequest(step_id, kind, rating, correction.strip(), tuple(tags))


# ---------------------------------------------------------------- icons

def icon_url(icon: str, fallback: str = "/public/avatars/bookbot.svg") -> str:
    """A chat-profile icon: URLs pass through; an emoji (as in the cards) becomes an SVG data URL."""
    icon = (icon or "").strip()
    if not icon:
        return fallback
    if icon.startswith(("/", "http://", "https://", "data:")):
        return icon
    from urllib.parse import quote

    glyph = icon[:8].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    svg = ("<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 64 64'>"
           "<rect width='64' height='64' rx='14' fill='#f1ece1'/>"
           f"<text x='32' y='45' font-size='38' text-anchor='middle'>{glyph}</text></svg>")
    return "data:image/svg+xml;charset=utf-8," + quote(svg)


def missing_books_notice(book_ids, present_ids) -> str | None:
    """What to tell a reader whose character's books are not (all) in the library, with the fix."""
    missing = [b for b in book_ids if b not in present_ids]
    if not missing:
        return None
    which = "none of my books are" if len(missing) == len(book_ids) else "some of my books are not"
    return (f"**Books missing.** {which.capitalize()} in the library yet ({', '.join(missing)}), so my steps "
            "can only stand on what is there. Project Gutenberg could not be reached on start; a lab member "
            "fixes it with `bookbot books sync --from /path/to/books` (a folder with the book files), or by "
            "restarting with network access.")
