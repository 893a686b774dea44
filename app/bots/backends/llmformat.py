"""Prompts and JSON schemas for LLM backends, and a tolerant reader of what models send back.

Owns: the JSON schema of a step (``{"citations": [{"excerpt_id", "quote"}], "text"}``) in two
forms -- free (``STEP_SCHEMA``) and *constrained* (``step_schema``): the excerpt id is an enum
of the labels E1..Ek of the excerpts retrieved for this step and the quote an enum of that
excerpt's sentences, so a server with grammar or structured-output support cannot return an
invented citation; the reasoning text stays free.  Also the chat messages for a step (with
editors' approved or corrected steps as few-shot exemplars) and for the answer, reading a
step from JSON, fenced JSON, truncated JSON (pydantic's partial JSON parser) or plain text
with ``[E2] "quote"`` markers, and the partial fields of a JSON stream so a step can be shown
while it arrives.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from pydantic_core import from_json

from app.analyzer import split_sentences
from app.bots.backends.base import AnswerRequest, Draft, StepRequest
from app.bots.grounding import quote_in_text
from app.domain import Citation, Excerpt

# Citations come first: the model picks its quotes before it writes, and a truncated reply
# still carries them.  (JSON-schema grammars keep this property order.)
STEP_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "citations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"excerpt_id": {"type": "string"}, "quote": {"type": "string"}},
                "required": ["excerpt_id", "quote"],
                "additionalProperties": False,
            },
        },
        "text": {"type": "string"},
    },
    "required": ["citations", "text"],
    "additionalProperties": False,
}
EXCERPT_CHARS = 900
QUOTE_CHARS = 240            # a longer sentence is offered as its first words (still verbatim)
MAX_QUOTES_PER_EXCERPT = 16
MAX_CITATIONS = 2


def quote_choices(excerpt: Excerpt, shown_chars: int = EXCERPT_CHARS) -> list[str]:
    """The quotes a constrained step may pick from one excerpt: the sentences of the part shown.

    Each is checked with the same matcher validation uses, so every choice is a valid quote."""
    out: list[str] = []
    for sentence in split_sentences(excerpt.text[:shown_chars]):
        quote = " ".join(sentence.split())
        if len(quote) > QUOTE_CHARS:
            quote = quote[:QUOTE_CHARS].rsplit(" ", 1)[0]
        if quote and quote not in out and quote_in_text(quote, excerpt.text):
            out.append(quote)
        if len(out) >= MAX_QUOTES_PER_EXCERPT:
            break
    return out


def step_schema(excerpts: Sequence[Excerpt], constrained: bool = True) -> dict[str, Any]:
    """The JSON schema sent with a step request.

    Constrained: each citation is one of ``{"excerpt_id": "E<i>", "quote": <a sentence of
    excerpt i>}`` (``anyOf`` over the excerpts, so id and quote always belong together), and
    at least one citation is required.  Free (``STEP_SCHEMA``) when not constrained or when
    no excerpt has a quotable sentence."""
    if not constrained:
        return STEP_SCHEMA
    options = []
    for label, excerpt in zip(labels_for(excerpts), excerpts):
        quotes = quote_choices(excerpt)
        if quotes:
            options.append({"type": "object",
                            "properties": {"excerpt_id": {"type": "string", "enum": [label]},
                                           "quote": {"type": "string", "enum": quotes}},
                            "required": ["excerpt_id", "quote"], "additionalProperties": False})
    if not options:
        return STEP_SCHEMA
    items = options[0] if len(options) == 1 else {"anyOf": options}
    return {"type": "object",
            "properties": {"citations": {"type": "array", "items": items, "minItems": 1,
                                         "maxItems": MAX_CITATIONS},
                           "text": {"type": "string"}},
            "required": ["citations", "text"], "additionalProperties": False}


def labels_for(excerpts: Sequence[Excerpt]) -> dict[str, str]:
    """{"E1": excerpt id, ...} in retrieval order."""
    return {f"E{i + 1}": e.id for i, e in enumerate(excerpts)}


def resolve_id(raw: str, labels: dict[str, str]) -> str:
    value = str(raw or "").strip().strip("[]()<> ").strip()
    if value in labels.values():
        return value
    key = value.upper()
    if key in labels:
        return labels[key]
    if key.isdigit() and f"E{key}" in labels:
        return labels[f"E{key}"]
    return value


def persona(request_character) -> str:
    c = request_character
    return (f"You are {c.name}. {c.description}\nPersonality: {c.personality}\n"
            f"How you speak: {c.speech_style}\n"
            + ("Write in Korean.\n" if c.language.startswith("ko") else ""))


def step_messages(request: StepRequest, structured: bool, constrained: bool = False) -> list[dict[str, str]]:
    c = request.character
    labels = labels_for(request.excerpts)
    system = persona(c) + (
        "You reason step by step about the reader's question, using ONLY the numbered excerpts of your "
        "book given below. Write one step: 1-3 sentences in your own voice. Support it by quoting exact "
        "words copied from an excerpt, citing that excerpt's label (E1, E2, ...). Never cite a label that "
        "is not listed and never quote words that are not in the excerpt.\n"
        'Reply with one JSON object only. Its "citations" is a list of objects, each with "excerpt_id" '
        '(a label from the list, such as E1) and "quote" (words copied exactly from that excerpt); its '
        '"text" is your step.'
    )
    if not structured:
        system += ' Start your reply with { and end it with }.'
    elif constrained:
        system += " Each quote is one whole sentence of the excerpt you cite."

    lines = [f"Question: {request.question}"]
    if request.history:
        last_q, last_a = request.history[-1]
        lines.append(f"(Earlier in this conversation the reader asked: {last_q!r}; you answered: {last_a[:300]!r})")
    if request.earlier:
        lines.append("Your earlier steps:")
        lines += [f"- {s.name}: {s.text}" for s in request.earlier]
    lines.append(f"Now the step \"{request.step.name}\": {request.step.instruction}")
    if request.exemplars:
        lines.append(f"How an editor wants the step \"{request.step.name}\" done (steps approved or "
                     "corrected for similar questions; follow their approach, not their wording):")
        lines += [f"- Question: {ex.question}\n  Step: {ex.text}" for ex in request.exemplars]
    lines.append("Excerpts:")
    for label, excerpt in zip(labels, request.excerpts):
        where = f"{excerpt.book_title or excerpt.book_id}, {excerpt.location.label()}"
        lines.append(f"[{label}] ({where}) {excerpt.text[:EXCERPT_CHARS]}")
    if request.retry:
        lines.append("Your previous attempt cited nothing valid. Copy a quote word for word from one excerpt.")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]


def answer_messages(request: AnswerRequest) -> list[dict[str, str]]:
    c = request.character
    system = persona(c) + ("Answer the reader's question in your own voice in 2-5 sentences, building on "
                           "your reasoning steps below. Say nothing the steps do not support. "
                           + (c.answer_style or ""))
    lines = []
    if c.examples:
        lines.append("How you talk (examples):")
        lines += [f"Reader: {u}\nYou: {a}" for u, a in c.examples[:2]]
    lines += [f"Question: {request.question}", "Your reasoning steps:"]
    for s in request.steps:
        quotes = "; ".join(f"\u201c{x.quote}\u201d" for x in s.citations if x.valid)
        mark = "" if s.grounded else " (not supported by the book)"
        lines.append(f"- {s.name}{mark}: {s.text}" + (f" Evidence: {quotes}" if quotes else ""))
    lines.append("Your answer:")
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]


# ------------------------------------------------------------------ parsing

_FENCE = re.compile(r"```(?:json)?\s*(.*?)(?:```|$)", re.S)
_MARKER = re.compile(r"\[?\b(E\d+)\b\]?[^\"\u201c\[\]]{0,24}?[\"\u201c]([^\"\u201d]{3,})[\"\u201d]")
_ERROR_AT = re.compile(r"line (\d+) column (\d+)")
_CITATION_KEYS = ("citations", "evidence", "quotes")


def _json_body(raw: str) -> str | None:
    """The JSON object in a reply: inside a (possibly unterminated) fence, from its first "{"."""
    body = (raw or "").strip()
    fence = _FENCE.search(body)
    if fence and "{" in fence.group(1):
        body = fence.group(1)
    start = body.find("{")
    return body[start:] if start >= 0 else None


def _error_offset(body: str, message: str) -> int | None:
    m = _ERROR_AT.search(message)
    if not m:
        return None
    line, column = int(m.group(1)), int(m.group(2))
    lines = body.split("\n")
    return sum(len(x) + 1 for x in lines[:line - 1]) + column - 1


def _loads(body: str, partial: bool | str = "trailing-strings") -> Any:
    """pydantic's partial JSON parser; a reply broken in the middle is read up to the break."""
    try:
        return from_json(body, allow_partial=partial)
    except ValueError as exc:
        cut = _error_offset(body, str(exc))
        if cut is None or cut <= 1 or cut >= len(body):
            return None
        try:
            return from_json(body[:cut], allow_partial=partial)
        except ValueError:
            return None


