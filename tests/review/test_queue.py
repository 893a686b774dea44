"""Review queue: least grounded first then newest, character filter, skip, progress counts."""

from __future__ import annotations

from app.domain import Review, ReviewKind, Role

E = ReviewKind.editor


def test_queue_order_filter_skip_progress(store, turn_factory, ago) -> None:  # noqa: ANN001
    minutes_ago = ago
    grounded_old = turn_factory(grounded=(True, True), created_at=minutes_ago(30))
    grounded_new = turn_factory(grounded=(True, True), created_at=minutes_ago(10))
    ungrounded = turn_factory(grounded=(False, False), created_at=minutes_ago(50))
    half = turn_factory(grounded=(True, False), created_at=minutes_ago(40))
    alice = turn_factory(character="alice", grounded=(False, True), created_at=minutes_ago(5),
                         question="Why is a raven like a writing desk?")
    for t in (grounded_old, grounded_new, ungrounded, half, alice):
        store.save_turn(t)

    order = [q.turn_id for q in store.queue(reviewer="ann")]
    assert order == [ungrounded.id, alice.id, half.id, grounded_new.id, grounded_old.id]
    assert [q.turn_id for q in store.queue("holmes", reviewer="ann")] == [
        ungrounded.id, half.id, grounded_new.id, grounded_old.id]
    assert [q.turn_id for q in store.queue("holmes", limit=2, reviewer="ann")] == [ungrounded.id, half.id]
    assert store.characters() == ["alice", "holmes"]

    p = store.progress(reviewer="ann")
    assert (p.turns_total, p.turns_done, p.turns_pending, p.steps_total, p.steps_done) == (5, 0, 5, 10, 0)

    store.skip("ann", ungrounded.id)
    assert store.next_turn("ann", "holmes").turn_id == half.id
    last = store.queue("holmes", reviewer="ann")[-1]
    assert last.turn_id == ungrounded.id and last.skipped
    assert store.queue("holmes", reviewer="bob")[0].turn_id == ungrounded.id   # skips are per editor
    assert store.progress(reviewer="ann", character="holmes").turns_skipped == 1

    for step in half.steps:
        store.record_review(Review(step_id=step.id, reviewer="ann", kind=E, rating=1), Role.editor)
    store.record_review(Review(step_id=ungrounded.steps[0].id, reviewer="ann", kind=E, rating=-1), Role.editor)
    p = store.progress(reviewer="ann", character="holmes")
    assert (p.turns_total, p.turns_done, p.turns_pending, p.turns_skipped) == (4, 2, 2, 0)
    assert (p.steps_total, p.steps_done) == (8, 4)
    assert [q.turn_id for q in store.queue("holmes", reviewer="ann")] == [grounded_new.id, grounded_old.id]
    item = store.queue(reviewer="ann")[0]
    assert (item.turn_id, item.steps_total, item.steps_done) == (alice.id, 2, 0)
    assert store.progress().steps_done == 4                      # anyone's reviews, no reviewer given


def test_pluggable_priority(store, turn_factory, ago) -> None:  # noqa: ANN001
    minutes_ago = ago
    a = turn_factory(question="short?", created_at=minutes_ago(3))
    b = turn_factory(question="a much longer question?", created_at=minutes_ago(2))
    store.save_turn(a)
    store.save_turn(b)
    assert [q.turn_id for q in store.queue()] == [b.id, a.id]           # equal priority: newest first
    assert store.reprioritize(lambda turn: -len(turn.question)) == 2
    assert [q.turn_id for q in store.queue()] == [a.id, b.id]


def test_failing_priority_function_does_not_lose_the_turn(sqlite_store, turn_factory) -> None:  # noqa: ANN001
    def broken(turn):  # noqa: ANN001, ANN202
        raise RuntimeError("verifier not loaded")

    sqlite_store.priority = broken
    turn = turn_factory(grounded=(False, True))
    sqlite_store.save_turn(turn)
    (item,) = sqlite_store.queue()
    assert item.turn_id == turn.id and item.priority == 0.5
