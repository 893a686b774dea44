"""`bookbot tune` against the review store: collect labels, build a snapshot, feed the review desk.

`collect_labelled_steps` reads a character's reviewed steps from the store and
rebuilds each step's retrieval query the way the engine built it (so re-ranker
features match answer time).  `tune_character` builds the next snapshot,
mirrors it into the store's snapshot table, optionally activates it, re-orders
the review queue by the verifier's uncertainty (least certain first) and, when
the snapshot passes the lab's threshold, pre-labels unreviewed steps as
machine labels (`ReviewSource.machine`, recorded with the lab role).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from app.domain import Candidate, Character, ProcedureStep, Role, Turn
from app.settings import Settings
from app.tuning.labels import LabelledStep, label_steps
from app.tuning.snapshots import SnapshotMeta, StoreMirror, load_snapshot
from app.tuning.tune import build_snapshot
from app.tuning.verifier import VerifierScorer

MACHINE_REVIEWER = "verifier"


def _chosen(step) -> Candidate:
    return next((c for c in step.candidates if c.chosen),
                Candidate(text=step.text, citations=list(step.citations), score=step.score, chosen=True))


def collect_labelled_steps(store, character_id: str,
                           character: Character | None = None) -> list[LabelledStep]:
    """Every reviewed step of the character's turns (full steps: candidates, features, excerpts)."""
    build_query = None
    if character is not None:
        from app.bots.backends.base import step_text
        from app.bots.engine import build_query
        from app.bots.graph import procedure_step
    items: list[LabelledStep] = []
    for turn, reviews in store.iter_reviewed_turns(character_id, include_readers=True):   # editors and readers
        labelled = label_steps((turn.character_id, turn.question, step, reviews.get(step.id, []))
                               for step in turn.steps)
        for item in labelled:
            proc = procedure_step(character.procedure, item.step) if build_query is not None else None
            if proc is not None:          # by name: on a graph, a step's index is its place on the path
                earlier = [s for s in turn.steps if s.index < item.step.index]
                item.query = build_query(turn.question, proc, earlier)
                item.step_text = step_text(proc)
        items.extend(labelled)
    return items


def uncertainty_priority(scorer: VerifierScorer) -> Callable[[Turn], float]:
    """Queue priority for a turn: the verifier's uncertainty on its least certain step."""

    def priority(turn: Turn) -> float:
        best = 0.0
        for step in turn.steps:
            p = scorer.score(question=turn.question, step=ProcedureStep(step.name, ""),
                             step_index=step.index, candidate=_chosen(step), excerpts=step.excerpts)
            best = max(best, scorer.uncertainty(p))
        return best

    return priority


def snapshot_priority(settings: Settings, fallback: Callable[[Turn], float] | None = None, *,
                      snapshots=None) -> Callable[[Turn], float]:
    """Queue priority for *new* turns: the active snapshot's verifier uncertainty for the turn's
    character, else `fallback` (the store's default).  Pass it as ``ReviewStore(url, priority=...)``.
    ``snapshots``: character id -> active snapshot (``SharedSnapshots``; default the data dir's)."""
    from app.tuning.snapshots import active_snapshot

    def priority(turn: Turn) -> float:
        snap = (snapshots(turn.character_id) if snapshots is not None
                else active_snapshot(settings, turn.character_id))
        scorer = snap.scorer() if snap is not None else None
        if scorer is None:
            return fallback(turn) if fallback is not None else 0.0
        return uncertainty_priority(scorer)(turn)

    return priority


def prelabel_queue(store, scorer: VerifierScorer, character_id: str, *, limit: int = 500) -> int:
    """Machine-label unreviewed steps the verifier is confident about; returns how many."""
    from app.domain import ReviewSource

    if not scorer.prelabel_enabled:
        return 0
    done = 0
    for item in store.queue(character_id, limit=limit):
        turn = store.get_turn(item.turn_id)
        if turn is None:
            continue
        reviews = store.reviews_for_turn(turn.id)
        for step in turn.steps:
            if any(r.source is not ReviewSource.machine for r in reviews.get(step.id, [])):
                continue
            p = scorer.score(question=turn.question, step=ProcedureStep(step.name, ""),
                             step_index=step.index, candidate=_chosen(step), excerpts=step.excerpts)
            review = scorer.prelabel(step.id, p, reviewer=MACHINE_REVIEWER)
            if review is not None:
                store.record_review(review, Role.lab)
                done += 1
    return done


@dataclass
class TuneResult:
    meta: SnapshotMeta
    activated: bool
    reprioritized: int = 0
    prelabelled: int = 0
    notes: list[str] = field(default_factory=list)
    gate: str = ""                      # the activation gate's reason, when it decided


def tune_character(settings: Settings, store, character_id: str, *, character: Character | None = None,
                   make_active: bool | None = None, items: Sequence[LabelledStep] | None = None,
                   vectors=None) -> TuneResult:
    """Build the next snapshot; ``make_active`` None = activate only when the held-out gate says better."""
    items = list(items) if items is not None else collect_labelled_steps(store, character_id, character)
    meta = build_snapshot(settings, character_id, items, make_active=make_active,
                          mirror=StoreMirror(store), vectors=vectors)
    gate = meta.metrics.get("gate") or {}
    activated = bool(make_active) or bool(gate.get("activate"))
    result = TuneResult(meta, activated, gate=gate.get("reason", ""))
    if activated:
        loaded = load_snapshot(settings, character_id, meta.version)
        scorer = loaded.scorer()
        if scorer is not None:
            result.reprioritized = store.reprioritize(uncertainty_priority(scorer), character_id)
            result.prelabelled = prelabel_queue(store, scorer, character_id)
    return result
