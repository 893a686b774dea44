"""Safety: acknowledged reviews survive SIGKILL, concurrent editors on PostgreSQL keep their
own reviews, and a database that goes away gives a clear error and stores nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import event, select, text

from app.domain import Review, ReviewKind, ReviewSource, Role
from app.review import db
from app.review.models import ReviewHistoryRow, ReviewRow, StepRow
from app.review.store import ReviewStore, StoreUnavailable

ROOT = Path(__file__).resolve().parents[2]
E = ReviewKind.editor


def _assert_consistent(store: ReviewStore) -> None:
    """No half-written review: every row has its matching last history version, and inferred
    labels are exactly the steps after each editor's first own -1 of the turn."""
    with store._tx() as s:
        rows = list(s.scalars(select(ReviewRow)))
        last = {}
        for h in s.scalars(select(ReviewHistoryRow).order_by(ReviewHistoryRow.id)):
            last[h.review_id] = h
        idx = dict(s.execute(select(StepRow.id, StepRow.idx)).all())
        turn_of = dict(s.execute(select(StepRow.id, StepRow.turn_id)).all())
    for r in rows:
        h = last[r.id]
        assert (h.rating, h.source, h.correction, h.action != "delete") == (r.rating, r.source, r.correction, True)
    per = defaultdict(list)
    for r in rows:
        per[(turn_of[r.step_id], r.reviewer)].append(r)
    for (turn, _), rs in per.items():
        wrong = [idx[r.step_id] for r in rs if r.source == "human" and r.rating == -1]
        first = min(wrong) if wrong else None
        for r in rs:
            if r.source == "inferred":
                assert first is not None and idx[r.step_id] > first
        if first is not None:
            later = {sid for sid, t in turn_of.items() if t == turn and idx[sid] > first}
            assert later <= {r.step_id for r in rs}


@pytest.mark.timeout(120)
def test_sigkill_during_burst_loses_no_acknowledged_review(store_url: str, turn_factory) -> None:  # noqa: ANN001
    store = ReviewStore(store_url)
    turns = [turn_factory(grounded=(True, False, True, True)) for _ in range(3)]
    for t in turns:
        store.save_turn(t)
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "review" / "burst_writer.py"), store_url,
                             *[t.id for t in turns]], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    acks = []
    try:
        for line in proc.stdout:
            if line.startswith("ACK"):
                acks.append(line.split())
            if len(acks) >= 150:
                break
        os.kill(proc.pid, signal.SIGKILL)               # mid-burst: it is writing the next review
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and len(acks) >= 150
    final = {}
    for _, n, review_id, step_id, reviewer, rating in acks:
        final[(step_id, reviewer)] = int(rating)       # the latest acknowledged value per reviewer+step
    for (step_id, reviewer), rating in final.items():
        got = [r for r in store.reviews_for_step(step_id) if r.reviewer == reviewer]
        assert got, f"acknowledged review of {step_id} by {reviewer} is missing"
        # later writes (unacknowledged) may have landed, but only whole: the row is either the
        # acknowledged human rating, a newer one, or an inferred -1 produced by a newer write
        assert got[0].source in (ReviewSource.human, ReviewSource.inferred)
    acked_ids = {int(a[2]) for a in acks}
    with store._tx() as s:
        history_ids = set(s.scalars(select(ReviewHistoryRow.review_id)))
    assert acked_ids <= history_ids
    _assert_consistent(store)
    store.close()


