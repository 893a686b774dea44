"""Review store benchmark: review writes per second (SQLite, PostgreSQL) and export time and
peak memory for 100,000 stored steps.

Baselines measured in the same run:
- writes: a bare one-row INSERT + COMMIT per transaction on the same database (the floor
  any durable per-review commit pays), next to `ReviewStore.record_review` (validation,
  current-review upsert, history row, PRM800K early-stop bookkeeping, one transaction each);
- exports: each export runs in a fresh subprocess and reports its peak RSS; the baseline is
  the same subprocess that imports everything and connects but exports nothing, and a
  10x smaller database shows whether memory grows with the data (it should not).

Usage: python benchmarks/review_store.py [--steps 100000] [--writes 400] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
STEPS_PER_TURN = 4


def pg_create() -> str:
    import psycopg

    name = f"bookbot_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def pg_drop(url: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def seed(url: str, steps: int) -> None:
    """Bulk-load turns × 4 steps, 2 candidates each, and two editors' reviews (Core inserts)."""
    from sqlalchemy import insert

    from app.review import db
    from app.review.models import CandidateRow, Conversation, ReviewRow, StepRow, TurnRow

    db.upgrade(url)
    engine = db.make_engine(url)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    turns = steps // STEPS_PER_TURN
    chunk = 2000
    excerpt = [{"id": "ex-1", "book_id": "b", "text": "An excerpt of about twenty words " * 3,
                "book_title": "Book", "location": {"book_id": "b", "chapter_number": 1, "chapter_title": "I",
                                                   "paragraph_start": 1, "paragraph_end": 2}, "scores": None}]
    for lo in range(0, turns, chunk):
        conv, trs, sts, cands, revs = [], [], [], [], []
        for t in range(lo, min(turns, lo + chunk)):
            tid = f"t{t:07d}"
            created = start + timedelta(seconds=t)
            conv.append(dict(id=f"c{t:07d}", character_id=("holmes", "alice")[t % 2], user_id=None,
                             created_at=created))
            trs.append(dict(id=tid, conversation_id=f"c{t:07d}", character_id=("holmes", "alice")[t % 2],
                            question=f"Question number {t} about the book?", answer="An answer. " * 10,
                            backend="offline", created_at=created, step_count=STEPS_PER_TURN,
                            grounded_fraction=0.5, priority=0.5))
            wrong_at = t % 5 if t % 5 < STEPS_PER_TURN else None
            for i in range(STEPS_PER_TURN):
                sid = f"{tid}-s{i}"
                text = f"Step {i} of turn {t}: the character reasons about the excerpt and cites it. " * 2
                sts.append(dict(id=sid, turn_id=tid, idx=i, name=("Observe", "Recall", "Deduce", "Conclude")[i],
                                text=text, score=0.5, grounded=True, retrieval_ms=1.0, generation_ms=1.0,
                                excerpts=excerpt))
                cands += [dict(step_id=sid, position=p, text=text if p == 0 else text[::-1], score=0.5,
                               chosen=p == 0, features={"f": 1.0}) for p in range(2)]
                for ed in ("ann", "bob"):
                    if wrong_at is not None and i > wrong_at:
                        rating, source = -1, "inferred"
                    elif wrong_at == i and ed == "ann":
                        rating, source = -1, "human"
                    else:
                        rating, source = (1, 0)[(t + i) % 2 if ed == "bob" else 0], "human"
                    if wrong_at == i and ed == "bob":
                        rating = -1
                    revs.append(dict(step_id=sid, turn_id=tid, reviewer=ed, kind="editor", rating=rating,
                                     correction="A corrected step." if rating == -1 and source == "human" else "",
                                     fault_tags=[], source=source, created_at=created, updated_at=created))
        with engine.begin() as conn:
            conn.execute(insert(Conversation), conv)
            conn.execute(insert(TurnRow), trs)
            conn.execute(insert(StepRow), sts)
            conn.execute(insert(CandidateRow), cands)
            conn.execute(insert(ReviewRow), revs)
    with engine.connect() as conn:        # planner statistics, as autovacuum / a live db would have
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    engine.dispose()


