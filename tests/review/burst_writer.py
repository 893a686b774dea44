"""Subprocess for the kill test: records reviews as fast as it can and prints ACK lines only
after `record_review` returned (i.e. after the commit).  Usage: burst_writer.py URL TURN_IDS..."""

from __future__ import annotations

import itertools
import sys

from app.domain import Review, ReviewKind, Role
from app.review.store import ReviewStore


def main() -> None:
    url, turn_ids = sys.argv[1], sys.argv[2:]
    store = ReviewStore(url)
    steps = [st for tid in turn_ids for st in store.get_turn(tid).steps]
    ratings = itertools.cycle((1, 0, -1, 1, -1, 0, 1))
    for n in itertools.count():
        step = steps[n % len(steps)]
        reviewer = f"ed{n % 3}"
        rating = next(ratings)
        stored = store.record_review(Review(step_id=step.id, reviewer=reviewer, kind=ReviewKind.editor,
                                            rating=rating, correction=f"fix {n}" if rating < 0 else ""),
                                     Role.editor)
        print(f"ACK {n} {stored.id} {step.id} {reviewer} {rating}", flush=True)


if __name__ == "__main__":
    main()
