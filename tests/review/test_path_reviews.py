"""Reviews follow the path a procedure graph took: early stop along the path, path order in exports."""

from __future__ import annotations

import json

from app.bots.backends import Draft, ScriptedBackend
from app.bots.engine import Engine
from app.domain import (Character, Citation, Condition, Excerpt, Location, ProcedureStep, Review, ReviewKind,
                        ReviewSource, Role, Transition)
from app.review import exports

TEXTS = {"e1": "You have been in Afghanistan, I perceive.", "e2": "Clearly an army doctor, then.",
         "e3": "When you have eliminated the impossible, whatever remains must be the truth."}


class Shelf:
    """Every excerpt for every query: the scripted drafts decide what is cited."""

    def __init__(self):
        self.excerpts = [Excerpt(eid, "gutenberg-244", text, Location("gutenberg-244", 1, "One", i, i))
                         for i, (eid, text) in enumerate(TEXTS.items(), start=1)]

    def retrieve(self, query, *, top_k=5, book_ids=None):
        return list(self.excerpts)

    def get(self, excerpt_id):
        return next((e for e in self.excerpts if e.id == excerpt_id), None)


HOLMES = Character(
    id="holmes", name="Sherlock Holmes", book_ids=("gutenberg-244",), language="en", description="d",
    personality="p", speech_style="s", greeting="g",
    procedure=(ProcedureStep("Observe", "Note the facts.", max_visits=2,
                             next=(Transition("Observe", Condition(ungrounded=True), "no data yet"),)),
               ProcedureStep("Deduce", "Deduce."), ProcedureStep("Conclude", "Conclude.")))


def graph_turn(store):
    backend = ScriptedBackend({
        "Observe": [[Draft("Nothing here.", [])], [Draft("Still nothing.", [])],
                    [Draft("Afghanistan.", [Citation("e1", "You have been in Afghanistan")])]],
        "Deduce": [[Draft("An army doctor.", [Citation("e2", "Clearly an army doctor")])]],
        "Conclude": [[Draft("The truth.", [Citation("e3", "whatever remains must be the truth")])]]})
    return Engine(Shelf(), backend, sink=store, candidates=1).answer(HOLMES, "Where was Watson?")


def rate(store, step, rating, reviewer="ann"):
    store.record_review(Review(step_id=step.id, reviewer=reviewer, kind=ReviewKind.editor, rating=rating),
                        Role.editor)


def test_stored_path_and_early_stop_along_it(store):
    turn = graph_turn(store)
    stored = store.get_turn(turn.id)
    assert [(s.index, s.name, s.visit) for s in stored.steps] == [
        (0, "Observe", 1), (1, "Observe", 2), (2, "Deduce", 1), (3, "Conclude", 1)]
    assert stored.steps[1].via == "no data yet → back to Observe, visit 2 of 2" and stored.steps[2].via == ""
    first, again, deduce, conclude = stored.steps
    # the revisit was right: a -1 on it ends the review of what came after it on the path only
    rate(store, first, 1)
    rate(store, again, -1)
    assert store.reviews_for_step(first.id)[0].source == ReviewSource.human
    for step in (deduce, conclude):
        (r,) = store.reviews_for_step(step.id)
        assert (r.rating, r.source) == (-1, ReviewSource.inferred)
    # a -1 on the first visit ends the review of everything after it, the revisit included
    rate(store, again, 1)
    rate(store, first, -1)
    assert [store.reviews_for_step(s.id)[0].source for s in (again, deduce, conclude)] == [
        ReviewSource.human, ReviewSource.inferred, ReviewSource.inferred]


def test_exports_keep_the_order_steps_were_taken(store, tmp_path):
    turn = graph_turn(store)
    for step, rating in zip(turn.steps, (-1, 1, 1, 1)):
        rate(store, step, rating)
    out = tmp_path / "trl.jsonl"
    exports.export(store.engine, "trl-stepwise", out)
    (row,) = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert row["completions"] == [s.text for s in turn.steps]
    assert row["completions"][0] != row["completions"][1] and "Afghanistan" in row["completions"][1]
    assert row["labels"] == [False, False, False, False]     # the first wrong step is the first visit
