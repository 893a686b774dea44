"""Build one tuning snapshot from labelled steps: verifier, re-ranker, exemplars, metrics.

`train_parts` trains whatever the labels support (a part without enough data is
skipped and the reason kept); `build_snapshot` saves the result as the
character's next version and optionally activates it.  Where the labels come
from is the caller's business: the review store for `bookbot tune`, a simulated
editor for the FairytaleQA evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from app.settings import Settings
from app.tuning.exemplars import SnapshotExemplars, exemplars_from
from app.tuning.gate import GateDecision, baseline_scores, decide
from app.tuning.labels import LabelledStep
from app.tuning.linear import LinearModel
from app.tuning.reranker import beats_retriever, train_reranker
from app.tuning.snapshots import (SnapshotMeta, SnapshotMirror, activate, next_version, now_iso,
                                  save_artefacts)
from app.tuning.verifier import VerifierReport, labelled_rows, train_verifier

MIN_VERIFIER_STEPS = 10


@dataclass
class TrainedParts:
    verifier: LinearModel | None = None
    reranker: LinearModel | None = None
    priors: dict[str, tuple[int, int]] = field(default_factory=dict)
    exemplars: SnapshotExemplars | None = None
    metrics: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    verifier_report: VerifierReport | None = None


def train_parts(items: Sequence[LabelledStep], *, vectors=None) -> TrainedParts:
    """Train what the labels support; ``vectors`` (``app.evidence.SentenceVectors``) lets the
    verifier featurise corrections with the same sentence vectors the engine uses."""
    parts = TrainedParts()
    human = sum(1 for i in items if i.source.value == "human")
    parts.metrics["labels"] = {"steps": len(items), "human": human, "inferred": len(items) - human,
                               "good": sum(1 for i in items if i.good)}
    if len(items) >= MIN_VERIFIER_STEPS and len({i.good for i in items}) == 2:
        parts.verifier, report = train_verifier(items, vectors=vectors)
        parts.metrics["verifier"] = report.to_dict()
        parts.verifier_report = report
    else:
        parts.notes.append(f"verifier skipped: needs >= {MIN_VERIFIER_STEPS} labelled steps with both "
                           f"good and bad ones (have {len(items)})")
    try:
        reranker, priors, rr = train_reranker(items)
        parts.metrics["reranker"] = rr.to_dict()
        better, why = beats_retriever(rr)
        parts.metrics["reranker"]["used"] = better
        if better:
            parts.reranker, parts.priors = reranker, priors
        else:
            parts.notes.append(f"re-ranker not used: {why}")
    except ValueError as exc:
        parts.notes.append(f"re-ranker skipped: {exc}")
    parts.exemplars = SnapshotExemplars(exemplars_from(items))
    parts.metrics["exemplars"] = {"n": len(parts.exemplars)}
    if not len(parts.exemplars):
        parts.notes.append("no exemplars: no step was approved (+1) or corrected by an editor")
    return parts


def gate_decision(settings: Settings, character_id: str, parts: TrainedParts, *, vectors=None) -> GateDecision:
    """Is the new verifier better than what readers get now, on the probe's held-out reviews?"""
    from app.tuning.snapshots import active_snapshot

    report = parts.verifier_report
    if parts.verifier is None or report is None:
        return GateDecision(False, "no verifier was trained, so there is nothing to show better", "none")
    current = active_snapshot(settings, character_id)
    scorer = current.scorer() if current is not None else None
    name = f"the active snapshot {current.id}" if scorer is not None else "the untuned grounding score"
    def active_score(item: LabelledStep) -> float:
        return float(scorer.model.predict_proba([labelled_rows(item, vectors)[0][0]])[0])

    current_scores = baseline_scores(report.heldout_items, active_score if scorer is not None else None)
    return decide(report.heldout_items, report.heldout_probs, current_scores, baseline=name)


def build_snapshot(settings: Settings, character_id: str, items: Sequence[LabelledStep], *,
                   make_active: bool | None = False, mirror: SnapshotMirror | None = None,
                   parts: TrainedParts | None = None, vectors=None) -> SnapshotMeta:
    """Train on `items` and save the character's next snapshot version.

    ``make_active``: True activates it, False never, None lets the held-out gate decide (its
    decision and reason are kept in the snapshot's ``metrics["gate"]``)."""
    if not items:
        raise ValueError(f"no reviewed steps for {character_id!r}: editors must rate some steps "
                         "(review desk) before `bookbot tune` has anything to learn from")
    parts = parts or train_parts(items, vectors=vectors)
    decision = gate_decision(settings, character_id, parts, vectors=vectors) if make_active is None else None
    if decision is not None:
        parts.metrics["gate"] = decision.to_dict()
    meta = SnapshotMeta(character_id=character_id, version=next_version(settings, character_id),
                        created_at=now_iso(), n_reviews=len(items), metrics=parts.metrics,
                        notes="; ".join(parts.notes))
    save_artefacts(settings, meta, verifier=parts.verifier, reranker=parts.reranker,
                   priors=parts.priors, exemplars=parts.exemplars, mirror=mirror)
    if make_active or (decision is not None and decision.activate):
        activate(settings, character_id, meta.version, mirror=mirror)
    return meta
