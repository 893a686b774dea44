"""Prompts for LLM backends and a tolerant parser for what models send back.

Owns: the JSON schema of a step (``{"text", "citations": [{"excerpt_id",
"quote"}]}``), the chat messages for a step and for the answer (excerpts shown
under short labels E1..Ek), reading a step from JSON, fenced JSON, truncated
JSON or plain text with ``[E2] "quote"`` markers, and pulling the partial
``text`` field out of a JSON stream so it can be shown while it arrives.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from app.bots.backends.base import AnswerRequest, Draft, StepRequest
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


def step_messages(request: StepRequest, structured: bool) -> list[dict[str, str]]:
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

    lines = [f"Question: {request.question}"]
    if request.history:
        last_q, last_a = request.history[-1]
        lines.append(f"(Earlier in this conversation the reader asked: {last_q!r}; you answered: {last_a[:300]!r})")
    if request.earlier:
        lines.append("Your earlier steps:")
        lines += [f"- {s.name}: {s.text}" for s in request.earlier]
    lines.append(f"Now the step \"{request.step.name}\": {request.step.instruction}")
    if request.exemplars:
        lines.append("Examples of good steps written before:")
        lines += [f"- {ex.text}" for ex in request.exemplars]
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


def _scan_json(text: str) -> tuple[list[str], bool, list[int]]:
    """Closers still owed (innermost last), whether a string is open, and the positions of commas outside strings."""
    stack: list[str] = []
    in_str = esc = False
    cut_points: list[int] = []
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
        elif ch == ",":
            cut_points.append(i)
    return stack, in_str, cut_points


def _close_json(text: str) -> str | None:
    """Best effort: close strings/brackets of truncated JSON and parse-check candidates."""
    stack, in_str, cut_points = _scan_json(text)
    if not stack and not in_str:
        return text

    def closers(prefix: str) -> str:
        owed, open_str, _ = _scan_json(prefix)
        return ('"' if open_str else "") + "".join(reversed(owed))

    attempts = [text.rstrip().rstrip("\\")] + [text[:p] for p in reversed(cut_points[-12:])]
    for prefix in attempts:
        candidate = prefix + closers(prefix)
        try:
            json.loads(candidate)
            return candidate
        except json.JSONDecodeError:
            continue
    return None


def _as_json(raw: str) -> Any:
    body = raw.strip()
    fence = _FENCE.search(body)
    if fence and "{" in fence.group(1):
        body = fence.group(1)
    start = body.find("{")
    if start < 0:
        return None
    body = body[start:]
    end = body.rfind("}")
    for chunk in ([body[:end + 1]] if end > 0 else []) + [body]:
        try:
            return json.loads(chunk)
        except json.JSONDecodeError:
            pass
    closed = _close_json(body)
    if closed is not None:
        try:
            return json.loads(closed)
        except json.JSONDecodeError:
            return None
    return None


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
        cits = data.get("citations") or data.get("evidence") or data.get("quotes") or []
        citations = _citations_from(cits, labels)
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


_FIELD = re.compile(r'"(text|quote)"\s*:\s*"')


def _decode_partial(buffer: str, i: int) -> tuple[str, bool, int]:
    """Decode a JSON string body starting at ``i``: (value so far, closed?, index after)."""
    out: list[str] = []
    while i < len(buffer):
        ch = buffer[i]
        if ch == '"':
            return "".join(out), True, i + 1
        if ch == "\\":
            if i + 1 >= len(buffer):
                break
            nxt = buffer[i + 1]
            if nxt == "u":
                if i + 6 > len(buffer):
                    break
                try:
                    out.append(chr(int(buffer[i + 2:i + 6], 16)))
                except ValueError:
                    pass
                i += 6
                continue
            out.append({"n": "\n", "t": "\t", "r": "", '"': '"', "\\": "\\", "/": "/"}.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out), False, len(buffer)


def partial_fields(buffer: str) -> list[tuple[str, str, bool]]:
    """The "quote" and "text" string values in a streamed JSON buffer, in order: (key, value, closed)."""
    out: list[tuple[str, str, bool]] = []
    pos = 0
    while True:
        m = _FIELD.search(buffer, pos)
        if not m:
            return out
        value, closed, pos = _decode_partial(buffer, m.end())
        out.append((m.group(1), value, closed))
        if not closed:
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
