"""Runs a character's procedure graph as a LlamaIndex Workflow and streams the engine's events.

One `ProcedureWorkflow` per turn: ``begin`` sends the first step; ``take`` runs a
step through the engine, handing each engine event to the caller as it happens;
``route`` asks `app.bots.graph` where to go next and, when the procedure jumps,
hands over a `TransitionTaken` saying why.  `run_procedure` gives the engine's
synchronous event iterator: the Workflow runs on its own event loop in a worker
thread, events cross to the caller through a queue, and the engine advances only
when the caller asks for the next event (as a generator would), so a caller that
stops reading stops the turn.  Set-up costs a few milliseconds before the first
step (measured in docs/characters.md).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable, Iterator, Sequence

from llama_index.core.workflow import Event, StartEvent, StopEvent, Workflow, step

from app.bots.graph import Decision, ProcedureGraph, outcome_of
from app.domain import STOP, ProcedureStep, Step

# take(procedure step, index on the path, visit, why we came here) → the engine's events of that step
TakeStep = Callable[[ProcedureStep, int, int, str], Iterator[Any]]


class NextStep(Event):
    name: str
    visit: int = 1
    via: str = ""


class StepTaken(Event):
    step: Any                       # domain.Step


class ProcedureWorkflow(Workflow):
    """The steps of one turn: begin → take → route → take … → stop."""

    validated = False                 # the step graph is checked on a class's first run only

    def __init__(self, graph: ProcedureGraph, take_step: TakeStep, scorer: Any,
                 transition_event: Callable[..., Any], emit: Callable[[Any], None]):
        super().__init__(timeout=None, disable_validation=ProcedureWorkflow.validated)
        ProcedureWorkflow.validated = True
        self.graph = graph
        self.take_step = take_step
        self.scorer = scorer
        self.transition_event = transition_event
        self.emit = emit                  # hands one engine event to the caller
        self.cancelled = threading.Event()
        self.demand = threading.Semaphore(0)      # one permit per event the caller asked for
        self.visits: dict[str, int] = {}
        self.path: list[Step] = []
        self.error: BaseException | None = None

    @step
    async def begin(self, ev: StartEvent) -> NextStep:
        return NextStep(name=self.graph.first.name)

    @step(num_workers=1)
    async def take(self, ev: NextStep) -> StepTaken | StopEvent:
        if self.cancelled.is_set():
            return StopEvent()
        proc = self.graph.step(ev.name)
        events = self.take_step(proc, len(self.path), ev.visit, ev.via)
        done = object()
        taken = None
        try:      # runs the engine right here: this loop serves this one turn, events go straight out
            while (item := self._pull(events, done)) is not done:
                self.emit(item)
                taken = getattr(item, "step", taken)
        except BaseException as exc:      # handed to the caller as it is (e.g. the fallback backend failing)
            self.error = exc
            return StopEvent()
        if self.cancelled.is_set():
            return StopEvent()
        self.visits[proc.name] = self.visits.get(proc.name, 0) + 1
        self.path.append(taken)
        return StepTaken(step=taken)

    def _pull(self, events: Iterator[Any], done: object) -> Any:
        """The engine's next event, once the caller wants one: like a generator, nothing runs ahead."""
        self.demand.acquire()
        if self.cancelled.is_set():
            return done
        item = next(events, done)
        if item is done:                  # the step's events ended: the caller's request is still open
            self.demand.release()
        return item

    @step(num_workers=1)
    async def route(self, ev: StepTaken) -> NextStep | StopEvent:
        taken: Step = ev.step
        visits = self.visits[taken.name]
        decision: Decision = self.graph.decide(outcome_of(taken, self.scorer, visits), self.visits,
                                               len(self.path))
        if decision.jump:
            self.emit(self.transition_event(
                from_name=taken.name, to_name=decision.to, reason=decision.reason, visit=decision.visit,
                max_visits=decision.max_visits, index=len(self.path) - 1))
        if decision.to == STOP:
            return StopEvent()
        return NextStep(name=decision.to, visit=decision.visit, via=decision.reason)


_DONE = object()


def run_procedure(procedure: Sequence[ProcedureStep], take_step: TakeStep, scorer: Any,
                  transition_event: Callable[..., Any]) -> Iterator[Any]:
    """The engine events of every step the graph takes, in order (``transition_event`` builds the
    engine's `TransitionTaken`).  Closing the iterator stops the turn after the current step."""
    if not procedure:
        return
    handoff: queue.SimpleQueue = queue.SimpleQueue()
    flow = ProcedureWorkflow(ProcedureGraph(procedure), take_step, scorer, transition_event, handoff.put)

    async def work_async() -> None:
        await flow.run()

    def work() -> None:
        try:
            asyncio.run(work_async())
        except BaseException as exc:          # noqa: BLE001 - re-raised in the caller's thread
            flow.error = flow.error or exc
        handoff.put(_DONE)

    threading.Thread(target=work, name="bookbot-procedure", daemon=True).start()
    try:
        while True:
            flow.demand.release()
            if (item := handoff.get()) is _DONE:
                break
            yield item
    finally:
        flow.cancelled.set()
        flow.demand.release()             # wake the workflow if it waits for the caller
    if flow.error is not None:
        raise flow.error
