"""The reasoning engine: runs a character's procedure for one question.

Steps are taken in the order the procedure's graph gives (`app.bots.workflow`; a
list procedure is taken in list order).  For each step: build a query (question + step search terms + earlier
steps), retrieve excerpts through the library's Retriever, ask the backend for
N candidate steps, validate every candidate's citations against the excerpts
retrieved for *this* step, score candidates with a pluggable StepScorer (the
grounding score by default), keep the best.  A step with no valid citation is
retried once, then kept but marked ungrounded.  Finally the backend writes the
answer in the character's voice.  Everything is streamed as events with
timings; the finished Turn (every candidate included) goes to the TurnSink.
If the backend fails (server down, garbage), the engine says so in a Notice
and finishes the turn with the offline extractive backend.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator, Iterator, Sequence

from app.bots.backends.base import (AnswerRequest, AnswerText, Backend, BackendError, Delta, Draft,
                                    Drafts, StepRequest, step_text)
from app.bots.backends.extractive import ExtractiveBackend
from app.bots.grounding import GroundingScorer, candidate_features, validate_citations
from app.bots.workflow import run_procedure
from app.evidence import SentencePool, SentenceVectors
from app.domain import (Candidate, Character, Excerpt, ExemplarSource, ProcedureStep, Retriever, Step,
                        StepScorer, Turn, TurnSink)

EARLIER_WORDS = 40
EARLIER_CHARS = 240         # Hangul takes many more model tokens per word
FOLLOW_UP_WORDS = 6
log = logging.getLogger(__name__)


# ------------------------------------------------------------------ events

@dataclass
class EngineEvent:
    t_ms: float = field(default=0.0, kw_only=True)        # since the turn started


@dataclass
class TurnStarted(EngineEvent):
    turn_id: str
    character_id: str
    backend: str
    offline: bool


@dataclass
class StepStarted(EngineEvent):
    index: int                  # place on the turn's path
    name: str
    step_id: str
    visit: int = 1              # 2, 3 … when the procedure came back to this step
    via: str = ""               # why it jumped here ("" when it followed the list)


@dataclass
class TransitionTaken(EngineEvent):
    """The procedure graph left the list order: ``reason`` is the one line shown to the reader."""
    from_name: str
    to_name: str                # a step name, or "stop" (the answer follows)
    reason: str                 # e.g. "every hypothesis eliminated → back to Hypothesise, visit 2 of 3"
    visit: int = 1
    max_visits: int | None = None
    index: int = 0              # path index of the step the transition leaves


@dataclass
class StepDelta(EngineEvent):
    index: int
    text: str


@dataclass
class StepDone(EngineEvent):
    step: Step


@dataclass
class AnswerDelta(EngineEvent):
    text: str


@dataclass
class Notice(EngineEvent):
    message: str
    level: str = "warning"


@dataclass
class TurnDone(EngineEvent):
    turn: Turn
    total_ms: float = 0.0


def build_query(question: str, step: ProcedureStep, earlier: Sequence[Step],
                history: Sequence[tuple[str, str]] = ()) -> str:
    """Retrieval query of one step: the question, the step's search words, the end of earlier steps.

    A short follow-up ("Why?") also carries the previous question of the conversation.
    """
    parts = [question]
    if history and len(question.split()) < FOLLOW_UP_WORDS:
        parts.append(history[-1][0])
    parts.append(step.search)
    if earlier:
        words = " ".join(s.text for s in earlier[-2:]).split()
        parts.append(" ".join(words[-EARLIER_WORDS:])[-EARLIER_CHARS:])
    return " ".join(p for p in parts if p).strip()


class Engine:
    """Runs procedures; collaborators are passed in, nothing global."""

    def __init__(self, retriever: Retriever, backend: Backend, sink: TurnSink | None = None,
                 scorer: StepScorer | None = None, exemplars: ExemplarSource | None = None,
                 candidates: int = 2, top_k: int = 5, fallback: Backend | None = None,
                 vectors: SentenceVectors | None = None):
        self.retriever = retriever
        self.backend = backend
        self.sink = sink
        self.scorer = scorer or GroundingScorer()
        self.exemplars = exemplars
        self.candidates = max(1, candidates)
        self.top_k = top_k
        self.vectors = vectors
        self.fallback = fallback or ExtractiveBackend(vectors=vectors)

    # ------------------------------------------------------------ one step

    def _score(self, question: str, proc: ProcedureStep, index: int, draft: Draft,
               excerpts: Sequence[Excerpt], evidence: SentencePool) -> Candidate:
        cand = Candidate(text=draft.text.strip(), citations=validate_citations(draft.citations, excerpts))
        cand.features = {**candidate_features(cand, excerpts),
                         **evidence.candidate_features([(c.excerpt_id, c.quote) for c in cand.citations
                                                        if c.valid])}
        try:
            cand.score = float(self.scorer.score(question=question, step=proc, step_index=index,
                                                 candidate=cand, excerpts=excerpts))
        except Exception:  # a broken plug-in scorer must not lose the turn: fall back to grounding
            log.exception("step scorer %r failed; using the grounding score", self.scorer)
            cand.features["scorer_error"] = 1.0
            cand.score = GroundingScorer().score(question=question, step=proc, step_index=index,
                                                 candidate=cand, excerpts=excerpts)
        return cand

    def _generate(self, backend: Backend, request: StepRequest, index: int,
                  started: float) -> Iterator[StepDelta | list[Draft]]:
        drafts: list[Draft] = []
        for item in backend.step(request):
            if isinstance(item, Delta):
                if item.text:
                    yield StepDelta(index=index, text=item.text, t_ms=_ms(started))
            elif isinstance(item, Drafts):
                drafts = list(item.drafts)
        yield drafts

    def _run_step(self, backend: Backend, character: Character, question: str,
                  history: Sequence[tuple[str, str]], proc: ProcedureStep, index: int,
                  earlier: list[Step], turn_id: str, step_id: str,
                  started: float) -> Iterator[StepDelta | Step]:
        t0 = time.perf_counter()
        query = build_query(question, proc, earlier, history)
        bare = f"{question} {proc.search}".strip()[:500]     # the question and the step's search words
        books = list(character.book_ids)
        try:
            excerpts = list(self.retriever.retrieve(query, top_k=self.top_k, book_ids=books))
        except Exception as exc:   # e.g. a query the embedder cannot take: retry with the bare question
            log.warning("retrieval failed (%s) for %r; retrying with the question alone", exc, query[:60])
            excerpts = list(self.retriever.retrieve(bare, top_k=self.top_k, book_ids=books))
        focus: list[Excerpt] = []
        if earlier:   # a later step also sees the question's own best passages: the chain cannot drift off them
            focus = list(self.retriever.retrieve(bare, top_k=self.top_k, book_ids=books))
            have = {e.id for e in focus}
            excerpts = focus + [e for e in excerpts if e.id not in have]
        retrieval_ms = (time.perf_counter() - t0) * 1000
        exemplars = []
        if self.exemplars is not None:
            try:
                exemplars = list(self.exemplars.exemplars(character.id, proc.name, question, k=2))
            except Exception:
                exemplars = []
        t1 = time.perf_counter()
        evidence = SentencePool(question, excerpts, step_text=step_text(proc), vectors=self.vectors)
        candidates: list[Candidate] = []
        for attempt in range(2):
            request = StepRequest(character=character, question=question, step=proc, step_index=index,
                                  excerpts=excerpts, earlier=list(earlier), history=list(history),
                                  n=self.candidates, retry=attempt > 0, exemplars=exemplars,
                                  evidence=evidence, focus=[e.id for e in focus])
            drafts: list[Draft] = []
            for item in self._generate(backend, request, index, started):
                if isinstance(item, list):
                    drafts = item
                elif attempt == 0:
                    yield item
            candidates += [self._score(question, proc, index, d, excerpts, evidence)
                           for d in drafts if d.text.strip()]
            if any(c.grounded for c in candidates) or not excerpts:
                break
        generation_ms = (time.perf_counter() - t1) * 1000
        if not candidates:
            candidates = [Candidate(text=f"{proc.name}: (no text was produced for this step)", citations=[])]
            candidates[0].features = candidate_features(candidates[0], excerpts)
        best = max(candidates, key=lambda c: (c.grounded, c.score))
        best.chosen = True
        origin = "model" if not backend.offline else ("offline" if self.backend.offline else "fallback")
        for cand in candidates:     # persisted with the candidate (features is a JSON column)
            cand.features["from_model"] = float(origin == "model")
        cited = []
        for c in best.citations:
            if c.valid and c.excerpt_id not in cited:
                cited.append(c.excerpt_id)
        ordered = sorted(excerpts, key=lambda e: (e.id not in cited, cited.index(e.id) if e.id in cited else 0))
        yield Step(id=step_id, turn_id=turn_id, index=index, name=proc.name, text=best.text,
                   citations=list(best.citations), excerpts=ordered, candidates=candidates,
                   score=best.score, grounded=best.grounded, retrieval_ms=retrieval_ms,
                   generation_ms=generation_ms, origin=origin)

    def _take_step(self, active: dict[str, Backend], character: Character, question: str,
                   history: Sequence[tuple[str, str]], turn: Turn, started: float, proc: ProcedureStep,
                   index: int, visit: int = 1, via: str = "") -> Iterator[EngineEvent]:
        """One step of the path; after a backend failure it is redone offline (same step id)."""
        step_id = str(uuid.uuid4())
        while True:
            backend = active["backend"]
            yield StepStarted(index=index, name=proc.name, step_id=step_id, visit=visit, via=via,
                              t_ms=_ms(started))
            try:
                step = None
                for item in self._run_step(backend, character, question, history, proc, index,
                                           turn.steps, turn.id, step_id, started):
                    if isinstance(item, Step):
                        step = item
                    else:
                        yield item
            except BackendError as exc:
                if backend is self.fallback:
                    raise
                yield Notice(message=_fallback_notice(backend, exc), t_ms=_ms(started))
                active["backend"] = self.fallback
                turn.backend = f"{self.fallback.name} (fallback from {self.backend.name})"
                continue                      # redo this step offline: StepStarted again, same id
            assert step is not None
            step.visit, step.via = visit, via
            turn.steps.append(step)
            yield StepDone(step=step, t_ms=_ms(started))
            return

    # ------------------------------------------------------------ one turn

    def run(self, character: Character, question: str, history: Sequence[tuple[str, str]] = (),
            conversation_id: str = "", user_id: str | None = None,
            snapshot_id: str | None = None) -> Iterator[EngineEvent]:
        """Answer ``question``; ``history`` is the conversation so far as (user, character) pairs."""
        started = time.perf_counter()
        backend: Backend = self.backend
        turn = Turn(id=str(uuid.uuid4()), conversation_id=conversation_id or str(uuid.uuid4()),
                    character_id=character.id, question=question, backend=backend.name,
                    snapshot_id=snapshot_id, user_id=user_id)
        yield TurnStarted(turn_id=turn.id, character_id=character.id, backend=backend.name,
                          offline=backend.offline, t_ms=_ms(started))
        active = {"backend": backend}

        def take(proc: ProcedureStep, index: int, visit: int, via: str) -> Iterator[EngineEvent]:
            return self._take_step(active, character, question, history, turn, started, proc, index,
                                   visit, via)

        yield from run_procedure(character.procedure, take, self.scorer, TransitionTaken)
        backend = active["backend"]
        answer_parts: list[str] = []
        try:
            answer = ""
            for item in backend.answer(AnswerRequest(character=character, question=question,
                                                     steps=turn.steps, history=list(history))):
                if isinstance(item, Delta) and item.text:
                    answer_parts.append(item.text)
                    yield AnswerDelta(text=item.text, t_ms=_ms(started))
                elif isinstance(item, AnswerText):
                    answer = item.text
        except BackendError as exc:
            if backend is self.fallback:
                raise
            yield Notice(message=_fallback_notice(backend, exc), t_ms=_ms(started))
            turn.backend = f"{self.fallback.name} (fallback from {self.backend.name})"
            answer = ""
            for item in self.fallback.answer(AnswerRequest(character=character, question=question,
                                                           steps=turn.steps, history=list(history))):
                if isinstance(item, AnswerText):
                    answer = item.text
            yield AnswerDelta(text=("\n\n" if answer_parts else "") + answer, t_ms=_ms(started))
        turn.answer = (answer or "".join(answer_parts)).strip()
        if self.sink is not None:
            try:
                self.sink.save_turn(turn)
            except Exception as exc:   # the reader still gets the answer; say what went wrong
                yield Notice(message=f"This turn could not be saved for review: {exc}", level="error",
                             t_ms=_ms(started))
        yield TurnDone(turn=turn, total_ms=_ms(started), t_ms=_ms(started))

    def answer(self, character: Character, question: str, **kwargs) -> Turn:
        """Run a whole turn and return it (no streaming)."""
        turn = None
        for event in self.run(character, question, **kwargs):
            if isinstance(event, TurnDone):
                turn = event.turn
        assert turn is not None
        return turn

    async def arun(self, character: Character, question: str, history: Sequence[tuple[str, str]] = (),
                   conversation_id: str = "", user_id: str | None = None,
                   snapshot_id: str | None = None) -> AsyncIterator[EngineEvent]:
        """``run`` for asyncio code (Chainlit): each event is produced in a worker thread."""
        iterator = self.run(character, question, history, conversation_id, user_id, snapshot_id)
        sentinel = object()
        while True:
            event = await asyncio.to_thread(next, iterator, sentinel)
            if event is sentinel:
                return
            yield event  # type: ignore[misc]


def _fallback_notice(backend: Backend, exc: Exception) -> str:
    return (f"The language model ({backend.name}) is unavailable: {exc}. "
            "OFFLINE MODE for the rest of this answer: steps are quoted straight from the book.")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
