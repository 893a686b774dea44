"""A backend that replays scripted drafts and answers: for tests and demos.

``steps`` maps a step name (or ``"*"``) to a list of rounds; each round is the
list of drafts returned for one call (the second round serves the engine's
retry).  Calls are recorded in ``calls`` so tests can check what was asked.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

from app.bots.backends.base import AnswerRequest, AnswerText, Delta, Draft, Drafts, StepRequest

DraftSpec = Draft | Callable[[StepRequest], Draft]


class ScriptedBackend:
    offline = True
    streams = True
    structured_output = False

    def __init__(self, steps: dict[str, Sequence[Sequence[DraftSpec]]] | None = None,
                 answer: str = "Elementary.", name: str = "scripted",
                 fail_on: set[str] | None = None, chunk: int = 8):
        self.steps = {k: [list(r) for r in v] for k, v in (steps or {}).items()}
        self.answer_text = answer
        self.name = name
        self.fail_on = fail_on or set()
        self.chunk = chunk
        self.calls: list[StepRequest] = []
        self.answer_calls: list[AnswerRequest] = []
        self._round: dict[str, int] = {}

    def _stream(self, text: str) -> Iterator[Delta]:
        for i in range(0, len(text), self.chunk):
            yield Delta(text[i:i + self.chunk])

    def step(self, request: StepRequest) -> Iterator[Delta | Drafts]:
        from app.bots.backends.base import BackendError
        self.calls.append(request)
        if request.step.name in self.fail_on or "*" in self.fail_on:
            raise BackendError(f"scripted failure at step {request.step.name!r}")
        key = request.step.name if request.step.name in self.steps else "*"
        rounds = self.steps.get(key, [])
        i = self._round.get(key, 0)
        self._round[key] = i + 1
        specs = rounds[min(i, len(rounds) - 1)] if rounds else []
        drafts = [s(request) if callable(s) else Draft(s.text, list(s.citations)) for s in specs]
        drafts = drafts[:max(request.n, 1)]
        if drafts:
            yield from self._stream(drafts[0].text)
        yield Drafts(drafts)

    def answer(self, request: AnswerRequest) -> Iterator[Delta | AnswerText]:
        self.answer_calls.append(request)
        yield from self._stream(self.answer_text)
        yield AnswerText(self.answer_text)