@pytest.mark.timeout(120)
def test_concurrent_editors_do_not_overwrite_each_other(store_url: str, turn_factory) -> None:  # noqa: ANN001
    pg_url = store_url
    seed = ReviewStore(pg_url)
    turns = [turn_factory(grounded=(True, True, True, True)) for _ in range(3)]
    for t in turns:
        seed.save_turn(t)
    steps = [st for t in turns for st in t.steps]
    editors = [f"editor{i}" for i in range(6)]
    barrier = threading.Barrier(len(editors) + 2)
    errors: list[BaseException] = []

    def work(reviewer: str, rating_of) -> None:  # noqa: ANN001
        store = ReviewStore(pg_url)
        try:
            barrier.wait()
            for st in steps:
                store.record_review(Review(step_id=st.id, reviewer=reviewer, kind=E,
                                           rating=rating_of(st)), Role.editor)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=work, args=(ed, lambda st, i=i: (1, 0)[i % 2])) for i, ed in enumerate(editors)]
    # two browser tabs of the same editor racing on the same steps (first insert races included)
    threads += [threading.Thread(target=work, args=("twin", lambda st: 1)) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    with seed._tx() as s:
        rows = s.execute(select(ReviewRow.reviewer, ReviewRow.step_id, ReviewRow.rating)).all()
        hist = s.scalar(select(text("count(*)")).select_from(ReviewHistoryRow))
    per = defaultdict(dict)
    for reviewer, step_id, rating in rows:
        per[reviewer][step_id] = rating
    assert set(per) == set(editors) | {"twin"}
    for i, ed in enumerate(editors):
        assert per[ed] == {st.id: (1, 0)[i % 2] for st in steps}
    assert len(per["twin"]) == len(steps)
    assert hist == (len(editors) + 2) * len(steps)
    _assert_consistent(seed)
    seed.close()


@pytest.mark.postgres
def test_postgres_going_away_mid_write_is_a_clear_error(pg_url: str, turn_factory) -> None:  # noqa: ANN001
    """The database is dropped while a review write waits inside it (on a row lock another
    session holds): the writer gets a clear error, and so does every later call."""
    import time

    import psycopg

    db.upgrade(pg_url)
    store = ReviewStore(pg_url)
    turn = turn_factory()
    store.save_turn(turn)
    store.record_review(Review(step_id=turn.steps[0].id, reviewer="ann", kind=E, rating=1), Role.editor)
    name = pg_url.rsplit("/", 1)[1]
    blocker = psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={name}")
    blocker.execute("SELECT 1 FROM reviews WHERE step_id = %s FOR UPDATE", (turn.steps[0].id,))
    outcome: dict[str, str] = {}

    def write() -> None:
        try:
            store.record_review(Review(step_id=turn.steps[0].id, reviewer="ann", kind=E, rating=-1), Role.editor)
            outcome["stored"] = "yes"
        except StoreUnavailable as exc:
            outcome["error"] = str(exc)

    writer = threading.Thread(target=write)
    writer.start()
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as admin:
        deadline = time.monotonic() + 20
        while not admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                "AND wait_event_type = 'Lock'", (name,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the write never waited on the lock"
            time.sleep(0.02)
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    writer.join(30)
    blocker.close()
    assert "stored" not in outcome
    assert re.search(r"unavailable.*is PostgreSQL running.*Nothing was stored", outcome["error"])
    with pytest.raises(StoreUnavailable, match="does not exist"):     # and every later call says so too
        store.reviews_for_step(turn.steps[0].id)
    with pytest.raises(StoreUnavailable, match="does not exist"):
        store.record_review(Review(step_id=turn.steps[1].id, reviewer="ann", kind=E, rating=1), Role.editor)
    store.close()


@pytest.mark.postgres
def test_postgres_restart_is_survived(pg_url: str, turn_factory) -> None:  # noqa: ANN001
    """Pooled connections the server closed while idle (a restart ends every session the same
    way: an error sent, the socket closed) are not lent again: the next calls just work."""
    import time

    import psycopg

    db.upgrade(pg_url)
    store = ReviewStore(pg_url)
    turn = turn_factory()
    store.save_turn(turn)
    store.record_review(Review(step_id=turn.steps[0].id, reviewer="ann", kind=E, rating=1), Role.editor)
    held = [store.engine.connect() for _ in range(3)]      # three idle connections in the pool
    for conn in held:
        conn.close()
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as admin:
        ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                              (name,)).fetchone()[0]
        assert ended >= 3
        deadline = time.monotonic() + 10
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)).fetchone()[0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    stored = store.record_review(Review(step_id=turn.steps[1].id, reviewer="ann", kind=E, rating=-1), Role.editor)
    assert stored.rating == -1
    assert [r.source for r in store.reviews_for_step(turn.steps[2].id)] == [ReviewSource.inferred]
    store.save_turn(turn_factory())
    store.close()


def test_sqlite_unusable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data dir should be")
    with pytest.raises(StoreUnavailable, match="cannot create the folder.*BOOKBOT_DATA_DIR"):
        db.upgrade(f"sqlite:///{blocker / 'sub' / 'bookbot.db'}")
    (tmp_path / "dir.db").mkdir()                      # a folder where the database file should be
    with pytest.raises(StoreUnavailable, match="unavailable.*Nothing was stored"):
        db.upgrade(f"sqlite:///{tmp_path / 'dir.db'}")