def _as_json(raw: str) -> Any:
    body = _json_body(raw)
    return _loads(body) if body is not None else None


def _citation_items(data: dict) -> Any:
    for key in _CITATION_KEYS:
        if data.get(key):
            return data[key]
    return []


def _citations_from(items: Any, labels: dict[str, str]) -> list[Citation]:
    out: list[Citation] = []
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        return out
    for item in items:
        if isinstance(item, dict):
            raw_id = item.get("excerpt_id") or item.get("id") or item.get("excerpt") or item.get("source") or ""
            quote = item.get("quote") or item.get("text") or ""
            out.append(Citation(excerpt_id=resolve_id(str(raw_id), labels), quote=str(quote)))
        elif isinstance(item, str):
            out.append(Citation(excerpt_id=resolve_id(item, labels), quote=""))
    return out


def parse_step_output(raw: str, labels: dict[str, str]) -> Draft | None:
    """A Draft from whatever the model wrote, or None when nothing usable is there."""
    data = _as_json(raw)
    if isinstance(data, dict):
        text = data.get("text") or data.get("step") or data.get("reasoning") or data.get("content") or ""
        citations = _citations_from(_citation_items(data), labels)
        if isinstance(text, str) and text.strip():
            return Draft(text=text.strip(), citations=citations)
        quotes = [c.quote.strip() for c in citations if c.quote.strip()]
        if quotes:   # cut off before the text: the step is what it quoted (validated like any other)
            return Draft(text=" \u2026 ".join(f"\u201c{q}\u201d" for q in quotes), citations=citations)
    plain = re.sub(r"\s+", " ", _FENCE.sub(lambda m: m.group(1), raw or "")).strip()
    if not plain or plain.startswith("{"):
        return None
    cits = [Citation(excerpt_id=resolve_id(m.group(1), labels), quote=m.group(2))
            for m in _MARKER.finditer(plain)]
    return Draft(text=plain, citations=cits)


