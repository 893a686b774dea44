"""The engine with a scripted backend and an in-memory retriever: events, validation, ungrounded steps."""

from __future__ import annotations

import asyncio

import pytest

from app.bots.backends import BackendError, Draft, ExtractiveBackend, ScriptedBackend
from app.bots.engine import (AnswerDelta, Engine, Notice, StepDelta, StepDone, StepStarted, TurnDone,
                             TurnStarted, build_query)
from app.domain import Citation


class ListSink:
    def __init__(self):
        self.turns = []

    def save_turn(self, turn):
        self.turns.append(turn)


def good(eid, quote, text="Step text."):
    return Draft(text, [Citation(eid, quote)])


def test_event_order_timings_and_sink(holmes, retriever):
    backend = ScriptedBackend({
        "Observe": [[good("e1", "You have been in Afghanistan", "You came from Afghanistan, I perceive."),
                     Draft("A guess with no citation.", [])]],
        "Hypothesise": [[good("e3", "capital mistake to theorize")]],
        "Conclude": [[good("e4", "whatever remains, however improbable")]],
    }, answer="Elementary: Afghanistan.")
    sink = ListSink()
    events = list(Engine(retriever, backend, sink=sink, candidates=2).run(holmes, "Where had Watson been?",
                                                                          conversation_id="c1"))
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "TurnStarted" and kinds[-1] == "TurnDone"
    # per step: started, >=1 delta, done; steps in procedure order; then answer deltas
    order = [k for k in kinds if k in ("StepStarted", "StepDone", "AnswerDelta")]
    assert order[:6] == ["StepStarted", "StepDone"] * 3
    assert set(order[6:]) == {"AnswerDelta"}
    first_start = kinds.index("StepStarted")
    assert kinds[first_start + 1] == "StepDelta"
    times = [e.t_ms for e in events]
    assert times == sorted(times)
    turn = events[-1].turn
    assert [s.name for s in turn.steps] == ["Observe", "Hypothesise", "Conclude"]
    assert all(s.grounded for s in turn.steps)
    obs = turn.steps[0]
    assert len(obs.candidates) == 2 and sum(c.chosen for c in obs.candidates) == 1
    assert obs.candidates[0].chosen and obs.text == "You came from Afghanistan, I perceive."
    assert obs.excerpts[0].id == "e1"                   # cited excerpt first
    assert obs.retrieval_ms >= 0 and obs.generation_ms >= 0
    assert "grounded" in obs.candidates[0].features and obs.candidates[1].features["grounded"] == 0
    assert turn.answer == "Elementary: Afghanistan." and turn.conversation_id == "c1"
    assert sink.turns == [turn]
    # step ids announced before the step is done are the step's id (reviews attach to them)
    started_ids = [e.step_id for e in events if isinstance(e, StepStarted)]
    assert started_ids == [s.id for s in turn.steps]
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == turn.answer


def test_query_uses_question_step_search_and_earlier_steps(holmes, retriever):
    backend = ScriptedBackend({"*": [[good("e1", "You have been in Afghanistan", "Watson was in Afghanistan.")]]})
    Engine(retriever, backend).answer(holmes, "Where was Watson?")
    q0, q1 = retriever.queries[0], retriever.queries[1]
    assert q0[0].startswith("Where was Watson?") and "observe perceive Afghanistan" in q0[0]
    assert "theorize evidence" in q1[0] and "Watson was in Afghanistan." in q1[0]
    assert q0[2] == ("gutenberg-244",)
    assert build_query("q", holmes.procedure[1], []) == "q theorize evidence"
    assert build_query("Why?", holmes.procedure[1], [], [("Was Watson a doctor?", "Yes.")]) == \
        "Why? Was Watson a doctor? theorize evidence"
    assert build_query("Why was Watson a doctor then?", holmes.procedure[1], [], [("x", "y")]).count("x") == 0


def test_citation_must_come_from_this_steps_retrieval(holmes, retriever):
    # e6 exists in the library but belongs to another book: never retrieved for Holmes
    backend = ScriptedBackend({"*": [[good("e6", "very tired of sitting by her sister")],
                                     [good("e6", "very tired of sitting by her sister")]]})
    turn = Engine(retriever, backend, candidates=1).answer(holmes, "Who is tired?")
    for step in turn.steps:
        assert not step.grounded
        assert step.citations[0].problem.startswith("unknown excerpt")


