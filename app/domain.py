"""Plain domain types shared by every part of Bookbot; no I/O, no third-party imports.

Books are split into chapters and paragraph-aligned excerpts with stable ids;
characters run a procedure of steps; a turn is one question answered through
those steps; reviews attach to step ids.  Everything else (library, bots,
review, tuning, ui) speaks in these types.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol, Sequence


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------- books

@dataclass(frozen=True)
class BookMeta:
    id: str                      # e.g. "gutenberg-244" or a slug given on import
    title: str
    author: str
    language: str                # BCP-47-ish: "en", "ko"
    source: str = ""             # "gutenberg:244", "file:...", URL
    licence: str = ""
    sha256: str = ""             # of the raw file as imported


@dataclass(frozen=True)
class Location:
    book_id: str
    chapter_number: int          # 1-based
    chapter_title: str
    paragraph_start: int         # 1-based, inclusive, counted within the chapter
    paragraph_end: int

    def label(self) -> str:
        paras = (f"¶{self.paragraph_start}" if self.paragraph_start == self.paragraph_end
                 else f"¶{self.paragraph_start}–{self.paragraph_end}")
        return f"ch. {self.chapter_number} {self.chapter_title}, {paras}".strip()


@dataclass(frozen=True)
class RetrievalScores:
    dense: float | None = None   # cosine similarity, None when the dense side is off
    bm25: float | None = None
    fused: float = 0.0
    dense_rank: int | None = None  # 1-based rank in each list, None when absent
    bm25_rank: int | None = None


@dataclass(frozen=True)
class Excerpt:
    id: str                      # stable: derived from book id + text
    book_id: str
    text: str
    location: Location
    scores: RetrievalScores | None = None
    book_title: str = ""


class Retriever(Protocol):
    """What the engine and tuning see of the library."""

    def retrieve(self, query: str, *, top_k: int = 5,
                 book_ids: Sequence[str] | None = None) -> list[Excerpt]: ...

    def get(self, excerpt_id: str) -> Excerpt | None: ...


# ---------------------------------------------------------------- characters

STOP = "stop"                    # transition target that ends the procedure (the answer follows)


@dataclass(frozen=True)
class Condition:
    """When a transition applies, judged on the step just taken; every field given must hold."""
    ungrounded: bool | None = None       # True: the step has no valid citation; False: it has one
    score_below: float | None = None     # the step's confidence (0..1, the active verifier's P(good))
    score_above: float | None = None
    fault: tuple[str, ...] = ()          # any of these FaultTag values is predicted for the step
    visits_below: int | None = None      # the step has been taken fewer times than this (this visit counted)

    @property
    def always(self) -> bool:
        return (self.ungrounded is None and self.score_below is None and self.score_above is None
                and not self.fault and self.visits_below is None)


@dataclass(frozen=True)
class Transition:
    to: str                              # a step name, or STOP
    when: Condition = Condition()
    because: str = ""                    # the reason in the character's terms, e.g. "every hypothesis eliminated"


@dataclass(frozen=True)
class ProcedureStep:
    name: str                    # shown as the step title, e.g. "Observe"
    instruction: str             # what the character does in this step
    search: str = ""             # how it searches the book (added to the query)
    next: tuple[Transition, ...] = ()   # tried in order after the step; none applies: the next step listed
    max_visits: int | None = None       # how often this step may be taken in one turn (None: no own limit)


@dataclass(frozen=True)
class Character:
    id: str
    name: str
    book_ids: tuple[str, ...]
    language: str
    description: str
    personality: str
    speech_style: str
    greeting: str
    procedure: tuple[ProcedureStep, ...]
    answer_style: str = ""
    starters: tuple[str, ...] = ()
    examples: tuple[tuple[str, str], ...] = ()   # (user, character) exchanges
    templates: dict[str, str] = field(default_factory=dict)  # phrasing for the offline backend
    icon: str = ""


# ---------------------------------------------------------------- turns

@dataclass(frozen=True)
class Citation:
    excerpt_id: str
    quote: str = ""
    valid: bool = True
    problem: str = ""            # why invalid: "unknown excerpt", "quote not in excerpt"


@dataclass
class Candidate:
    text: str
    citations: list[Citation]
    score: float = 0.0           # step scorer's score (grounding now, verifier later)
    chosen: bool = False
    features: dict[str, float] = field(default_factory=dict)

    @property
    def grounded(self) -> bool:
        return any(c.valid for c in self.citations)


@dataclass
class Step:
    id: str
    turn_id: str
    index: int                   # 0-based position on the turn's path (= in the procedure for a list)
    name: str
    text: str
    citations: list[Citation]
    excerpts: list[Excerpt]      # retrieved for this step (cited ones first)
    candidates: list[Candidate] = field(default_factory=list)
    score: float = 0.0
    grounded: bool = False
    retrieval_ms: float = 0.0
    generation_ms: float = 0.0
    origin: str = ""             # "model"; "fallback" (offline after the model failed); "offline"
    visit: int = 1               # 1 the first time this procedure step is taken in the turn, 2 on a revisit …
    via: str = ""                # why the procedure jumped to this step ("" when it simply followed the list)


@dataclass
class Turn:
    id: str
    conversation_id: str
    character_id: str
    question: str
    steps: list[Step] = field(default_factory=list)
    answer: str = ""
    backend: str = ""
    snapshot_id: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    user_id: str | None = None


class TurnSink(Protocol):
    """Where the engine hands finished turns (the review store implements it)."""

    def save_turn(self, turn: Turn) -> None: ...


# ---------------------------------------------------------------- reviews

class Role(str, enum.Enum):
    reader = "reader"
    editor = "editor"
    lab = "lab"


class FaultTag(str, enum.Enum):
    not_in_book = "not_in_book"
    wrong_excerpt = "wrong_excerpt"
    out_of_character = "out_of_character"
    faulty_logic = "faulty_logic"
    other = "other"


class ReviewSource(str, enum.Enum):
    human = "human"          # a person gave this rating
    inferred = "inferred"    # after an earlier step of the turn was rated -1
    machine = "machine"      # pre-labelled by the step verifier


class ReviewKind(str, enum.Enum):
    editor = "editor"        # rating in {-1, 0, +1}
    reader = "reader"        # rating in {-1, +1} (thumbs down / up)


@dataclass(frozen=True)
class Review:
    step_id: str
    reviewer: str
    kind: ReviewKind
    rating: int
    correction: str = ""
    fault_tags: tuple[FaultTag, ...] = ()
    source: ReviewSource = ReviewSource.human
    id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class User:
    id: str
    name: str
    role: Role


# ---------------------------------------------------------------- tuning plug points

class StepScorer(Protocol):
    """Scores one candidate step; higher is better.  Grounding score now, learned verifier later."""

    def score(self, *, question: str, step: ProcedureStep, step_index: int,
              candidate: Candidate, excerpts: Sequence[Excerpt]) -> float: ...


@dataclass(frozen=True)
class Exemplar:
    character_id: str
    step_name: str
    question: str
    text: str                               # approved or corrected step text
    excerpt_ids: tuple[str, ...] = ()


class ExemplarSource(Protocol):
    def exemplars(self, character_id: str, step_name: str, question: str,
                  k: int = 2) -> list[Exemplar]: ...