def partial_fields(buffer: str) -> list[tuple[str, str, bool]]:
    """The "quote" and "text" string values in a streamed JSON buffer, in order: (key, value, closed).

    Read twice by pydantic's partial parser: with the unfinished string kept, and without
    it; a value the second reading lacks is still open."""
    body = _json_body(buffer)
    if body is None:
        return []
    loose, strict = _loads(body), _loads(body, partial=True)
    if not isinstance(loose, dict):
        return []
    strict = strict if isinstance(strict, dict) else {}
    out: list[tuple[str, str, bool]] = []
    for key, value in loose.items():
        if key in _CITATION_KEYS and isinstance(value, list):
            done = strict.get(key) if isinstance(strict.get(key), list) else []
            for i, item in enumerate(value):
                if isinstance(item, dict) and isinstance(item.get("quote"), str):
                    closed = i < len(done) and isinstance(done[i], dict) and "quote" in done[i]
                    out.append(("quote", item["quote"], closed))
        elif key == "text" and isinstance(value, str):
            out.append(("text", value, "text" in strict))
    return out


def partial_text_field(buffer: str) -> str | None:
    """The (possibly unfinished) value of the JSON "text" field in a streamed buffer."""
    for key, value, _ in partial_fields(buffer):
        if key == "text":
            return value
    return None


def stream_view(buffer: str) -> str | None:
    """What a reader sees of a streamed JSON step so far: quotes as they are chosen, then the text.

    Grows only by appending (a closing mark is added once a quote is complete), so the
    difference to the previous view is the delta to stream.  None when nothing is readable yet.
    """
    fields = partial_fields(buffer)
    if not fields:
        return None
    parts: list[str] = []
    for key, value, closed in fields:
        if key == "quote":
            parts.append((" " if parts else "") + "\u201c" + value + ("\u201d" if closed else ""))
        else:
            parts.append(("\n" if parts else "") + value)
    return "".join(parts)
