"""ReviewStore on real SQLite and PostgreSQL: turns round-trip, review rules, PRM800K early stop."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.domain import FaultTag, Review, ReviewKind, ReviewSource, Role
from app.review.models import ReviewHistoryRow, ReviewRow
from app.review.store import ReviewError

E, R = ReviewKind.editor, ReviewKind.reader


def _count(store, model) -> int:  # noqa: ANN001
    with store._tx() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_turn_round_trip(store, turn_factory) -> None:  # noqa: ANN001
    turn = turn_factory(grounded=(True, False, True))
    store.save_turn(turn)
    got = store.get_turn(turn.id)
    assert got is not None
    assert (got.question, got.answer, got.character_id, got.backend) == (
        turn.question, turn.answer, turn.character_id, turn.backend)
    assert [s.id for s in got.steps] == [s.id for s in turn.steps]
    for a, b in zip(got.steps, turn.steps):
        assert (a.name, a.text, a.index, a.grounded) == (b.name, b.text, b.index, b.grounded)
        assert a.citations == b.citations
        assert a.excerpts == b.excerpts
        assert [(c.text, c.chosen, c.features, c.citations) for c in a.candidates] == [
            (c.text, c.chosen, c.features, c.citations) for c in b.candidates]
    assert abs(got.created_at.timestamp() - turn.created_at.timestamp()) < 1e-3
    store.save_turn(turn)                                     # idempotent
    assert len(store.get_turn(turn.id).steps) == 3
    assert store.get_turn("nope") is None


def test_review_validation_refuses_and_stores_nothing(store, turn_factory) -> None:  # noqa: ANN001
    turn = turn_factory()
    store.save_turn(turn)
    sid = turn.steps[0].id
    bad = [
        (Review(step_id="missing", reviewer="ed", kind=E, rating=1), Role.editor, "unknown step"),
        (Review(step_id=sid, reviewer="ed", kind=E, rating=2), Role.editor, "out of range"),
        (Review(step_id=sid, reviewer="rd", kind=R, rating=0), Role.reader, "out of range"),
        (Review(step_id=sid, reviewer="ed", kind=E, rating=True), Role.editor, "out of range"),
        (Review(step_id=sid, reviewer="ed", kind=E, rating=-1, correction="x" * 9000), Role.editor,
         "limit is 8000"),
        (Review(step_id=sid, reviewer="rd", kind=E, rating=1), Role.reader, "is a reader"),
        (Review(step_id=sid, reviewer="ed", kind=E, rating=1), "boss", "unknown role"),
        (Review(step_id=sid, reviewer="ed", kind=E, rating=1, fault_tags=("rude",)), Role.editor,
         "unknown fault tag"),
        (Review(step_id=sid, reviewer="ed", kind=E, rating=-1, source=ReviewSource.inferred), Role.editor,
         "inferred"),
        (Review(step_id=sid, reviewer="v", kind=E, rating=1, source=ReviewSource.machine), Role.editor,
         "lab role"),
        (Review(step_id=sid, reviewer="", kind=E, rating=1), Role.editor, "reviewer name"),
    ]
    for review, role, message in bad:
        with pytest.raises(ReviewError, match=message):
            store.record_review(review, role)
    assert _count(store, ReviewRow) == 0 and _count(store, ReviewHistoryRow) == 0


def test_one_current_review_per_reviewer_with_history(store, turn_factory) -> None:  # noqa: ANN001
    turn = turn_factory()
    store.save_turn(turn)
    sid = turn.steps[1].id
    first = store.record_review(Review(step_id=sid, reviewer="ann", kind=E, rating=1), Role.editor)
    second = store.record_review(Review(step_id=sid, reviewer="ann", kind=E, rating=0,
                                        correction="Better: cite the letter.",
                                        fault_tags=(FaultTag.wrong_excerpt,)), Role.editor)
    assert first.id == second.id and second.rating == 0 and second.updated_at >= first.created_at
    store.record_review(Review(step_id=sid, reviewer="bob", kind=E, rating=1), Role.lab)
    store.record_review(Review(step_id=sid, reviewer="ann", kind=R, rating=-1), Role.editor)
    store.record_review(Review(step_id=sid, reviewer="rita", kind=R, rating=1), Role.reader)
    reviews = store.reviews_for_step(sid)
    assert sorted((r.reviewer, r.kind.value, r.rating) for r in reviews) == [
        ("ann", "editor", 0), ("ann", "reader", -1), ("bob", "editor", 1), ("rita", "reader", 1)]
    ann = [r for r in reviews if r.reviewer == "ann" and r.kind is E][0]
    assert ann.correction == "Better: cite the letter." and ann.fault_tags == (FaultTag.wrong_excerpt,)
    assert [r.reviewer for r in store.reviews_for_step(sid, kind=R)] == ["ann", "rita"]
    hist = store.review_history(sid, "ann")
    assert [(h.kind.value, h.rating, h.action) for h in hist] == [
        ("editor", 1, "create"), ("editor", 0, "update"), ("reader", -1, "create")]


def test_prm800k_early_stop_inferred_labels(store, turn_factory) -> None:  # noqa: ANN001
    turn = turn_factory(grounded=(True, True, True, True))
    store.save_turn(turn)
    s0, s1, s2, s3 = (s.id for s in turn.steps)
    store.record_review(Review(step_id=s0, reviewer="ann", kind=E, rating=1), Role.editor)
    store.record_review(Review(step_id=s1, reviewer="ann", kind=E, rating=-1,
                               fault_tags=(FaultTag.not_in_book,)), Role.editor)
    by_step = store.reviews_for_turn(turn.id)
    for sid in (s2, s3):
        (r,) = by_step[sid]
        assert (r.reviewer, r.rating, r.source) == ("ann", -1, ReviewSource.inferred)
    assert store.reviews_for_step(s2, include_inferred=False) == []
    # the queue does not ask ann for the inferred steps: the turn is done for her
    assert store.queue(reviewer="ann") == []
    assert store.progress(reviewer="ann").steps_done == 4
    # bob is still asked, and his -1 on the last step infers nothing
    assert [q.turn_id for q in store.queue(reviewer="bob")] == [turn.id]
    store.record_review(Review(step_id=s3, reviewer="bob", kind=E, rating=-1), Role.editor)
    assert len(store.reviews_for_step(s3)) == 2
    # an earlier -1 moves the inferred labels; a human label is never overwritten
    store.record_review(Review(step_id=s2, reviewer="ann", kind=E, rating=1), Role.editor)
    store.record_review(Review(step_id=s0, reviewer="ann", kind=E, rating=-1), Role.editor)
    ann = {sid: [r for r in rs if r.reviewer == "ann"][0] for sid, rs in store.reviews_for_turn(turn.id).items()}
    assert (ann[s1].source, ann[s2].source, ann[s3].source) == (
        ReviewSource.human, ReviewSource.human, ReviewSource.inferred)
    # changing every -1 removes the inferred labels again
    store.record_review(Review(step_id=s0, reviewer="ann", kind=E, rating=1), Role.editor)
    store.record_review(Review(step_id=s1, reviewer="ann", kind=E, rating=0), Role.editor)
    assert store.reviews_for_step(s3, kind=E) and all(
        r.reviewer == "bob" for r in store.reviews_for_step(s3))
    assert [q.turn_id for q in store.queue(reviewer="ann")] == [turn.id]      # s3 needs ann again
    actions = [h.action for h in store.review_history(s3, "ann")]
    assert actions == ["create", "delete"]


def test_reader_thumbs_do_not_count_as_editor_review(store, turn_factory) -> None:  # noqa: ANN001
    turn = turn_factory(grounded=(True, True))
    store.save_turn(turn)
    store.record_review(Review(step_id=turn.steps[0].id, reviewer="rita", kind=R, rating=-1), Role.reader)
    assert store.reviews_for_step(turn.steps[1].id) == []          # no early stop from readers
    assert store.queue()[0].steps_done == 0


def test_machine_labels_kept_apart(store, turn_factory) -> None:  # noqa: ANN001
    turn = turn_factory(grounded=(True, True))
    store.save_turn(turn)
    store.record_review(Review(step_id=turn.steps[0].id, reviewer="verifier", kind=E, rating=-1,
                               source=ReviewSource.machine), Role.lab)
    assert store.reviews_for_step(turn.steps[1].id) == []          # machine -1 infers nothing
    assert store.reviews_for_step(turn.steps[0].id, include_machine=False) == []
    assert store.queue()[0].steps_done == 0                        # still asked of people


def test_delete_review_keeps_history(store, turn_factory) -> None:  # noqa: ANN001
    turn = turn_factory(grounded=(True, True))
    store.save_turn(turn)
    s0, s1 = (s.id for s in turn.steps)
    store.record_review(Review(step_id=s0, reviewer="ann", kind=E, rating=-1), Role.editor)
    assert store.delete_review(s0, "ann") is True
    assert store.reviews_for_turn(turn.id) == {}
    assert [h.action for h in store.review_history(s0)] == ["create", "delete"]
    assert store.delete_review(s0, "ann") is False


def test_users(store) -> None:  # noqa: ANN001
    from app.review.accounts import AccountError

    ed = store.add_user("edith", "correct horse", Role.editor)
    assert ed.role is Role.editor
    assert store.authenticate("edith", "correct horse") == ed
    assert store.authenticate("edith", "wrong password") is None
    assert store.authenticate("nobody", "correct horse") is None
    with pytest.raises(AccountError, match="already exists"):
        store.add_user("edith", "another password")
    with pytest.raises(AccountError, match="too short"):
        store.add_user("tim", "short")
    with pytest.raises(AccountError, match="unknown role"):
        store.set_role("edith", "admin")
    with pytest.raises(AccountError, match="no user named"):
        store.set_role("ghost", Role.lab)
    assert store.set_role("edith", "lab").role is Role.lab
    store.add_user("rita", "reader password")
    assert [(u.name, u.role.value) for u in store.list_users()] == [("edith", "lab"), ("rita", "reader")]
    with store._tx() as s:
        from app.review.models import Account

        stored = s.scalar(select(Account.password_hash).where(Account.name == "rita"))
    assert stored.startswith("$argon2id$") and "reader password" not in stored


def test_snapshots(store) -> None:  # noqa: ANN001
    store.add_snapshot("snap-1", "holmes", metrics={"auc": 0.7}, artifact_path="/d/snap-1", active=True)
    store.add_snapshot("snap-2", "holmes", metrics={"auc": 0.8}, artifact_path="/d/snap-2")
    store.add_snapshot("snap-a", "alice", active=True)
    assert store.active_snapshot("holmes").id == "snap-1"
    store.activate_snapshot("snap-2")
    assert store.active_snapshot("holmes").metrics == {"auc": 0.8}
    assert store.active_snapshot("alice").id == "snap-a"
    assert {s.id for s in store.list_snapshots("holmes")} == {"snap-1", "snap-2"}
    store.deactivate_snapshots("holmes")
    assert store.active_snapshot("holmes") is None


def test_iter_labelled_steps_gives_full_steps(store, turn_factory) -> None:  # noqa: ANN001
    a, b = turn_factory(character="holmes"), turn_factory(character="alice")
    for t in (a, b):
        store.save_turn(t)
    store.record_review(Review(step_id=a.steps[0].id, reviewer="ann", kind=E, rating=-1), Role.editor)
    store.record_review(Review(step_id=a.steps[1].id, reviewer="rita", kind=R, rating=1), Role.reader)
    store.record_review(Review(step_id=b.steps[0].id, reviewer="verifier", kind=E, rating=1,
                               source=ReviewSource.machine), Role.lab)
    items = list(store.iter_labelled_steps())
    assert [(ch, st.index, [r.source.value for r in rs]) for ch, _, st, rs in items] == [
        ("holmes", 0, ["human"]), ("holmes", 1, ["inferred", "human"]), ("holmes", 2, ["inferred"])]
    assert items[0][2].candidates[0].features == a.steps[0].candidates[0].features
    assert items[0][2].excerpts == a.steps[0].excerpts
    assert [ch for ch, *_ in store.iter_labelled_steps(include_machine=True)].count("alice") == 1
    assert list(store.iter_labelled_steps("alice")) == []
