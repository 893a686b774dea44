"""Review statistics and inter-editor agreement for `bookbot reviews stats`.

Counts per label (editor -1/0/+1 by source human / inferred / machine, reader up/down), per
character and per procedure step name, all computed in SQL.  Agreement uses people's own
editor ratings only (inferred and machine labels would inflate it): Cohen's kappa for each
pair of editors over the steps both rated (scikit-learn's `cohen_kappa_score`), and
Krippendorff's alpha (ordinal, the `krippendorff` package) over all editors and every step
rated by at least two of them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.domain import ReviewKind, ReviewSource
from app.review.models import ReviewRow, StepRow, TurnRow

LABELS = (-1, 0, 1)


@dataclass
class PairAgreement:
    a: str
    b: str
    n: int
    kappa: float | None          # None when undefined (fewer than 2 shared steps, or no variation)


@dataclass
class ReviewStats:
    labels: dict[str, int] = field(default_factory=dict)                 # "editor/human/-1" -> n
    per_character: dict[str, dict[str, int]] = field(default_factory=dict)
    per_step: dict[str, dict[str, int]] = field(default_factory=dict)
    pairs: list[PairAgreement] = field(default_factory=list)
    alpha: float | None = None
    alpha_units: int = 0
    editors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "per_character": self.per_character, "per_step": self.per_step,
                "pairs": [p.__dict__ for p in self.pairs], "krippendorff_alpha": self.alpha,
                "alpha_units": self.alpha_units, "editors": self.editors}


def _label(kind: str, source: str, rating: int) -> str:
    if kind == ReviewKind.reader.value:
        return "reader/" + ("up" if rating > 0 else "down")
    return f"editor/{source}/{rating:+d}"


def review_stats(engine: Engine, character: str | None = None) -> ReviewStats:
    stats = ReviewStats()
    base = select(ReviewRow.kind, ReviewRow.source, ReviewRow.rating)
    if character is not None:
        base = base.join(TurnRow, TurnRow.id == ReviewRow.turn_id).where(TurnRow.character_id == character)
    with Session(engine) as s:
        q = base.add_columns(func.count()).group_by(ReviewRow.kind, ReviewRow.source, ReviewRow.rating)
        for kind, source, rating, n in s.execute(q):
            stats.labels[_label(kind, source, rating)] = n
        q = (select(TurnRow.character_id, ReviewRow.kind, ReviewRow.source, ReviewRow.rating, func.count())
             .join(TurnRow, TurnRow.id == ReviewRow.turn_id)
             .group_by(TurnRow.character_id, ReviewRow.kind, ReviewRow.source, ReviewRow.rating))
        if character is not None:
            q = q.where(TurnRow.character_id == character)
        per_char: dict[str, dict[str, int]] = defaultdict(dict)
        for ch, kind, source, rating, n in s.execute(q):
            per_char[ch][_label(kind, source, rating)] = n
        stats.per_character = dict(sorted(per_char.items()))
        q = (select(StepRow.name, ReviewRow.kind, ReviewRow.source, ReviewRow.rating, func.count())
             .join(StepRow, StepRow.id == ReviewRow.step_id)
             .group_by(StepRow.name, ReviewRow.kind, ReviewRow.source, ReviewRow.rating))
        if character is not None:
            q = q.join(TurnRow, TurnRow.id == ReviewRow.turn_id).where(TurnRow.character_id == character)
        per_step: dict[str, dict[str, int]] = defaultdict(dict)
        for name, kind, source, rating, n in s.execute(q):
            per_step[name][_label(kind, source, rating)] = n
        stats.per_step = dict(sorted(per_step.items()))

        human = (select(ReviewRow.step_id, ReviewRow.reviewer, ReviewRow.rating)
                 .where(ReviewRow.kind == ReviewKind.editor.value,
                        ReviewRow.source == ReviewSource.human.value))
        if character is not None:
            human = human.join(TurnRow, TurnRow.id == ReviewRow.turn_id).where(TurnRow.character_id == character)
        shared = (select(ReviewRow.step_id).where(ReviewRow.kind == ReviewKind.editor.value,
                                                   ReviewRow.source == ReviewSource.human.value)
                  .group_by(ReviewRow.step_id).having(func.count() >= 2))
        ratings: dict[str, dict[str, int]] = defaultdict(dict)       # reviewer -> step -> rating
        for step_id, reviewer, rating in s.execute(human.where(ReviewRow.step_id.in_(shared))):
            ratings[reviewer][step_id] = rating
        stats.editors = s.scalar(select(func.count(func.distinct(human.subquery().c.reviewer)))) or 0
    stats.pairs = pairwise_kappa(ratings)
    stats.alpha, stats.alpha_units = krippendorff_alpha(ratings)
    return stats


def pairwise_kappa(ratings: dict[str, dict[str, int]]) -> list[PairAgreement]:
    from sklearn.metrics import cohen_kappa_score

    out = []
    for a, b in combinations(sorted(ratings), 2):
        common = sorted(set(ratings[a]) & set(ratings[b]))
        if not common:
            continue
        ya, yb = [ratings[a][s] for s in common], [ratings[b][s] for s in common]
        kappa = None
        if len(common) >= 2 and len(set(ya) | set(yb)) > 1:
            value = float(cohen_kappa_score(ya, yb, labels=list(LABELS)))
            kappa = None if math.isnan(value) else value
        out.append(PairAgreement(a=a, b=b, n=len(common), kappa=kappa))
    return out


def krippendorff_alpha(ratings: dict[str, dict[str, int]]) -> tuple[float | None, int]:
    import numpy as np

    units = sorted({s for per in ratings.values() for s in per})
    if len(ratings) < 2 or not units:
        return None, len(units)
    import krippendorff

    col = {s: i for i, s in enumerate(units)}
    data = np.full((len(ratings), len(units)), np.nan)
    for r, reviewer in enumerate(sorted(ratings)):
        for s, v in ratings[reviewer].items():
            data[r, col[s]] = v
    values = {v for per in ratings.values() for v in per.values()}
    if len(values) < 2:
        return None, len(units)             # every rating the same: alpha is undefined
    alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal",
                                     value_domain=list(LABELS)))
    return (None if math.isnan(alpha) else alpha), len(units)
