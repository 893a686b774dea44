"""Loading character cards from ``characters/*.yaml`` and keeping them live.

Owns: YAML reading with line marks (so every error names file, field, line and
fix), loading each card independently (one bad card never stops the others),
and ``CardRegistry``: hot reload by file mtime where a card that stops
validating keeps its last good version live and reports why.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from app.bots.cardschema import CardModel, describe_errors, dotted
from app.bots.graph import graph_problems
from app.domain import Character

CARD_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class CardError:
    path: Path
    field: str
    message: str
    fix: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.field}: {self.message} — fix: {self.fix}"


class CardInvalid(Exception):
    def __init__(self, errors: list[CardError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


# ------------------------------------------------------------------ YAML with line marks

def _walk(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int],
          dupes: list[tuple[tuple[Any, ...], int]]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            child = path + (key,)
            if key in seen:
                dupes.append((child, key_node.start_mark.line + 1))
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines, dupes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _walk(item, path + (i,), lines, dupes)


def load_yaml_with_lines(text: str) -> tuple[Any, dict[tuple[Any, ...], int], list[tuple[tuple[Any, ...], int]]]:
    """Parse YAML; return (data, {key path: 1-based line}, duplicate keys)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict[tuple[Any, ...], int] = {}
    dupes: list[tuple[tuple[Any, ...], int]] = []
    if node is not None:
        _walk(node, (), lines, dupes)
    data = yaml.safe_load(text)
    return data, lines, dupes


def line_for(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in lines:
            return lines[loc[:cut]]
    return None


# ------------------------------------------------------------------ one card

def parse_card_text(text: str, path: Path) -> CardModel:
    """Validate one card's YAML text; raise CardInvalid listing every problem."""
    try:
        data, lines, dupes = load_yaml_with_lines(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise CardInvalid([CardError(path, "(yaml)", f"not valid YAML: {exc.problem or exc}",
                                     "check indentation and quoting near this line; values containing "
                                     "': ' or starting with '{', '[' or '*' need quotes", line)]) from exc
    except yaml.YAMLError as exc:
        raise CardInvalid([CardError(path, "(yaml)", f"not valid YAML: {exc}", "fix the YAML syntax")]) from exc
    if not isinstance(data, dict):
        raise CardInvalid([CardError(path, "(card)", "the card must be a mapping of fields",
                                     "start from `bookbot characters new ID` for a valid skeleton", 1)])
    errors = [CardError(path, dotted(loc), "this key appears twice", "keep only one of them", line)
              for loc, line in dupes]
    try:
        card = CardModel.model_validate(data)
    except ValidationError as exc:
        for loc, message, fix in describe_errors(exc):
            errors.append(CardError(path, dotted(loc), message, fix, line_for(loc, lines)))
        raise CardInvalid(errors) from exc
    errors += [CardError(path, dotted(loc), message, fix, line_for(loc, lines))
               for loc, message, fix in card_graph_problems(card)]
    if card.id != path.stem:
        errors.append(CardError(path, "id", f"id {card.id!r} differs from the file name {path.stem!r}",
                                f"rename the file to {card.id}.yaml or set `id: {path.stem}`",
                                lines.get(("id",))))
    if errors:
        raise CardInvalid(errors)
    return card


def card_graph_problems(card: CardModel) -> list[tuple[tuple[Any, ...], str, str]]:
    """Unknown transition targets, unreachable steps, loops without a limit (see `app.bots.graph`)."""
    return graph_problems([s.procedure_step() for s in card.procedure.steps])


def parse_card_file(path: Path) -> CardModel:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CardInvalid([CardError(path, "(file)", f"not UTF-8 text ({exc.reason})",
                                     "save the file as UTF-8")]) from exc
    except OSError as exc:
        raise CardInvalid([CardError(path, "(file)", f"cannot read: {exc.strerror}",
                                     "check the file exists and is readable")]) from exc
    return parse_card_text(text, path)


def card_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.suffix in CARD_SUFFIXES and p.is_file() and not p.name.startswith("."))


# ------------------------------------------------------------------ registry

@dataclass
class _Entry:
    mtime_ns: int
    size: int
    card: CardModel | None            # last good version
    errors: list[CardError]           # problems of the current file version


class CardRegistry:
    """Every card of a folder, re-read when a file's mtime or size changes.

    ``get``/``all`` check the folder first (a few ``stat`` calls), so new
    conversations see edited cards without a restart.  A card whose file stops
    validating keeps its last good version live; ``errors()`` says why.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._entries: dict[Path, _Entry] = {}
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> list[str]:
        """Re-read changed files; return the ids (or file names) that changed."""
        changed: list[str] = []
        with self._lock:
            present = card_files(self.directory)
            for path in list(self._entries):
                if path not in present:
                    entry = self._entries.pop(path)
                    changed.append(entry.card.id if entry.card else path.name)
            for path in present:
                try:
                    st = path.stat()
                except OSError:
                    continue
                entry = self._entries.get(path)
                if entry and entry.mtime_ns == st.st_mtime_ns and entry.size == st.st_size:
                    continue
                last_good = entry.card if entry else None
                try:
                    card = parse_card_file(path)
                    self._entries[path] = _Entry(st.st_mtime_ns, st.st_size, card, [])
                    changed.append(card.id)
                except CardInvalid as exc:
                    self._entries[path] = _Entry(st.st_mtime_ns, st.st_size, last_good, exc.errors)
                    changed.append(last_good.id if last_good else path.name)
            self._check_duplicates()
        return changed

    def _check_duplicates(self) -> None:
        owner: dict[str, Path] = {}
        for path in sorted(self._entries):
            entry = self._entries[path]
            if entry.card is None:
                continue
            first = owner.setdefault(entry.card.id, path)
            if first != path:
                msg = f"id {entry.card.id!r} is already used by {first.name}"
                if not any(e.message == msg for e in entry.errors):
                    entry.errors.append(CardError(path, "id", msg, "give this card its own id"))

    def _live(self) -> dict[str, CardModel]:
        cards: dict[str, CardModel] = {}
        for path in sorted(self._entries):
            card = self._entries[path].card
            if card is not None and card.id not in cards:
                cards[card.id] = card
        return cards

    def cards(self) -> dict[str, CardModel]:
        self.refresh()
        with self._lock:
            return self._live()

    def all(self) -> list[Character]:
        return [c.to_character() for c in self.cards().values()]

    def ids(self) -> list[str]:
        return list(self.cards())

    def get(self, character_id: str) -> Character:
        cards = self.cards()
        if character_id not in cards:
            known = ", ".join(cards) or "none"
            raise KeyError(f"no character {character_id!r} in {self.directory}; known: {known}")
        return cards[character_id].to_character()

    def card(self, character_id: str) -> CardModel:
        cards = self.cards()
        if character_id not in cards:
            raise KeyError(f"no character {character_id!r} in {self.directory}")
        return cards[character_id]

    def errors(self) -> list[CardError]:
        with self._lock:
            return [e for path in sorted(self._entries) for e in self._entries[path].errors]

    def stale(self) -> list[str]:
        """Ids served from a last good version because the file now fails to validate."""
        with self._lock:
            return [e.card.id for e in self._entries.values() if e.card is not None and e.errors]


def load_characters(settings: Any) -> CardRegistry:
    """The registry of every card in ``settings.characters_dir``."""
    return CardRegistry(Path(settings.characters_dir))
