"""Procedure graphs: the engine takes each kind of transition, visit limits hold, lists run as before."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from app.bots.backends import Draft, ScriptedBackend
from app.bots.engine import Engine, StepDone, StepStarted, TransitionTaken, TurnDone
from app.bots.graph import ProcedureGraph, graph_problems
from app.domain import STOP, Citation, Condition, ProcedureStep, Transition


def good(eid, quote, text="Step text."):
    return Draft(text, [Citation(eid, quote)])


NOTHING = Draft("I find nothing on that.", [])
AFGHAN = good("e1", "You have been in Afghanistan", "You have been in Afghanistan.")
DOCTOR = good("e2", "Clearly an army doctor", "An army doctor.")
THEORY = good("e3", "capital mistake to theorize", "No theory yet.")
TRUTH = good("e4", "whatever remains, however improbable", "What remains is the truth.")


class ScoreBy:
    """A step scorer whose score depends on the step name and how often it was scored (0..1 like a verifier)."""

    def __init__(self, scores: dict[str, list[float]], default: float = 0.6):
        self.scores, self.default, self.calls = scores, default, {}

    def score(self, *, question, step, step_index, candidate, excerpts):
        n = self.calls.get(step.name, 0)
        self.calls[step.name] = n + 1
        seq = self.scores.get(step.name, [])
        return seq[min(n, len(seq) - 1)] if seq else self.default


def with_graph(character, **steps):
    """The character with (next, max_visits) set on the named steps."""
    procedure = tuple(replace(s, **steps.get(s.name, {})) for s in character.procedure)
    assert graph_problems(procedure) == [], graph_problems(procedure)
    return replace(character, procedure=procedure)


def run(character, backend, scorer=None, candidates=1, retriever=None):
    events = list(Engine(retriever, backend, scorer=scorer, candidates=candidates).run(character, "Where was Watson?"))
    turn = events[-1].turn
    assert isinstance(events[-1], TurnDone)
    return events, turn


def path(turn):
    return [(s.name, s.visit) for s in turn.steps]


def reasons(events):
    return [e.reason for e in events if isinstance(e, TransitionTaken)]


def test_list_procedure_runs_as_before(holmes, retriever):
    backend = ScriptedBackend({"Observe": [[AFGHAN]], "Hypothesise": [[THEORY]], "Conclude": [[TRUTH]]})
    events, turn = run(holmes, backend, retriever=retriever)
    assert path(turn) == [("Observe", 1), ("Hypothesise", 1), ("Conclude", 1)]
    assert [s.index for s in turn.steps] == [0, 1, 2] and reasons(events) == []
    assert all(s.via == "" for s in turn.steps)


def test_ungrounded_step_is_looked_at_again(holmes, retriever):
    character = with_graph(holmes, Observe={
        "max_visits": 2, "next": (Transition("Observe", Condition(ungrounded=True), "no data yet"),)})
    # first visit: nothing, and nothing on the engine's retry either; second visit finds the data
    backend = ScriptedBackend({"Observe": [[NOTHING], [NOTHING], [AFGHAN]], "Hypothesise": [[THEORY]],
                               "Conclude": [[TRUTH]]})
    events, turn = run(character, backend, retriever=retriever)
    assert path(turn) == [("Observe", 1), ("Observe", 2), ("Hypothesise", 1), ("Conclude", 1)]
    assert not turn.steps[0].grounded and turn.steps[1].grounded
    assert reasons(events) == ["no data yet → back to Observe, visit 2 of 2"]
    assert turn.steps[1].via == "no data yet → back to Observe, visit 2 of 2"
    assert [s.index for s in turn.steps] == [0, 1, 2, 3]
    started = [e for e in events if isinstance(e, StepStarted)]
    assert [(e.index, e.name, e.visit) for e in started] == [(0, "Observe", 1), (1, "Observe", 2),
                                                             (2, "Hypothesise", 1), (3, "Conclude", 1)]
    jump = next(e for e in events if isinstance(e, TransitionTaken))
    assert events.index(jump) < events.index(started[1])         # the reason comes before the revisit
    assert (jump.from_name, jump.to_name, jump.visit, jump.max_visits, jump.index) == ("Observe", "Observe", 2, 2, 0)


def test_low_verifier_score_loops_back_and_the_visit_limit_holds(holmes, retriever):
    character = with_graph(holmes, Hypothesise={"max_visits": 3}, Conclude={"next": (
        Transition("Hypothesise", Condition(score_below=0.5), "every hypothesis eliminated"),)})
    backend = ScriptedBackend({"*": [[AFGHAN]]})
    scorer = ScoreBy({"Conclude": [0.2]})               # never good enough: only the limit ends the loop
    events, turn = run(character, backend, scorer=scorer, retriever=retriever)
    assert path(turn) == [("Observe", 1), ("Hypothesise", 1), ("Conclude", 1), ("Hypothesise", 2),
                          ("Conclude", 2), ("Hypothesise", 3), ("Conclude", 3)]
    assert reasons(events) == ["every hypothesis eliminated → back to Hypothesise, visit 2 of 3",
                               "every hypothesis eliminated → back to Hypothesise, visit 3 of 3"]


def test_high_score_branches_ahead_and_the_loop_ends_when_the_score_recovers(holmes, retriever):
    character = with_graph(holmes, Observe={"next": (
        Transition("Conclude", Condition(score_above=0.8), "the facts speak for themselves"),)})
    events, turn = run(character, ScriptedBackend({"*": [[AFGHAN]]}), scorer=ScoreBy({"Observe": [0.9]}),
                       retriever=retriever)
    assert path(turn) == [("Observe", 1), ("Conclude", 1)]
    assert reasons(events) == ["the facts speak for themselves → on to Conclude"]
    # below the threshold the rule does not apply: the list order goes on
    _, turn = run(character, ScriptedBackend({"*": [[AFGHAN]]}), scorer=ScoreBy({"Observe": [0.7]}),
                  retriever=retriever)
    assert [n for n, _ in path(turn)] == ["Observe", "Hypothesise", "Conclude"]


def test_predicted_fault_sends_the_step_back(holmes, retriever):
    character = with_graph(holmes, Observe={"max_visits": 2, "next": (
        Transition("Observe", Condition(fault=("not_in_book",))),)})
    invented = Draft("Afghanistan, plainly.", [Citation("e1", "You have been in Afghanistan"),
                                               Citation("e1", "a quote that is not in the book at all")])
    backend = ScriptedBackend({"Observe": [[invented], [AFGHAN]], "*": [[THEORY]]})
    events, turn = run(character, backend, retriever=retriever)
    assert turn.steps[0].grounded and any(not c.valid for c in turn.steps[0].citations)
    assert path(turn)[:2] == [("Observe", 1), ("Observe", 2)]
    assert reasons(events) == ["likely fault: not in book → back to Observe, visit 2 of 2"]


def test_visit_count_condition_default_and_stop(holmes, retriever):
    # Observe again while it has been taken fewer than 2 times, then the default jumps to Conclude
    character = with_graph(holmes, Observe={"next": (
        Transition("Observe", Condition(visits_below=2), "look once more"),
        Transition("Hypothesise", Condition(ungrounded=True)),
        Transition("Conclude"))})
    events, turn = run(character, ScriptedBackend({"Observe": [[AFGHAN], [DOCTOR]], "*": [[TRUTH]]}),
                       retriever=retriever)
    assert path(turn) == [("Observe", 1), ("Observe", 2), ("Conclude", 1)]
    assert reasons(events) == ["look once more → back to Observe, visit 2", "by the card's default → on to Conclude"]
    # stop: an ungrounded observation ends the procedure; the answer follows
    character = with_graph(holmes, Observe={"next": (Transition(STOP, Condition(ungrounded=True),
                                                                "no data at all"),)})
    events, turn = run(character, ScriptedBackend({"Observe": [[NOTHING]], "*": [[TRUTH]]}), retriever=retriever)
    assert path(turn) == [("Observe", 1)] and reasons(events) == ["no data at all → answering now"]
    assert turn.answer


def test_path_limit_stops_a_loop_no_card_check_caught(holmes, retriever):
    # built by hand, past `check`: a loop without any limit still ends, after 3 × steps
    procedure = (replace(holmes.procedure[0], next=(Transition("Observe"),)),) + holmes.procedure[1:]
    assert any("has no limit" in p[1] for p in graph_problems(procedure))
    character = replace(holmes, procedure=procedure)
    events, turn = run(character, ScriptedBackend({"*": [[AFGHAN]]}), retriever=retriever)
    assert len(turn.steps) == ProcedureGraph(procedure).path_limit == 9
    assert reasons(events)[-1] == "9 steps taken, the most one answer may take → answering now"


def test_closing_the_stream_stops_the_turn(holmes, retriever):
    backend = ScriptedBackend({"*": [[AFGHAN]]})
    events = Engine(retriever, backend).run(holmes, "Where was Watson?")
    for event in events:
        if isinstance(event, StepDone):
            break
    events.close()                          # a reader left after the first step: no more steps are run
    time.sleep(0.3)
    assert [c.step.name for c in backend.calls] == ["Observe"]


@pytest.mark.parametrize("rules, message", [
    ({"Observe": {"next": (Transition("Hypothesis"),)}}, "transition to unknown step 'Hypothesis'"),
    ({"Observe": {"next": (Transition("Conclude"),)}}, "step 'Hypothesise' can never be reached"),
    ({"Conclude": {"next": (Transition("Observe", Condition(score_below=0.5)),)}},
     "the loop Observe → Hypothesise → Conclude → Observe has no limit"),
])
def test_graph_problems_each_kind(holmes, rules, message):
    procedure = tuple(replace(s, **rules.get(s.name, {})) for s in holmes.procedure)
    problems = graph_problems(procedure)
    assert len(problems) == 1 and message in problems[0][1]
    assert problems[0][2]        # a fix


def test_loops_with_a_limit_pass(holmes):
    limited = tuple(replace(s, **rules) for s, rules in zip(holmes.procedure, [
        {}, {"max_visits": 2}, {"next": (Transition("Hypothesise", Condition(score_below=0.5)),)}]))
    counted = tuple(replace(s, **rules) for s, rules in zip(holmes.procedure, [
        {"next": (Transition("Observe", Condition(ungrounded=True, visits_below=3)),)}, {}, {}]))
    assert graph_problems(limited) == [] and graph_problems(counted) == []