def test_ungrounded_step_is_retried_once_then_marked(holmes, retriever):
    backend = ScriptedBackend({
        "Observe": [[Draft("Made up.", [Citation("e1", "a quote that is nowhere")])],
                    [Draft("Still made up.", [])]],
        "Hypothesise": [[Draft("No cite.", [])], [good("e3", "It biases the judgment", "Retried well.")]],
        "Conclude": [[good("e4", "must be the truth")]],
    })
    events = list(Engine(retriever, backend, candidates=1).run(holmes, "What is the method?"))
    turn = events[-1].turn
    obs, hyp, con = turn.steps
    assert not obs.grounded and len(obs.candidates) == 2
    assert obs.candidates[0].citations[0].problem == "quote not in excerpt"
    assert not any(c.valid for c in obs.citations)
    assert hyp.grounded and hyp.text == "Retried well." and len(hyp.candidates) == 2
    assert con.grounded and len(con.candidates) == 1
    calls = [(r.step.name, r.retry) for r in backend.calls]
    assert calls == [("Observe", False), ("Observe", True), ("Hypothesise", False), ("Hypothesise", True),
                     ("Conclude", False)]
    # retry text is not streamed as if it belonged to the first attempt
    obs_deltas = "".join(e.text for e in events if isinstance(e, StepDelta) and e.index == 0)
    assert obs_deltas == "Made up."


def test_backend_failure_falls_back_offline_with_notice(holmes, retriever):
    backend = ScriptedBackend({"*": [[good("e1", "You have been in Afghanistan")]]}, fail_on={"Hypothesise"},
                              name="openai:test")
    backend.offline = False
    events = list(Engine(retriever, backend).run(holmes, "What about theorizing without evidence?"))
    notices = [e for e in events if isinstance(e, Notice)]
    assert len(notices) == 1 and "OFFLINE MODE" in notices[0].message and "openai:test" in notices[0].message
    turn = events[-1].turn
    assert turn.backend == "extractive (fallback from openai:test)"
    assert len(turn.steps) == 3 and all(s.grounded for s in turn.steps)
    starts = [e for e in events if isinstance(e, StepStarted)]
    assert [s.index for s in starts] == [0, 1, 1, 2]
    assert starts[1].step_id == starts[2].step_id == turn.steps[1].id
    assert turn.answer.startswith("Data: ")


def test_sink_failure_is_reported_not_lost(holmes, retriever):
    class Broken:
        def save_turn(self, turn):
            raise RuntimeError("database is locked")
    events = list(Engine(retriever, ExtractiveBackend(), sink=Broken()).run(holmes, "Afghanistan?"))
    assert isinstance(events[-1], TurnDone) and events[-1].turn.answer
    assert any(isinstance(e, Notice) and "database is locked" in e.message for e in events)


def test_custom_scorer_picks_and_features_are_kept(holmes, retriever):
    class PreferLong:
        def score(self, *, question, step, step_index, candidate, excerpts):
            return len(candidate.text) + candidate.features["grounded"]
    backend = ScriptedBackend({"*": [[good("e1", "I perceive", "short"),
                                      good("e1", "I perceive", "a much longer grounded text")]]})
    turn = Engine(retriever, backend, scorer=PreferLong(), candidates=2).answer(holmes, "Afghanistan?")
    assert turn.steps[0].text == "a much longer grounded text"
    assert turn.steps[0].score == len("a much longer grounded text") + 1


def test_exemplars_reach_the_backend(holmes, retriever):
    from app.domain import Exemplar

    class Source:
        def exemplars(self, character_id, step_name, question, k=2):
            return [Exemplar(character_id, step_name, question, f"approved {step_name}", ("e1",))]
    backend = ScriptedBackend({"*": [[good("e1", "I perceive")]]})
    Engine(retriever, backend, exemplars=Source()).answer(holmes, "q?")
    assert [r.exemplars[0].text for r in backend.calls] == ["approved Observe", "approved Hypothesise",
                                                            "approved Conclude"]


def test_no_excerpts_gives_ungrounded_steps(holmes):
    class Empty:
        def retrieve(self, query, *, top_k=5, book_ids=None):
            return []

        def get(self, excerpt_id):
            return None
    turn = Engine(Empty(), ExtractiveBackend()).answer(holmes, "Anything?")
    assert all(not s.grounded and s.citations == [] for s in turn.steps)
    assert "nothing" in turn.answer


def test_async_wrapper(holmes, retriever):
    async def collect():
        return [e async for e in Engine(retriever, ExtractiveBackend()).arun(holmes, "Afghanistan?")]
    events = asyncio.run(collect())
    assert isinstance(events[0], TurnStarted) and isinstance(events[-1], TurnDone)
    assert sum(isinstance(e, StepDone) for e in events) == 3


def test_fallback_failure_propagates(holmes, retriever):
    backend = ScriptedBackend(fail_on={"*"})
    with pytest.raises(BackendError):
        list(Engine(retriever, backend, fallback=backend).run(holmes, "q"))
