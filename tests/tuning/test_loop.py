"""The feedback loop end to end on a few FairytaleQA stories, with the real library index,
engine, extractive backend and review store (SQLite): reviews in → snapshot → ranking moves."""

from __future__ import annotations

import json
import random

import pytest

from app.domain import Role
from app.tuning import snapshots as snap
from app.tuning.evaluation import Indexes, learning_curve, simulate_reviews
from app.tuning.fairytaleqa import CHARACTER_ID, SimulatedEditor, load_split, storyteller
from app.tuning.reranker import RerankingRetriever, train_reranker
from app.tuning.tune import train_parts


@pytest.fixture(scope="module")
def data(shared_dir):
    root = shared_dir / "eval" / "fairytaleqa"
    train = load_split(root / "train")
    random.Random(1).shuffle(train)
    return train[:6], load_split(root / "val", limit=2)


def _rank(retriever, query, story, excerpt_id, top_k=15):
    ids = [e.id for e in retriever.retrieve(query, top_k=top_k, book_ids=[story])]
    return ids.index(excerpt_id) + 1 if excerpt_id in ids else top_k + 1


def test_tuning_moves_the_ranking_toward_the_reviews(data):
    train, val = data
    indexes = Indexes(None)            # BM25 side of the hybrid index: fast and model-free
    labelled = simulate_reviews(train, indexes, 150, editor=SimulatedEditor(), candidates=4, seed=3)
    assert len(labelled) == 150
    assert {i.rating for i in labelled} == {-1, 1}
    parts = train_parts(labelled)
    assert parts.verifier is not None
    assert parts.metrics["verifier"]["heldout"]["auc"] > 0.6
    # whether `tune` uses the re-ranker is decided on a held-out margin of a few dozen excerpts here
    # (docs/tuning.md); what it learned is tested whether or not this sample clears that margin
    reranker, priors, _ = train_reranker(labelled)

    # every excerpt a review judged, for the query that retrieved it: the learned score separates
    # approved from rejected excerpts better than the untuned fused score, and more judged
    # excerpts move towards their review than against it
    from app.tuning.reranker import pool_features
    from app.tuning.verifier import roc_auc

    labels, base_scores, tuned_scores, right, wrong = [], [], [], 0, 0
    for item in labelled:
        label = item.excerpt_label
        story = item.step.excerpts[0].book_id
        base = indexes.get(next(s for s in train if s.name == story))
        pool = base.retrieve(item.query, top_k=15, book_ids=[story])
        tuned_all = reranker.decision(pool_features(item.query, pool, priors)).tolist()
        tuned = RerankingRetriever(base, reranker, priors)
        ids = [e.id for e in pool]
        for eid in item.cited_ids:
            if eid not in ids:      # a later step's focus passage, retrieved for the bare question
                continue
            k = ids.index(eid)
            labels.append(int(label > 0))
            base_scores.append(pool[k].scores.fused)
            tuned_scores.append(tuned_all[k])
            shift = label * (_rank(base, item.query, story, eid) - _rank(tuned, item.query, story, eid))
            right += shift > 0
            wrong += shift < 0
    assert roc_auc(labels, tuned_scores) > roc_auc(labels, base_scores) + 0.05
    assert right > wrong, (right, wrong)          # judged excerpts move towards their reviews on balance

    # the whole comparison runs on val with the same reviews; metrics are shares
    curve, last = learning_curve(val, train, indexes, counts=(0, 150), labelled=labelled)
    assert [p.reviews for p in curve.points] == [0, 150]
    assert curve.questions == sum(len(s.questions) for s in val)
    for p in curve.points:
        assert all(0.0 <= p.metrics[k] <= 1.0 for k in ("R@1", "R@3", "grounded", "F1", "ROUGE-L",
                                                         "chosen_good", "oracle"))
        assert p.metrics["R@3"] >= p.metrics["R@1"] and p.metrics["oracle"] >= p.metrics["chosen_good"]
    assert 0.0 < curve.retriever["R@1"] <= curve.retriever["R@3"] <= 1.0
    gain, (lo, hi) = curve.gain(curve.points[1])
    assert lo <= gain <= hi
    # on held-out reviews the learned verifier tells good steps from bad ones at least as well as the
    # untuned score (which already ranks by sentence evidence); the gate activates only a clear gain
    from app.tuning.gate import baseline_scores, decide

    report = parts.verifier_report
    decision = decide(report.heldout_items, report.heldout_probs, baseline_scores(report.heldout_items, None),
                      baseline="untuned")
    assert decision.new_auc > 0.75 and decision.new_auc >= decision.old_auc - 0.02, decision.reason
    assert decision.activate == (decision.interval[0] > 0) and "held-out AUC" in decision.reason


