"""The review area's leaf: its error type and the mapping between stored rows and domain types.

`store`, `queue`, `exports` and `accounts` import from here (and never from each other
for these), so the review modules form no import circle.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from app.domain import Excerpt, FaultTag, Location, RetrievalScores, Review, ReviewKind, ReviewSource


class ReviewError(ValueError):
    """A review was refused; the message says why.  Nothing was stored."""


def aware(dt: datetime | None) -> datetime | None:
    """SQLite gives naive datetimes back; every stored moment is UTC."""
    if dt is not None and dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt


def review_from_row(row: Any) -> Review:
    """A `Review` from a `reviews` row (ORM object or Core row: same attribute names)."""
    return Review(step_id=row.step_id, reviewer=row.reviewer, kind=ReviewKind(row.kind),
                  rating=row.rating, correction=row.correction or "",
                  fault_tags=tuple(FaultTag(t) for t in row.fault_tags or ()),
                  source=ReviewSource(row.source), id=row.id,
                  created_at=aware(row.created_at), updated_at=aware(row.updated_at))


def excerpt_to_json(e: Excerpt) -> dict[str, Any]:
    return {"id": e.id, "book_id": e.book_id, "text": e.text, "book_title": e.book_title,
            "location": asdict(e.location), "scores": asdict(e.scores) if e.scores else None}


def excerpt_from_json(d: dict[str, Any]) -> Excerpt:
    return Excerpt(id=d["id"], book_id=d["book_id"], text=d["text"], book_title=d.get("book_title", ""),
                   location=Location(**d["location"]),
                   scores=RetrievalScores(**d["scores"]) if d.get("scores") else None)