def bench_writes(url: str, writes: int) -> dict:
    from sqlalchemy import text

    from app.domain import Review, ReviewKind, Role
    from app.review import db
    from app.review.store import ReviewStore

    db.upgrade(url)
    store = ReviewStore(url)
    sys.path.insert(0, str(ROOT / "tests" / "review"))
    from conftest import make_turn  # the tests' realistic turn factory

    turns = [make_turn(grounded=(True, False, True, True)) for _ in range(max(1, writes // 8))]
    for t in turns:
        store.save_turn(t)
    steps = [st for t in turns for st in t.steps]
    # baseline: a bare one-row INSERT + COMMIT on one held connection; the two alternate in blocks
    # of 25 so that a change in the machine's load hits both alike
    floor_s = record_s = 0.0
    with store.engine.connect() as conn:
        conn.execute(text("CREATE TABLE bench_floor (id INTEGER PRIMARY KEY, v INTEGER)"))
        conn.commit()
        for block in range(0, writes, 25):
            t0 = time.perf_counter()
            for i in range(block, min(block + 25, writes)):
                conn.execute(text("INSERT INTO bench_floor (id, v) VALUES (:i, :v)"), {"i": i, "v": i % 3})
                conn.commit()
            floor_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            for i in range(block, min(block + 25, writes)):
                st = steps[i % len(steps)]
                store.record_review(Review(step_id=st.id, reviewer=f"ed{(i // len(steps)) % 4}",
                                           kind=ReviewKind.editor, rating=(1, 0, -1, 1)[i % 4],
                                           correction="fix" if i % 4 == 2 else ""), Role.editor)
            record_s += time.perf_counter() - t0
    floor, rate = writes / floor_s, writes / record_s
    store.close()
    return {"record_review_per_s": round(rate, 1), "bare_insert_commit_per_s": round(floor, 1)}


def child(url: str, fmt: str, out: str) -> None:
    """Run one export (or nothing for fmt == 'none') and print time and peak RSS as JSON."""
    from app.review import db, exports

    engine = db.make_engine(url)
    with engine.connect():
        pass
    t0 = time.perf_counter()
    rows = 0
    if fmt != "none":
        rows = exports.export(engine, fmt, Path(out)).rows
    elapsed = time.perf_counter() - t0
    print(json.dumps({"seconds": round(elapsed, 2), "rows": rows, "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """VmHWM of this process (ru_maxrss would carry the parent's peak across exec on Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_child(url: str, fmt: str, out: Path) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", url, fmt, str(out)], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def bench_exports(url: str, steps: int, tmp: Path, label: str) -> None:
    t0 = time.perf_counter()
    seed(url, steps)
    print(f"[{label}] seeded {steps} steps ({steps // STEPS_PER_TURN} turns, 2 editors each) "
          f"in {time.perf_counter() - t0:.1f}s")
    base = run_child(url, "none", tmp / "none.jsonl")
    print(f"[{label}]   baseline (imports + connect, no export): peak RSS {base['peak_rss_mb']} MB")
    for fmt in ("trl-stepwise", "prm800k", "openai-sft", "openai-dpo"):
        out = tmp / f"{label}-{fmt}.jsonl"
        got = run_child(url, fmt, out)
        size = out.stat().st_size / 1e6
        print(f"[{label}]   {fmt:13s} {got['rows']:7d} rows {size:7.1f} MB in {got['seconds']:6.2f}s "
              f"({steps / got['seconds']:,.0f} steps/s), peak RSS {got['peak_rss_mb']} MB "
              f"(+{got['peak_rss_mb'] - base['peak_rss_mb']:.1f} over baseline)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--writes", type=int, default=400)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print("== review writes (each its own transaction) ==")
        for label in ("sqlite", "postgresql"):
            if label == "postgresql" and args.no_postgres:
                continue
            url = f"sqlite:///{tmp / 'writes.db'}" if label == "sqlite" else pg_create()
            try:
                print(f"[{label}] {bench_writes(url, args.writes)}")
            finally:
                if label == "postgresql":
                    pg_drop(url)
        print("== exports, streamed ==")
        for label in ("sqlite", "postgresql"):
            if label == "postgresql" and args.no_postgres:
                continue
            for steps in (args.steps // 10, args.steps):
                url = f"sqlite:///{tmp / f'export{steps}.db'}" if label == "sqlite" else pg_create()
                try:
                    bench_exports(url, steps, tmp, f"{label} {steps}")
                finally:
                    if label == "postgresql":
                        pg_drop(url)


if __name__ == "__main__":
    main()
