"""Character Card V2 import/export, card YAML writing and the `new` scaffold.

Export follows the published ``chara_card_v2`` format (spec, spec_version,
data.{name, description, personality, scenario, first_mes, mes_example,
creator_notes, system_prompt, post_history_instructions, alternate_greetings,
tags, creator, character_version, extensions}); Bookbot's own fields (id, books,
language, procedure, templates, starters) travel in ``data.extensions.bookbot``.
Import keeps every field Bookbot does not use (unknown ones included) in the
card's ``extensions`` so that exporting again gives them back unchanged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from app.bots.cardschema import CardModel, describe_errors, dotted
from app.bots.cards import CardError, CardInvalid, card_graph_problems

SPEC = "chara_card_v2"
SPEC_VERSION = "2.0"
KEEP_KEY = "chara_card_v2"          # card.extensions[KEEP_KEY] = {"data": {...}, "card": {...}}
MAPPED = {"name", "description", "personality", "scenario", "first_mes", "mes_example",
          "creator_notes", "tags", "creator", "character_version", "extensions"}
V2_DEFAULTS: dict[str, Any] = {"system_prompt": "", "post_history_instructions": "",
                               "alternate_greetings": []}

GENERIC_PROCEDURE = [
    {"name": "Recall", "instruction": "Recall what the book says that bears on the question.",
     "search": "events people places named in the question"},
    {"name": "Weigh", "instruction": "Weigh that evidence the way this character would, in their own terms.",
     "search": "opinions judgements reasons"},
    {"name": "Conclude", "instruction": "Draw the conclusion the evidence supports, and no more.",
     "search": "outcome result ending"},
]


# ------------------------------------------------------------------ export

def format_mes_example(examples: list[tuple[str, str]]) -> str:
    return "\n".join(f"<START>\n{{{{user}}}}: {u}\n{{{{char}}}}: {c}" for u, c in examples)


def procedure_dump(card: CardModel) -> dict[str, Any]:
    """The procedure as plain data; a step's graph fields only when it has them (list cards stay as they were)."""
    data = card.procedure.model_dump(exclude_none=True)
    for step in data["steps"]:
        if not step.get("next"):
            step.pop("next", None)
        for rule in step.get("next", []):
            if not rule.get("because"):
                rule.pop("because", None)
            when = rule.get("when")
            if when is not None and not when.get("fault"):
                when.pop("fault", None)
    return data


def card_to_v2(card: CardModel) -> dict[str, Any]:
    extensions = dict(card.extensions)
    kept = extensions.pop(KEEP_KEY, {}) or {}
    bookbot = {
        "id": card.id,
        "books": list(card.books),
        "language": card.language,
        "icon": card.icon,
        "speech_style": card.persona.speech_style,
        "starters": list(card.starters),
        "procedure": procedure_dump(card),
        "templates": dict(card.templates),
    }
    data: dict[str, Any] = {
        "name": card.name,
        "description": card.persona.description,
        "personality": card.persona.personality,
        "scenario": card.persona.scenario,
        "first_mes": card.greeting,
        "mes_example": format_mes_example([(e.user, e.character) for e in card.examples]),
        "creator_notes": card.creator_notes,
        **V2_DEFAULTS,
        "tags": list(card.tags),
        "creator": card.creator,
        "character_version": card.version,
    }
    data.update(kept.get("data", {}))
    data["extensions"] = {**extensions, "bookbot": bookbot}
    out: dict[str, Any] = {"spec": SPEC, "spec_version": SPEC_VERSION, "data": data}
    for key, value in kept.get("card", {}).items():
        out.setdefault(key, value)
    return out


# ------------------------------------------------------------------ import

def parse_mes_example(text: str) -> list[dict[str, str]]:
    pairs: list[dict[str, str]] = []
    for block in re.split(r"<START>", text or ""):
        user: str | None = None
        for line in block.splitlines():
            m = re.match(r"^\s*(\{\{user\}\}|<USER>|You)\s*:\s*(.*)$", line, re.I)
            n = re.match(r"^\s*(\{\{char\}\}|<BOT>)\s*:\s*(.*)$", line, re.I)
            if m:
                user = m.group(2).strip()
            elif n and user:
                pairs.append({"user": user, "character": n.group(2).strip()})
                user = None
            elif pairs and user is None and line.strip():
                pairs[-1]["character"] += "\n" + line.strip()
    return pairs


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:60] or "character"


