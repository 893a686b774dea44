"""The character card schema (pydantic) and its conversion to ``domain.Character``.

A card is a YAML file in ``characters/`` that lab members write.  This module
owns what a valid card looks like, the fix suggested for each kind of mistake,
and how a card turns into the plain domain type the engine runs.  Reading files
and keeping line numbers is ``cards.py``'s job.
"""

from __future__ import annotations

import difflib
import re
import string
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.domain import STOP, Character, Condition, FaultTag, ProcedureStep, Transition

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

# Placeholders the offline (extractive) backend fills into card templates.
STEP_PLACEHOLDERS = frozenset({"quote", "book", "chapter", "location", "question", "step", "instruction",
                               "name"})
ANSWER_PLACEHOLDERS = frozenset({"points", "conclusion", "question", "name", "book", "first_quote"})
TEMPLATE_KEYS_HELP = ("'step' (default step phrasing), 'step:<Step name>' (one step), 'answer', "
                      "'no_evidence', 'point'")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PersonaModel(_Strict):
    description: str = Field(min_length=1)
    personality: str = Field(min_length=1)
    speech_style: str = Field(min_length=1)
    scenario: str = ""


class ExampleModel(_Strict):
    user: str = Field(min_length=1)
    character: str = Field(min_length=1)


class WhenModel(_Strict):
    """A transition's condition; `when: ungrounded` is short for `when: {ungrounded: true}`."""
    ungrounded: bool | None = None
    score_below: float | None = Field(default=None, ge=0.0, le=1.0)
    score_above: float | None = Field(default=None, ge=0.0, le=1.0)
    fault: list[str] = Field(default_factory=list)
    visits_below: int | None = Field(default=None, ge=2, le=9)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip() in ("ungrounded", "grounded"):
            return {"ungrounded": value.strip() == "ungrounded"}
        if isinstance(value, dict) and isinstance(value.get("fault"), str):
            return {**value, "fault": [value["fault"]]}
        return value

    @field_validator("fault")
    @classmethod
    def _faults(cls, value: list[str]) -> list[str]:
        from app.bots.graph import PREDICTABLE_FAULTS
        for tag in value:
            if tag not in PREDICTABLE_FAULTS:
                known = [t.value for t in FaultTag]
                kind = "is a fault only an editor can judge" if tag in known else "is no fault tag"
                raise ValueError(f"fault {tag!r} {kind}; the engine predicts {sorted(PREDICTABLE_FAULTS)} "
                                 "(use `score_below` for the verifier's overall judgement)")
        return value

    def condition(self) -> Condition:
        return Condition(self.ungrounded, self.score_below, self.score_above, tuple(self.fault),
                         self.visits_below)


class TransitionModel(_Strict):
    to: str = Field(min_length=1, max_length=60)
    when: WhenModel | None = None
    because: str = Field(default="", max_length=120)

    def transition(self) -> Transition:
        return Transition(self.to, self.when.condition() if self.when else Condition(), self.because)


class StepModel(_Strict):
    name: str = Field(min_length=1, max_length=60)
    instruction: str = Field(min_length=1)
    search: str = ""
    next: list[TransitionModel] = Field(default_factory=list, max_length=6)
    max_visits: int | None = Field(default=None, ge=1, le=5)

    def procedure_step(self) -> ProcedureStep:
        return ProcedureStep(name=self.name, instruction=self.instruction, search=self.search,
                             next=tuple(t.transition() for t in self.next), max_visits=self.max_visits)


class ProcedureModel(_Strict):
    steps: list[StepModel] = Field(min_length=1, max_length=8)
    answer_style: str = ""

    @model_validator(mode="after")
    def _unique_names(self) -> "ProcedureModel":
        seen: set[str] = set()
        for step in self.steps:
            key = step.name.lower()
            if key == STOP:
                raise ValueError(f"{step.name!r} is reserved: `to: {STOP}` ends the procedure; rename the step")
            if key in seen:
                raise ValueError(f"step name {step.name!r} is used twice; give every step its own name")
            seen.add(key)
        return self


