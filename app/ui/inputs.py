"""Reader input made safe before the engine or the database sees it (no chainlit import).

Owns: normalising a message (Unicode NFC; control characters other than newline
and tab removed; format characters — zero-width spaces and joiners, bidi
overrides, byte-order marks, soft hyphens — removed), refusing a message that
holds a lone UTF-16 surrogate (it cannot be stored or searched; the reply says
so plainly), and the short form in which a refused message is kept in the chat
history (its first ``KEEP_CHARS`` characters and its length, never the whole
text).  The emptiness and length rules themselves are ``present.check_question``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from app.ui import present

KEEP_CHARS = 200               # what is kept of a refused message
MAX_NAME_CHARS = 200           # a thread's name (Chainlit takes it from the first message)
_KEPT_CONTROLS = {"\n", "\t"}


@dataclass(frozen=True)
class Checked:
    text: str                  # the normalised text (what the engine gets when accepted)
    problem: str | None        # why it is refused, for the reader; None when accepted


def lone_surrogate(text: str) -> str | None:
    """The first unpaired surrogate code point in ``text`` (Python keeps them as such), if any."""
    for ch in text:
        if "\ud800" <= ch <= "\udfff":
            return ch
    return None


def normalise(text: str) -> str:
    """NFC, CRLF → LF, control and format (zero-width, bidi) characters removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = [ch for ch in text
            if ch in _KEPT_CONTROLS or unicodedata.category(ch) not in ("Cc", "Cf")]
    return unicodedata.normalize("NFC", "".join(kept))


def scrub(text: str) -> str:
    """Storable text: lone surrogates become U+FFFD, then `normalise`."""
    if lone_surrogate(text) is not None:
        text = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return normalise(text)


def check_message(text: object) -> Checked:
    """Normalise a reader's message and say whether it may go to the engine."""
    if not isinstance(text, str):
        return Checked("", "Your message could not be read (it was not text). Nothing was sent.")
    bad = lone_surrogate(text)
    if bad is not None:
        return Checked(scrub(text), f"Your message contains a broken character (an unpaired surrogate, "
                                    f"U+{ord(bad):04X} — often half of an emoji lost while copying). "
                                    "Nothing was sent to the character: retype the message or paste it again.")
    clean = normalise(text)
    return Checked(clean, present.check_question(clean))


def stored_form(text: object) -> str:
    """What the chat history keeps of a message: all of it when accepted, a short note when refused."""
    if not isinstance(text, str):
        return ""
    checked = check_message(text)
    if checked.problem is None:
        return checked.text
    clean = scrub(text)
    if len(clean) <= KEEP_CHARS:
        return clean
    return f"{clean[:KEEP_CHARS]}… [refused message of {len(text):,} characters; not stored in full]"


def thread_name(name: object) -> str | None:
    """A storable thread name (Chainlit names a thread after its first message)."""
    if not isinstance(name, str):
        return None
    clean = scrub(name)
    return clean if len(clean) <= MAX_NAME_CHARS else clean[: MAX_NAME_CHARS - 1] + "…"
