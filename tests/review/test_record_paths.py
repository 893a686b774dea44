"""PostgreSQL records a review in one function call, SQLite in three statements: the same reviews result.

A seeded random sequence of editor ratings (with -1s that start and end PRM800K early
stops), reader thumbs, withdrawals and machine labels is applied to both databases; the
current reviews and every step's history actions must be identical.
"""

from __future__ import annotations

import random

import pytest

from app.domain import Review, ReviewKind, ReviewSource, Role
from app.review import db
from app.review.store import ReviewStore
from conftest import make_turn

pytestmark = pytest.mark.postgres


def _apply(store: ReviewStore, turns, ops) -> tuple[list, list]:
    for t in turns:
        store.save_turn(t)
    for op in ops:
        kind, t, i, who, rating = op
        step_id = turns[t].steps[i].id
        if kind == "delete":
            store.delete_review(step_id, who)
        elif kind == "reader":
            store.record_review(Review(step_id=step_id, reviewer=who, kind=ReviewKind.reader, rating=rating),
                                Role.reader)
        elif kind == "machine":
            store.record_review(Review(step_id=step_id, reviewer=who, kind=ReviewKind.editor, rating=rating,
                                       source=ReviewSource.machine), Role.lab)
        else:
            store.record_review(Review(step_id=step_id, reviewer=who, kind=ReviewKind.editor, rating=rating,
                                       correction=f"c{rating}"), Role.editor)
    current, history = [], []
    for ti, t in enumerate(turns):
        for i, st in enumerate(t.steps):
            current += sorted((ti, i, r.reviewer, r.kind.value, r.rating, r.source.value, r.correction)
                              for r in store.reviews_for_step(st.id))
            history += sorted((ti, i, h.reviewer, h.action, h.rating, h.source.value)
                              for h in store.review_history(st.id))
    return current, history


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_one_statement_and_orm_paths_agree(sqlite_url, pg_url, seed: int) -> None:
    rng = random.Random(seed)
    turns = [make_turn(grounded=(True, False, True, True, False)) for _ in range(2)]
    ops = []
    for _ in range(120):
        kind = rng.choices(["editor", "delete", "reader", "machine"], [10, 2, 2, 1])[0]
        rating = rng.choice((-1, 1)) if kind == "reader" else rng.choice((-1, -1, 0, 1))
        ops.append((kind, rng.randrange(2), rng.randrange(5), rng.choice(("ann", "bob")), rating))
    results = []
    for url in (sqlite_url, pg_url):
        db.upgrade(url)
        store = ReviewStore(url)
        results.append(_apply(store, turns, ops))
        store.close()
    assert results[0][0] == results[1][0]
    assert results[0][1] == results[1][1]
    assert any(row[5] == "inferred" for row in results[1][0])       # the sequence did exercise early stop
