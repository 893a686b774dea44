"""A character's procedure as a graph: which step comes next, and why; what `check` reports.

Owns the rules that turn a step just taken (grounded? the verifier's confidence,
the faults it predicts, how often it has been taken) into the next step, the
one-line reason shown to readers ("every hypothesis eliminated → back to
Hypothesise, visit 2 of 3"), and the graph problems a card can have (transitions
to unknown steps, unreachable steps, loops without a limit).  A list procedure
is a graph whose every step falls through to the next one listed, so it runs
exactly as before.  Plain data in and out: the Workflow that runs it is
`app.bots.workflow`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from app.domain import STOP, Condition, FaultTag, ProcedureStep, Step, Transition

PATH_LIMIT_PER_STEP = 3        # a turn takes at most 3 × (number of steps) steps, whatever the card says
PREDICTABLE_FAULTS = {
    FaultTag.not_in_book.value: "the step has no valid citation, or a citation was rejected",
    FaultTag.wrong_excerpt.value: "the quote is not among the 3 sentences of the step's passages "
                                  "that answer the question best",
    FaultTag.faulty_logic.value: "under a fifth of the step's words occur in the passages it cites",
}
WRONG_EXCERPT_RANK = 1 / 3     # ev_relevance_rank below this: not among the 3 best sentences
FAULTY_LOGIC_OVERLAP = 0.2


# ------------------------------------------------------------------ judging a step

@dataclass(frozen=True)
class Outcome:
    """What the transitions can see of the step just taken."""
    name: str
    grounded: bool
    confidence: float                   # 0..1
    faults: frozenset[str]
    visits: int                         # this visit counted


def confidence(score: float, scorer: Any) -> float:
    """The step's score on the 0..1 scale card thresholds are written in: the scorer maps it there
    (``scorer.confidence``: the grounding score over its top, a tuned verifier's P(good) by its
    `card_scale`); a scorer without that mapping scores on 0..1 already."""
    to_card = getattr(scorer, "confidence", None)
    if callable(to_card):
        return float(to_card(score))
    return max(0.0, min(1.0, float(score)))


def predicted_faults(step: Step) -> frozenset[str]:
    """The fault tags an editor would likely give this step, as far as the engine can tell."""
    chosen = next((c for c in step.candidates if c.chosen), None)
    features: Mapping[str, float] = chosen.features if chosen is not None else {}
    faults = set()
    if not step.grounded or any(not c.valid for c in step.citations):
        faults.add(FaultTag.not_in_book.value)
    if step.grounded:
        rank = features.get("ev_relevance_rank")
        if rank is not None and rank < WRONG_EXCERPT_RANK:
            faults.add(FaultTag.wrong_excerpt.value)
        if features.get("token_overlap", 1.0) < FAULTY_LOGIC_OVERLAP:
            faults.add(FaultTag.faulty_logic.value)
    return frozenset(faults)


def outcome_of(step: Step, scorer: Any, visits: int) -> Outcome:
    return Outcome(step.name, step.grounded, confidence(step.score, scorer), predicted_faults(step), visits)


def holds(when: Condition, out: Outcome) -> bool:
    if when.ungrounded is not None and when.ungrounded == out.grounded:
        return False
    if when.score_below is not None and not out.confidence < when.score_below:
        return False
    if when.score_above is not None and not out.confidence > when.score_above:
        return False
    if when.fault and not set(when.fault) & out.faults:
        return False
    if when.visits_below is not None and not out.visits < when.visits_below:
        return False
    return True


def describe(when: Condition, out: Outcome) -> str:
    """Why a condition held, in plain words (used when the card gives no `because`)."""
    parts = []
    if when.ungrounded:
        parts.append("nothing found in the book")
    elif when.ungrounded is False:
        parts.append("the step is grounded")
    if when.score_below is not None:
        parts.append(f"verifier confidence {out.confidence:.2f} below {when.score_below:g}")
    if when.score_above is not None:
        parts.append(f"verifier confidence {out.confidence:.2f} above {when.score_above:g}")
    if when.fault:
        hit = sorted(set(when.fault) & out.faults)
        parts.append("likely fault: " + ", ".join(t.replace("_", " ") for t in hit))
    if when.visits_below is not None:
        parts.append(f"visit {out.visits} of at most {when.visits_below - 1}")
    return "; ".join(parts)


# ------------------------------------------------------------------ choosing the next step

@dataclass(frozen=True)
class Decision:
    to: str                      # a step name or STOP
    reason: str = ""             # one line; "" when the procedure simply goes on to the next step listed
    visit: int = 1               # of the target: which visit it will be
    max_visits: int | None = None

    @property
    def jump(self) -> bool:
        return bool(self.reason)


class ProcedureGraph:
    """The steps of one procedure and the rules between them."""

    def __init__(self, steps: Sequence[ProcedureStep]):
        self.steps = tuple(steps)
        self._by_name = {s.name.lower(): s for s in self.steps}
        self._order = {s.name.lower(): i for i, s in enumerate(self.steps)}
        self.path_limit = PATH_LIMIT_PER_STEP * len(self.steps)

    @property
    def first(self) -> ProcedureStep:
        return self.steps[0]

    @property
    def linear(self) -> bool:
        return not any(s.next for s in self.steps)

    def step(self, name: str) -> ProcedureStep | None:
        return self._by_name.get(name.lower())

    def _open(self, step: ProcedureStep, visits: Mapping[str, int]) -> bool:
        return step.max_visits is None or visits.get(step.name, 0) < step.max_visits

    def _decision(self, step: ProcedureStep, visits: Mapping[str, int], reason: str) -> Decision:
        visit = visits.get(step.name, 0) + 1
        if reason and visit > 1:
            reason = f"{reason} → back to {step.name}, visit {visit}" + (
                f" of {step.max_visits}" if step.max_visits else "")
        elif reason:
            reason = f"{reason} → on to {step.name}"
        return Decision(step.name, reason, visit, step.max_visits)

    def decide(self, out: Outcome, visits: Mapping[str, int], taken: int) -> Decision:
        """The step after ``out``; ``visits`` counts the steps taken so far, ``taken`` the path length."""
        if taken >= self.path_limit:
            return Decision(STOP, f"{taken} steps taken, the most one answer may take → answering now")
        current = self.step(out.name)
        rules: Sequence[Transition] = current.next if current is not None else ()
        for rule in rules:
            if not holds(rule.when, out):
                continue
            why = rule.because or describe(rule.when, out) or "by the card's default"
            if rule.to.lower() == STOP:
                return Decision(STOP, f"{why} → answering now")
            target = self.step(rule.to)
            if target is not None and self._open(target, visits):
                return self._decision(target, visits, why if (rule.because or not rule.when.always
                                                             or self._skips(out.name, target)) else "")
        start = self._order.get(out.name.lower(), len(self.steps)) + 1
        for step in self.steps[start:]:
            if self._open(step, visits):
                return self._decision(step, visits, "")
        return Decision(STOP)

    def _skips(self, source: str, target: ProcedureStep) -> bool:
        """A default rule that goes anywhere but the next step listed is a jump worth explaining."""
        return self._order[target.name.lower()] != self._order.get(source.lower(), -2) + 1


def procedure_step(steps: Sequence[ProcedureStep], step: Step) -> ProcedureStep | None:
    """The procedure step a taken step ran (by name: on a graph, a step's index is its place on the path)."""
    return next((s for s in steps if s.name == step.name), None)


# ------------------------------------------------------------------ what `check` reports

Problem = tuple[tuple[Any, ...], str, str]          # (location in the card, message, fix)
STEPS_LOC = ("procedure", "steps")


def _edges(graph: ProcedureGraph) -> dict[str, list[tuple[str, bool]]]:
    """step → [(next step, limited edge)]: targets of its rules and, unless a rule always
    leads elsewhere, the next step listed.  An edge is limited when its rule counts visits."""
    edges: dict[str, list[tuple[str, bool]]] = {}
    for i, step in enumerate(graph.steps):
        out: list[tuple[str, bool]] = []
        falls_through = True
        for rule in step.next:
            target = STOP if rule.to.lower() == STOP else getattr(graph.step(rule.to), "name", None)
            if target is None:
                continue
            if target != STOP:
                out.append((target, rule.when.visits_below is not None))
            if rule.when.always and (target == STOP or graph.step(target).max_visits is None):
                falls_through = False
                break
        if falls_through and i + 1 < len(graph.steps):
            out.append((graph.steps[i + 1].name, False))
        edges[step.name] = out
    return edges


def _unknown_targets(graph: ProcedureGraph) -> list[Problem]:
    names = [s.name for s in graph.steps]
    problems = []
    for i, step in enumerate(graph.steps):
        for j, rule in enumerate(step.next):
            if rule.to.lower() != STOP and graph.step(rule.to) is None:
                close = difflib.get_close_matches(rule.to, names, n=1, cutoff=0.5)
                fix = (f"did you mean `to: {close[0]}`?" if close else
                       f"use one of the steps ({', '.join(names)}) or `{STOP}`")
                problems.append(((*STEPS_LOC, i, "next", j, "to"),
                                 f"transition to unknown step {rule.to!r}", fix))
    return problems


def _unreachable(graph: ProcedureGraph, edges: Mapping[str, list[tuple[str, bool]]]) -> list[Problem]:
    seen, todo = {graph.first.name}, [graph.first.name]
    while todo:
        for target, _ in edges[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    problems = []
    for i, step in enumerate(graph.steps):
        if step.name not in seen:
            before = next(s.name for s in reversed(graph.steps[:i]) if s.name in seen)
            problems.append(((*STEPS_LOC, i, "name"), f"step {step.name!r} can never be reached from "
                             f"{graph.first.name!r}",
                             f"add a transition `- to: {step.name}` to a step that runs (e.g. {before}), "
                             "or remove the step"))
    return problems


def _loops(graph: ProcedureGraph, edges: Mapping[str, list[tuple[str, bool]]]) -> list[Problem]:
    """Loops none of whose steps has `max_visits` and none of whose rules counts visits."""
    free = {s.name for s in graph.steps if s.max_visits is None}
    succ = {n: [t for t, limited in edges[n] if t in free and not limited] for n in free}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:         # Tarjan's strongly connected components (graphs of ≤ 8 steps)
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in succ[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            comp = []
            while True:
                top = stack.pop()
                comp.append(top)
                if top == node:
                    break
            components.append(comp)

    for node in [s.name for s in graph.steps if s.name in free]:
        if node not in index:
            visit(node)
    problems = []
    order = [s.name for s in graph.steps]
    for comp in components:
        if len(comp) == 1 and comp[0] not in succ[comp[0]]:
            continue
        names = sorted(comp, key=order.index)
        head = names[0]
        loop = " → ".join(names + [head])
        problems.append(((*STEPS_LOC, order.index(head), "name"),
                         f"the loop {loop} has no limit: a turn could go round it until the path limit",
                         f"add `max_visits: 2` (or 3) to step {head}, or `visits_below: N` to the "
                         "`when` of the transition that goes back"))
    return problems


def graph_problems(steps: Sequence[ProcedureStep]) -> list[Problem]:
    """Every graph problem of a procedure, each with its location in the card and a fix."""
    if not steps:
        return []
    graph = ProcedureGraph(steps)
    unknown = _unknown_targets(graph)
    edges = _edges(graph)
    return unknown + _unreachable(graph, edges) + _loops(graph, edges)
