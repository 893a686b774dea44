"""From reviews to training labels: one `LabelledStep` per reviewed step.

Label policy (documented in docs/readme/tuning.md):
- editor ratings by people (`ReviewSource.human`, `ReviewKind.editor`) come first;
  several editors on one step are averaged and rounded down (a tie between +1 and
  -1 counts as 0, a tie between 0 and -1 as -1);
- a step with no editor rating but an *inferred* -1 (an earlier step of its turn
  was rated -1, PRM800K early stop) is a negative;
- otherwise readers' thumbs decide (sum of signs; a tie gives no label);
- machine pre-labels are never training data.
A step is *good* for the verifier when its rating is >= 0: as in PRM800K, a
neutral step does not end the review of a turn, only a -1 does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from app.domain import Candidate, FaultTag, Review, ReviewKind, ReviewSource, Step

# Faults that say the cited excerpt itself was wrong (the re-ranker learns from these).
EXCERPT_FAULTS = frozenset({FaultTag.wrong_excerpt, FaultTag.not_in_book})


@dataclass
class LabelledStep:
    character_id: str
    question: str
    step: Step
    rating: int                       # aggregated -1 / 0 / +1
    source: ReviewSource              # human or inferred
    kind: ReviewKind = ReviewKind.editor
    fault_tags: tuple[FaultTag, ...] = ()
    correction: str = ""
    query: str = ""                   # retrieval query the step used, when known
    step_text: str = ""               # what the procedure step looks for (search words + instruction)

    @property
    def good(self) -> bool:
        return self.rating >= 0

    @property
    def turn_id(self) -> str:
        return self.step.turn_id

    @property
    def chosen(self) -> Candidate:
        for cand in self.step.candidates:
            if cand.chosen:
                return cand
        return Candidate(text=self.step.text, citations=list(self.step.citations),
                         score=self.step.score, chosen=True)

    @property
    def cited_ids(self) -> list[str]:
        seen: list[str] = []
        for c in self.step.citations:
            if c.valid and c.excerpt_id not in seen:
                seen.append(c.excerpt_id)
        return seen

    @property
    def excerpt_label(self) -> int | None:
        """+1 / -1 for the excerpts this step cited, None when the review says nothing about them."""
        if self.source is not ReviewSource.human:
            return None
        if self.rating > 0:
            return 1
        if self.rating < 0 and (not self.fault_tags or EXCERPT_FAULTS & set(self.fault_tags)):
            return -1
        return None


def aggregate(reviews: Sequence[Review]) -> tuple[int, ReviewSource, ReviewKind,
                                                   tuple[FaultTag, ...], str] | None:
    """(rating, source, kind, fault tags, correction) for one step's reviews, or None if unlabelled."""
    editor = [r for r in reviews if r.source is ReviewSource.human and r.kind is ReviewKind.editor]
    if editor:
        rating = math.floor(sum(r.rating for r in editor) / len(editor) + 1e-9)
        tags = tuple(dict.fromkeys(t for r in editor for t in r.fault_tags))
        correction = next((r.correction for r in reversed(editor) if r.correction.strip()), "")
        return max(-1, min(1, rating)), ReviewSource.human, ReviewKind.editor, tags, correction
    if any(r.source is ReviewSource.inferred for r in reviews):
        return -1, ReviewSource.inferred, ReviewKind.editor, (), ""
    readers = [r for r in reviews if r.source is ReviewSource.human and r.kind is ReviewKind.reader]
    total = sum((r.rating > 0) - (r.rating < 0) for r in readers)
    if readers and total != 0:
        return (1 if total > 0 else -1), ReviewSource.human, ReviewKind.reader, (), ""
    return None


def label_steps(items: Iterable[tuple[str, str, Step, Sequence[Review]]]) -> list[LabelledStep]:
    """Turn (character_id, question, step, reviews) tuples into labelled steps, skipping unlabelled ones."""
    out: list[LabelledStep] = []
    for character_id, question, step, reviews in items:
        agg = aggregate(reviews)
        if agg is None:
            continue
        rating, source, kind, tags, correction = agg
        out.append(LabelledStep(character_id, question, step, rating, source, kind, tags, correction,
                                query=getattr(step, "query", "") or ""))
    return out