def test_verifier_trained_on_some_stories_never_sees_ids_or_text_of_others(data):
    train, val = data
    indexes = Indexes(None)
    labelled = simulate_reviews(train, indexes, 150, editor=SimulatedEditor(corrections=1.0), candidates=4,
                                seed=3)
    assert any(i.correction for i in labelled)              # the editor corrected some -1 steps
    parts = train_parts(labelled)
    names = parts.verifier.feature_names
    assert parts.verifier.extra["rows"]["corrections"] > 0  # corrections became preferred alternatives
    train_words = {w for s in train for _, text in s.sections for w in text.lower().split()}
    for name in names:     # a fixed schema of evidence/grounding features: no id, no book's words
        assert name.split("_")[0] in {"ev", "step", "grounded", "valid", "log", "q", "token", "quote",
                                      "best", "untuned"}, name
        assert "#" not in name and not any(s.name in name for s in train)
    artefact = json.dumps({"names": names, "extra": parts.verifier.extra})
    for story in val:
        assert story.name not in artefact
        assert not any(text[:40] in artefact for _, text in story.sections)
    assert not (set(names) & train_words - {"grounded"})


def test_tune_from_the_review_store_and_pick_up_the_snapshot(data, settings):
    from app.bots.backends.extractive import ExtractiveBackend
    from app.bots.engine import Engine
    from app.review import db
    from app.review.store import ReviewStore
    from app.tuning.service import collect_labelled_steps, tune_character

    train, _ = data
    settings.ensure_dirs()
    db.upgrade(settings.resolved_database_url)
    store = ReviewStore(settings.resolved_database_url)
    indexes = Indexes(None)
    editor = SimulatedEditor()
    try:
        for story in train[:3]:
            engine = Engine(indexes.get(story), ExtractiveBackend(), sink=store, candidates=2)
            for qa in story.questions[:12]:
                turn = engine.answer(storyteller(story.name), qa.question, conversation_id=f"c-{story.name}")
                for review in editor.review_turn(turn, qa.evidence):
                    store.record_review(review, Role.editor)
        items = collect_labelled_steps(store, CHARACTER_ID, storyteller(train[0].name))
        assert len(items) == 3 * 12 * 3
        assert all(i.query.startswith(i.question) for i in items)
        before = {q.turn_id: q.priority for q in store.queue(CHARACTER_ID, limit=200)}

        result = tune_character(settings, store, CHARACTER_ID, character=storyteller(train[0].name),
                                items=items, make_active=True)
        assert result.meta.version == "v1" and result.activated
        # the re-ranker joins the snapshot only when it orders held-out excerpts better than the retriever
        reranker_used = result.meta.metrics["reranker"]["used"]
        assert set(result.meta.parts) == {"verifier", "exemplars"} | ({"reranker"} if reranker_used else set())
        assert reranker_used or "re-ranker not used: held-out AUC" in result.meta.notes
        rows = store.list_snapshots(CHARACTER_ID)
        assert [r.id for r in rows] == [f"{CHARACTER_ID}@v1"] and rows[0].active
        assert rows[0].metrics["verifier"]["heldout"]["n"] > 0
        assert result.reprioritized == 36
        after = {q.turn_id: q.priority for q in store.queue(CHARACTER_ID, limit=200)}
        assert after.keys() == before.keys() or not after      # same turns, new order keys
        assert all(0.0 <= p <= 1.0 for p in after.values())

        # what a new conversation in the running app does: one call, tuned parts in the engine
        loaded = snap.active_snapshot(settings, CHARACTER_ID)
        assert loaded.id == f"{CHARACTER_ID}@v1"
        base = indexes.get(train[0])
        wrapped = loaded.wrap(base)          # the re-ranker runs as a LlamaIndex node postprocessor
        assert [type(p).__name__ for p in wrapped.postprocessors] == (["ExcerptRerankerPostprocessor"]
                                                                       if reranker_used else [])
        engine = Engine(wrapped, ExtractiveBackend(), scorer=loaded.scorer(),
                        exemplars=loaded.exemplar_source(), candidates=4)
        turn = engine.answer(storyteller(train[0].name), train[0].questions[0].question,
                             snapshot_id=loaded.id)
        assert turn.snapshot_id == loaded.id
        assert all(0.0 <= c.score <= 1.0 for s in turn.steps for c in s.candidates)

        # rollback: files and the store's table agree, and new conversations are untuned again
        assert snap.rollback(settings, CHARACTER_ID, mirror=snap.StoreMirror(store)) is None
        assert snap.active_snapshot(settings, CHARACTER_ID) is None
        assert store.active_snapshot(CHARACTER_ID) is None
        meta = json.loads((settings.data_dir / "snapshots" / CHARACTER_ID / "v1" / "meta.json").read_text())
        assert meta["n_reviews"] == 108
    finally:
        store.close()