class CardModel(_Strict):
    id: str
    name: str = Field(min_length=1)
    books: list[str] = Field(min_length=1)
    language: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]+)*$")
    icon: str = ""
    persona: PersonaModel
    greeting: str = Field(min_length=1)
    starters: list[str] = Field(default_factory=list)
    examples: list[ExampleModel] = Field(default_factory=list)
    procedure: ProcedureModel
    templates: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    creator: str = ""
    version: str = ""
    creator_notes: str = ""
    # Other applications' Character Card V2 extensions and unknown V2 fields, kept verbatim.
    extensions: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError("id must be a slug: lower-case letters, digits and '-', e.g. 'sherlock-holmes'")
        return value

    @field_validator("books")
    @classmethod
    def _book_ids(cls, value: list[str]) -> list[str]:
        for book in value:
            if not book or any(ch.isspace() for ch in book):
                raise ValueError(f"book id {book!r} must be a library book id without spaces, e.g. 'gutenberg-244'")
        return value

    @model_validator(mode="after")
    def _templates(self) -> "CardModel":
        step_names = {s.name for s in self.procedure.steps}
        for key, text in self.templates.items():
            if key.startswith("step:"):
                if key[5:] not in step_names:
                    raise ValueError(f"templates key {key!r} names no procedure step; steps are "
                                     f"{sorted(step_names)}")
                allowed = STEP_PLACEHOLDERS
            elif key in ("step", "no_evidence", "point"):
                allowed = STEP_PLACEHOLDERS
            elif key == "answer":
                allowed = ANSWER_PLACEHOLDERS
            else:
                raise ValueError(f"unknown templates key {key!r}; use {TEMPLATE_KEYS_HELP}")
            try:
                fields = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
            except ValueError as exc:
                raise ValueError(f"templates.{key}: {exc}; write literal braces as '{{{{' and '}}}}'") from exc
            unknown = {f for f in fields if f} - allowed
            if unknown or "" in fields:
                bad = sorted(unknown) or ["{}"]
                raise ValueError(f"templates.{key} uses unknown placeholder(s) {bad}; allowed: "
                                 f"{sorted(allowed)}")
        return self

    def to_character(self) -> Character:
        return Character(
            id=self.id,
            name=self.name,
            book_ids=tuple(self.books),
            language=self.language,
            description=self.persona.description,
            personality=self.persona.personality,
            speech_style=self.persona.speech_style,
            greeting=self.greeting,
            procedure=tuple(s.procedure_step() for s in self.procedure.steps),
            answer_style=self.procedure.answer_style,
            starters=tuple(self.starters),
            examples=tuple((e.user, e.character) for e in self.examples),
            templates=dict(self.templates),
            icon=self.icon,
        )


# ------------------------------------------------------------------ error wording

def _model_for(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = CardModel
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        inner = getattr(ann, "__args__", None)
        candidate = inner[0] if inner else ann
        model = candidate if isinstance(candidate, type) and issubclass(candidate, BaseModel) else None
    return model


def fix_for(error: dict[str, Any]) -> str:
    """A one-line suggestion for one pydantic error."""
    kind = error.get("type", "")
    loc = tuple(error.get("loc", ()))
    name = str(loc[-1]) if loc else "field"
    if kind == "missing":
        return f"add `{name}:` here (required)"
    if kind == "extra_forbidden":
        parent = _model_for(loc[:-1])
        known = sorted(parent.model_fields) if parent else []
        close = difflib.get_close_matches(name, known, n=1)
        if close:
            return f"did you mean `{close[0]}`? rename it"
        return f"remove `{name}`; allowed here: {', '.join(known)}" if known else f"remove `{name}`"
    if kind in ("string_type", "str_type"):
        return "write it as text (quote it if it looks like a number, a list or yes/no)"
    if kind == "list_type":
        return "write it as a YAML list: one `- item` per line"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "write it as a mapping of `key: value` lines"
    if kind == "too_short":
        return "give at least one entry (empty text or lists are not allowed here)"
    if kind == "string_too_short":
        return "fill it in; it may not be empty"
    if kind == "too_long":
        return ("shorten the list: a step has at most 6 transitions" if "next" in loc
                else "shorten the list: a procedure has at most 8 steps")
    if kind == "string_too_long":
        return "shorten it"
    if kind == "string_pattern_mismatch":
        return "use a language code such as 'en' or 'ko'"
    if kind == "value_error":
        return "see the message; fix the value as it says"
    return "correct the value"


def describe_errors(exc: ValidationError) -> list[tuple[tuple[Any, ...], str, str]]:
    """(location, message, fix) for each problem of a failed validation."""
    out = []
    for err in exc.errors():
        msg = str(err.get("msg", "invalid"))
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append((tuple(err.get("loc", ())), msg, fix_for(err)))
    return out


def dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(card)"
