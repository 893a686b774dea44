"""The activation gate: a new snapshot goes live only when held-out reviews show it is better.

`bookbot tune` trains a verifier probe on most of the reviewed turns and scores the
rest (the held-out turns).  The gate scores the same held-out steps with what readers
get today — the active snapshot's verifier, or the untuned grounding score when no
snapshot is active — and compares the two ROC AUCs against the editors' labels.  The
new snapshot is activated only when the lower end of a 95% bootstrap interval (over
held-out turns) of the AUC gain is above ``MARGIN``; otherwise it is kept, inactive,
with the reason, and a lab member can still activate it by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from app.tuning.labels import LabelledStep

MARGIN = 0.0
MIN_HELDOUT = 12
RESAMPLES = 1000


@dataclass
class GateDecision:
    activate: bool
    reason: str
    baseline: str                       # what the new snapshot was compared with
    new_auc: float | None = None
    old_auc: float | None = None
    interval: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        return {"activate": self.activate, "reason": self.reason, "baseline": self.baseline,
                "new_auc": self.new_auc, "old_auc": self.old_auc,
                "auc_gain_interval": list(self.interval) if self.interval else None}


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC by ranks (ties share their rank); None when one class is missing."""
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def decide(items: Sequence[LabelledStep], new_scores: Sequence[float], old_scores: Sequence[float], *,
           baseline: str, seed: int = 0) -> GateDecision:
    """Compare two scorers on the same held-out steps (``items``)."""
    labels = np.array([int(i.good) for i in items])
    if len(items) < MIN_HELDOUT or len(set(labels.tolist())) < 2:
        return GateDecision(False, f"only {len(items)} held-out reviewed steps with "
                                   f"{'one kind of label' if len(items) else 'no labels'}: too few to show "
                                   f"the new snapshot is better than {baseline}", baseline)
    new, old = np.asarray(new_scores, dtype=float), np.asarray(old_scores, dtype=float)
    new_auc, old_auc = auc(labels, new), auc(labels, old)
    turns = sorted({i.turn_id for i in items})
    rows_of = {t: np.array([k for k, i in enumerate(items) if i.turn_id == t]) for t in turns}
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(RESAMPLES):
        idx = np.concatenate([rows_of[turns[k]] for k in rng.integers(0, len(turns), len(turns))])
        a, b = auc(labels[idx], new[idx]), auc(labels[idx], old[idx])
        if a is not None and b is not None:
            gains.append(a - b)
    lo, hi = (float(np.percentile(gains, 2.5)), float(np.percentile(gains, 97.5))) if gains else (0.0, 0.0)
    better = lo > MARGIN
    reason = (f"held-out AUC {new_auc:.3f} vs {old_auc:.3f} for {baseline} on {len(items)} steps of "
              f"{len(turns)} turns; gain 95% interval {lo:+.3f} to {hi:+.3f}: "
              + ("better, activated" if better else "not clearly better, kept inactive"))
    return GateDecision(better, reason, baseline, new_auc, old_auc, (lo, hi))


def baseline_scores(items: Sequence[LabelledStep], scorer: Callable[[LabelledStep], float] | None
                    ) -> list[float]:
    """What readers get today on these steps: the active verifier, else the untuned grounding score."""
    if scorer is not None:
        return [scorer(i) for i in items]
    from app.bots.grounding import grounding_score

    return [grounding_score(i.chosen.features or {}) for i in items]