def v2_to_card_dict(v2: dict[str, Any], *, books: list[str] | None = None,
                    card_id: str | None = None) -> dict[str, Any]:
    """Map a Character Card V2 dict to the fields of a Bookbot card (not yet validated)."""
    if v2.get("spec") != SPEC or not isinstance(v2.get("data"), dict):
        raise ValueError(f"not a Character Card V2: expected spec '{SPEC}' and a 'data' object")
    data = v2["data"]
    extensions = dict(data.get("extensions") or {})
    bookbot = dict(extensions.pop("bookbot", {}) or {})
    kept_data = {k: v for k, v in data.items()
                 if k not in MAPPED and not (k in V2_DEFAULTS and v == V2_DEFAULTS[k])}
    kept_card = {k: v for k, v in v2.items() if k not in ("spec", "spec_version", "data")}
    if kept_data or kept_card:
        extensions[KEEP_KEY] = {"data": kept_data, "card": kept_card}
    name = str(data.get("name") or "").strip()
    card: dict[str, Any] = {
        "id": card_id or bookbot.get("id") or slugify(name),
        "name": name,
        "books": books or bookbot.get("books") or [],
        "language": bookbot.get("language", "en"),
        "icon": bookbot.get("icon", ""),
        "persona": {
            "description": data.get("description", ""),
            "personality": data.get("personality", ""),
            "speech_style": bookbot.get("speech_style") or data.get("personality", ""),
            "scenario": data.get("scenario", ""),
        },
        "greeting": data.get("first_mes", ""),
        "starters": bookbot.get("starters", []),
        "examples": parse_mes_example(data.get("mes_example", "")),
        "procedure": bookbot.get("procedure") or {"steps": GENERIC_PROCEDURE, "answer_style": ""},
        "templates": bookbot.get("templates", {}),
        "tags": data.get("tags", []) or [],
        "creator": data.get("creator", "") or "",
        "version": data.get("character_version", "") or "",
        "creator_notes": data.get("creator_notes", "") or "",
        "extensions": extensions,
    }
    return card


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chara_from_png(data: bytes) -> str | None:
    """The JSON text of a card embedded in a PNG (tEXt/iTXt chunk ``chara``, base64), if any."""
    import base64
    import struct
    import zlib

    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"tEXt" and body.startswith(b"chara\x00"):
            return base64.b64decode(body[6:]).decode("utf-8")
        if kind == b"iTXt" and body.startswith(b"chara\x00"):
            flag, rest = body[6], body[8:]
            text = rest.split(b"\x00", 2)[-1]
            return base64.b64decode(zlib.decompress(text) if flag else text).decode("utf-8")
    return None


def import_v2(path: Path, *, books: list[str] | None = None, card_id: str | None = None) -> CardModel:
    """Read a Character Card V2 (JSON, or a PNG card with a ``chara`` chunk) as a Bookbot card."""
    try:
        blob = Path(path).read_bytes()
        if blob.startswith(PNG_SIGNATURE):
            text = chara_from_png(blob)
            if text is None:
                raise CardInvalid([CardError(Path(path), "(png)", "this PNG carries no character card",
                                             "export the card as JSON or as a card PNG")])
        else:
            text = blob.decode("utf-8-sig")
        raw = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise CardInvalid([CardError(Path(path), "(json)", f"not valid JSON: {exc.msg}",
                                         "export the card again as JSON", exc.lineno)]) from exc
        raise CardInvalid([CardError(Path(path), "(file)", f"cannot read: {exc}", "check the path")]) from exc
    try:
        fields = v2_to_card_dict(raw, books=books, card_id=card_id)
    except ValueError as exc:
        raise CardInvalid([CardError(Path(path), "spec", str(exc), "export it as Character Card V2")]) from exc
    try:
        card = CardModel.model_validate(fields)
    except ValidationError as exc:
        errors = []
        for loc, message, fix in describe_errors(exc):
            if loc and loc[0] == "books":
                fix = "pass the book ids with --book ID (see `bookbot books list`)"
            errors.append(CardError(Path(path), dotted(loc), message, fix))
        raise CardInvalid(errors) from exc
    problems = card_graph_problems(card)
    if problems:
        raise CardInvalid([CardError(Path(path), "data.extensions.bookbot." + dotted(loc), message, fix)
                           for loc, message, fix in problems])
    return card


# ------------------------------------------------------------------ YAML writing

class _CardDumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_CardDumper.add_representer(str, _str_presenter)


def card_to_yaml(card: CardModel) -> str:
    data = card.model_dump(exclude_defaults=False)
    data["procedure"] = procedure_dump(card)
    for key in ("tags", "creator", "version", "creator_notes", "extensions", "icon"):
        if not data.get(key):
            data.pop(key, None)
    if not data["persona"].get("scenario"):
        data["persona"].pop("scenario", None)
    return yaml.dump(data, Dumper=_CardDumper, sort_keys=False, allow_unicode=True, width=100)


# ------------------------------------------------------------------ scaffold

def scaffold_card(card_id: str, name: str, books: list[str], language: str = "en") -> str:
    """YAML text of a new, valid card with a procedure to edit."""
    book_lines = "\n".join(f"  - {b}" for b in books) or "  - BOOK-ID   # see `bookbot books list`"
    return f"""# Character card for Bookbot.  Check it with: bookbot characters check {card_id}
id: {card_id}
name: {json.dumps(name, ensure_ascii=False)}
books:
{book_lines}
language: {language}
persona:
  description: Who {name} is in the book, in two or three sentences.
  personality: The traits that show in how {name} thinks and acts.
  speech_style: How {name} talks (register, favourite turns of phrase).
greeting: Hello. Ask me anything about my story.
starters:
  - What happened at the start of your story?
examples:
  - user: Who are you?
    character: A short answer in {name}'s own voice.
procedure:
  # The steps {name} takes to think through a question.  Each step retrieves book
  # excerpts using the question plus `search`, and must cite what it finds.
  steps:
    - name: Recall
      instruction: Recall what the book says that bears on the question.
      search: events people places named in the question
    - name: Weigh
      instruction: Weigh that evidence the way {name} would.
      search: opinions judgements reasons
    - name: Conclude
      instruction: Draw the conclusion the evidence supports, and no more.
      search: outcome result ending
  answer_style: Answer in {name}'s voice, building on the steps.
templates:
  # Offline-mode phrasing.  Placeholders: {{quote}} {{book}} {{chapter}} {{location}} {{step}} {{question}}
  step: "In {{book}} ({{chapter}}) I find: \u201c{{quote}}\u201d"
  answer: "{{points}} So: {{conclusion}}"
"""
