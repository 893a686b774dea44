"""The one small interface every LLM backend implements, and its request/result types.

A backend turns a StepRequest (the character, the question, the current
procedure step, the excerpts retrieved for it, earlier steps) into N candidate
drafts, and an AnswerRequest into the final answer.  Both stream: they yield
``Delta`` chunks as text arrives and finish with ``Drafts`` / ``AnswerText``.
Capability flags (``offline``, ``streams``, ``structured_output``) tell the
engine and UI what to expect.  A backend that cannot serve (server down,
garbage output) raises ``BackendError``; the engine then falls back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence, runtime_checkable

from app.domain import Character, Citation, Excerpt, Exemplar, ProcedureStep, Step

if TYPE_CHECKING:  # pragma: no cover
    from app.evidence import SentencePool


@dataclass
class StepRequest:
    character: Character
    question: str
    step: ProcedureStep
    step_index: int
    excerpts: Sequence[Excerpt]
    earlier: Sequence[Step] = ()
    history: Sequence[tuple[str, str]] = ()
    n: int = 1                               # drafts wanted: the engine validates and ranks them all
    retry: bool = False                      # the first round had no valid citation
    exemplars: Sequence[Exemplar] = ()       # editors' approved/corrected steps for similar questions
    evidence: "SentencePool | None" = None   # the step's scored sentences (app.evidence), if the engine has them
    focus: Sequence[str] = ()                # ids of the question's own best passages, best first (later steps)


def step_text(step: ProcedureStep) -> str:
    """What a procedure step looks for, as text to compare sentences with."""
    return f"{step.search} {step.instruction}".strip()


@dataclass
class AnswerRequest:
    character: Character
    question: str
    steps: Sequence[Step]
    history: Sequence[tuple[str, str]] = ()


@dataclass
class Draft:
    """One candidate step as the backend wrote it, before validation."""
    text: str
    citations: list[Citation] = field(default_factory=list)


@dataclass
class Delta:
    text: str


@dataclass
class Drafts:
    drafts: list[Draft]


@dataclass
class AnswerText:
    text: str


class BackendError(RuntimeError):
    """The backend cannot serve this turn (unreachable, timed out, unusable output)."""


@runtime_checkable
class Backend(Protocol):
    name: str
    offline: bool              # True: no model, text built from the book itself
    streams: bool              # yields Delta chunks while generating
    structured_output: bool    # asks the server for JSON-schema constrained output

    def step(self, request: StepRequest) -> Iterator[Delta | Drafts]: ...

    def answer(self, request: AnswerRequest) -> Iterator[Delta | AnswerText]: ...
