"""The active tuning snapshot's verifier drives a procedure graph's transitions: activating another
snapshot changes which path the character takes, not only which candidate it keeps."""

from __future__ import annotations

import sys
from pathlib import Path

from app.bots.backends import Draft, ScriptedBackend
from app.bots.engine import Engine
from app.domain import Character, Citation, Condition, ProcedureStep, Transition
from app.settings import Settings
from app.tuning.linear import LinearModel
from app.tuning.snapshots import SnapshotMeta, activate, now_iso, save_artefacts, tuned_parts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bots"))
from bots_fakes import HOLMES_TEXTS, FakeRetriever, make_excerpt  # noqa: E402


def verifier(p_good_logit: float) -> LinearModel:
    """A verifier that judges every grounded step alike: P(good) = sigmoid(logit)."""
    return LinearModel(feature_names=["grounded"], mean=[0.0], scale=[1.0], coef=[0.0], intercept=p_good_logit)


def test_activating_a_snapshot_changes_the_path(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    holmes = Character(
        id="sherlock-holmes", name="Sherlock Holmes", book_ids=("gutenberg-244",), language="en", description="d",
        personality="p", speech_style="s", greeting="g",
        procedure=(ProcedureStep("Hypothesise", "Form a theory.", "theorize", max_visits=2),
                   ProcedureStep("Eliminate", "Strike out.", "eliminated impossible", next=(
                       Transition("Hypothesise", Condition(score_below=0.5), "every hypothesis eliminated"),)),
                   ProcedureStep("Conclude", "Conclude.", "truth")))
    retriever = FakeRetriever([make_excerpt(e, t) for e, t in HOLMES_TEXTS[:-1]])
    draft = Draft("A step.", [Citation("e4", "whatever remains, however improbable")])
    for version, logit in (("v1", -3.0), ("v2", 3.0)):        # P(good) 0.05, then 0.95
        save_artefacts(settings, SnapshotMeta("sherlock-holmes", version, now_iso()), verifier=verifier(logit),
                       reranker=None, priors=None, exemplars=None)
    paths = []
    for version in ("v1", "v2"):
        activate(settings, "sherlock-holmes", version)
        tuned_retriever, scorer, _, snapshot_id = tuned_parts(settings, "sherlock-holmes", retriever)
        engine = Engine(tuned_retriever, ScriptedBackend({"*": [[draft]]}), scorer=scorer, candidates=1)
        turn = engine.answer(holmes, "Who did it?", snapshot_id=snapshot_id)
        paths.append([(s.name, s.visit) for s in turn.steps])
        assert turn.snapshot_id == f"sherlock-holmes@{version}"
    assert paths[0] == [("Hypothesise", 1), ("Eliminate", 1), ("Hypothesise", 2), ("Eliminate", 2), ("Conclude", 1)]
    assert paths[1] == [("Hypothesise", 1), ("Eliminate", 1), ("Conclude", 1)]
