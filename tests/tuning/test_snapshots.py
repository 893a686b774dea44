"""Snapshots: versioned artefacts, list/activate/rollback, and pick-up without restart."""

from __future__ import annotations

import json

import pytest

from app.tuning import snapshots as snap
from app.tuning.reranker import RerankingRetriever
from app.tuning.tune import build_snapshot
from app.tuning.verifier import VerifierScorer

from tuning_synth import FakeHybrid, make_corpus, simulate


@pytest.fixture()
def items():
    corpus = make_corpus(40, seed=2)
    return simulate(corpus, FakeHybrid(corpus, seed=3), 120, seed=4)


def test_build_list_activate_rollback(settings, items):
    assert snap.active_snapshot(settings, "synth") is None
    v1 = build_snapshot(settings, "synth", items[:60])
    v2 = build_snapshot(settings, "synth", items, make_active=True)
    assert (v1.version, v2.version) == ("v1", "v2")
    folder = settings.data_dir / "snapshots" / "synth" / "v2"
    assert {p.name for p in folder.iterdir()} >= {"meta.json", "verifier.json", "reranker.json", "priors.json"}
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["n_reviews"] == 120 and meta["metrics"]["verifier"]["heldout"]["auc"] is not None
    assert [m.version for m in snap.list_snapshots(settings, "synth")] == ["v1", "v2"]

    active = snap.active_snapshot(settings, "synth")
    assert active.id == "synth@v2"
    assert isinstance(active.scorer(), VerifierScorer)
    base = FakeHybrid(make_corpus(10, seed=1))
    assert isinstance(active.wrap(base), RerankingRetriever)
    assert active.wrap(base).get("nope") is None

    snap.activate(settings, "synth", "v1")
    assert snap.active_snapshot(settings, "synth").id == "synth@v1"
    assert snap.rollback(settings, "synth") == "v2"
    assert snap.active_snapshot(settings, "synth").id == "synth@v2"
    assert snap.rollback(settings, "synth") is None            # back to the untuned bot
    assert snap.active_snapshot(settings, "synth") is None
    with pytest.raises(snap.SnapshotError, match="no active snapshot"):
        snap.rollback(settings, "synth")


def test_running_app_picks_up_activation_without_restart(settings, items):
    build_snapshot(settings, "synth", items[:60], make_active=True)
    first = snap.active_snapshot(settings, "synth")
    assert snap.active_snapshot(settings, "synth") is first     # cached: nothing reloaded
    # another process (the CLI) builds and activates a new version meanwhile
    build_snapshot(settings, "synth", items, make_active=True)
    second = snap.active_snapshot(settings, "synth")
    assert second is not first and second.id == "synth@v2"
    assert second.meta.n_reviews == 120


def test_bad_input_is_refused_clearly(settings, items):
    with pytest.raises(snap.SnapshotError, match="no snapshot synth@v7"):
        snap.activate(settings, "synth", "v7")
    with pytest.raises(snap.SnapshotError, match="invalid character id"):
        snap.active_snapshot(settings, "../etc")
    with pytest.raises(ValueError, match="no reviewed steps"):
        build_snapshot(settings, "synth", [])
    build_snapshot(settings, "synth", items[:30], make_active=True)
    (settings.data_dir / "snapshots" / "synth" / "history.json").write_text("{broken")
    with pytest.raises(snap.SnapshotError, match="not a JSON list"):
        snap.rollback(settings, "synth")
    assert (settings.data_dir / "snapshots" / "synth" / "v1" / "meta.json").exists()


def test_snapshot_without_enough_labels_keeps_notes(settings, items):
    few = [i for i in items if i.rating > 0][:3]
    meta = build_snapshot(settings, "synth", few)
    assert "verifier" not in meta.parts and "verifier skipped" in meta.notes
    loaded = snap.load_snapshot(settings, "synth", meta.version)
    assert loaded.scorer() is None


def test_new_turns_get_the_active_verifiers_uncertainty_as_priority(settings, items):
    from app.domain import Turn
    from app.tuning.service import snapshot_priority

    priority = snapshot_priority(settings, fallback=lambda turn: -1.0)
    turn = Turn(id="t", conversation_id="c", character_id="synth", question=items[0].question,
                steps=[items[0].step, items[1].step])
    assert priority(turn) == -1.0                       # untuned: the store's own ordering
    build_snapshot(settings, "synth", items, make_active=True)
    value = priority(turn)
    assert 0.0 <= value <= 1.0


def test_the_chat_apps_store_queues_new_turns_by_the_active_verifier(settings, items):
    from app.domain import Turn
    from app.tuning.service import uncertainty_priority
    from app.ui.services import Services

    services = Services.build(settings)
    turn = Turn(id="t", conversation_id="c", character_id="synth", question=items[0].question,
                steps=[items[0].step, items[1].step])
    build_snapshot(settings, "synth", items, make_active=True)
    expected = uncertainty_priority(snap.active_snapshot(settings, "synth").scorer())(turn)
    assert services.store.priority(turn) == pytest.approx(expected)
    services.store.close()