def test_prelabels_are_machine_reviews_once_the_threshold_is_met(data, settings):
    from app.bots.backends.extractive import ExtractiveBackend
    from app.bots.engine import Engine
    from app.domain import ReviewSource
    from app.review import db
    from app.review.store import ReviewStore
    from app.tuning.service import tune_character

    train, _ = data
    settings = settings.model_copy(update={"prelabel_min_accuracy": 0.5, "prelabel_confidence": 0.7})
    settings.ensure_dirs()
    db.upgrade(settings.resolved_database_url)
    store = ReviewStore(settings.resolved_database_url)
    indexes = Indexes(None)
    labelled = simulate_reviews(train, indexes, 150, editor=SimulatedEditor(), candidates=2, seed=5)
    story = train[3]
    try:
        engine = Engine(indexes.get(story), ExtractiveBackend(), sink=store, candidates=2)
        turns = [engine.answer(storyteller(story.name), qa.question)     # unreviewed, in the queue
                 for qa in story.questions[:8]]
        result = tune_character(settings, store, CHARACTER_ID, items=labelled, make_active=True)
        assert result.prelabelled > 0
        stored = [r for t in turns for reviews in store.reviews_for_turn(t.id).values() for r in reviews]
        assert len(stored) == result.prelabelled
        assert all(r.source is ReviewSource.machine and r.reviewer == "verifier" for r in stored)
        assert {r.rating for r in stored} <= {-1, 1}
        # machine labels are never training data
        from app.tuning.service import collect_labelled_steps
        assert collect_labelled_steps(store, CHARACTER_ID) == []
    finally:
        store.close()


@pytest.mark.postgres
def test_tune_and_activate_on_postgresql(data, settings, pg_url):
    from app.bots.backends.extractive import ExtractiveBackend
    from app.bots.engine import Engine
    from app.review import db
    from app.review.store import ReviewStore
    from app.tuning.service import tune_character

    train, _ = data
    db.upgrade(pg_url)
    store = ReviewStore(pg_url)
    story = train[0]
    try:
        engine = Engine(Indexes(None).get(story), ExtractiveBackend(), sink=store, candidates=2)
        for qa in story.questions[:12]:
            turn = engine.answer(storyteller(story.name), qa.question)
            for review in SimulatedEditor().review_turn(turn, qa.evidence):
                store.record_review(review, Role.editor)
        result = tune_character(settings, store, CHARACTER_ID, character=storyteller(story.name),
                                make_active=True)
        assert result.meta.n_reviews == 36 and result.reprioritized == 12
        assert store.active_snapshot(CHARACTER_ID).id == f"{CHARACTER_ID}@v1"
        v2 = tune_character(settings, store, CHARACTER_ID, make_active=True).meta
        assert store.active_snapshot(CHARACTER_ID).id == v2.id
        assert snap.rollback(settings, CHARACTER_ID, mirror=snap.StoreMirror(store)) == "v1"
        assert store.active_snapshot(CHARACTER_ID).id == f"{CHARACTER_ID}@v1"
        assert snap.active_snapshot(settings, CHARACTER_ID).id == f"{CHARACTER_ID}@v1"
    finally:
        store.close()
