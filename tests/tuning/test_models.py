"""Verifier, re-ranker, exemplars and label policy on synthetic data."""

from __future__ import annotations

import random

import pytest

from app.domain import (Candidate, Citation, FaultTag, ProcedureStep, Review, ReviewKind,
                        ReviewSource)
from app.tuning.exemplars import SnapshotExemplars, exemplars_from
from app.tuning.labels import aggregate
from app.tuning.linear import LinearModel
from app.tuning.reranker import RerankingRetriever, train_reranker
from app.tuning.verifier import VerifierScorer, prelabel_allowed, train_verifier

from tuning_synth import FakeHybrid, make_corpus, recall_at_1, simulate


def _review(rating, source=ReviewSource.human, kind=ReviewKind.editor, tags=(), correction=""):
    return Review("s1", "ed", kind, rating, correction, tuple(tags), source)


def test_label_policy():
    assert aggregate([]) is None
    assert aggregate([_review(1, source=ReviewSource.machine)]) is None
    assert aggregate([_review(-1, source=ReviewSource.inferred)])[:2] == (-1, ReviewSource.inferred)
    # editors outrank inferred labels and readers; disagreement rounds down
    assert aggregate([_review(1), _review(-1, source=ReviewSource.inferred)])[0] == 1
    assert aggregate([_review(1), _review(-1)])[0] == 0
    assert aggregate([_review(0), _review(-1)])[0] == -1
    assert aggregate([_review(1, kind=ReviewKind.reader), _review(1, kind=ReviewKind.reader),
                      _review(-1, kind=ReviewKind.reader)])[:3] == (1, ReviewSource.human, ReviewKind.reader)
    assert aggregate([_review(1, kind=ReviewKind.reader), _review(-1, kind=ReviewKind.reader)]) is None
    assert aggregate([_review(-1, tags=[FaultTag.wrong_excerpt], correction="fixed")])[3:] == \
        ((FaultTag.wrong_excerpt,), "fixed")


def test_linear_model_roundtrip_and_constant(tmp_path):
    model = LinearModel.fit([{"a": 1.0}, {"a": 2.0}, {"a": 3.0}], [1, 1, 1])
    assert model.kind == "constant" and model.predict_proba([{"a": 0.0}])[0] > 0.99
    model = LinearModel.fit([{"a": float(i), "b": 1.0} for i in range(20)], [int(i >= 10) for i in range(20)])
    model.save(tmp_path / "m.json")
    again = LinearModel.load(tmp_path / "m.json")
    rows = [{"a": 2.0}, {"a": 17.0, "unseen": 5.0}]
    assert again.predict_proba(rows).tolist() == pytest.approx(model.predict_proba(rows).tolist())
    assert again.predict_proba(rows)[1] > 0.5 > again.predict_proba(rows)[0]
    with pytest.raises(ValueError, match="no training examples"):
        LinearModel.fit([], [])


def test_reranker_learns_from_reviews_and_lifts_recall():
    corpus = make_corpus(60, seed=3)
    base = FakeHybrid(corpus, seed=5)
    items = simulate(corpus, base, 300, seed=11)
    model, priors, report = train_reranker(items)
    assert report.n_positive > 20 and report.n_negative > 20
    # the learned weights prefer exact overlap over the noisy dense side
    w = model.weights()
    assert w["idf_overlap"] + w["overlap"] + w["bm25_ratio"] > 0
    tuned = RerankingRetriever(FakeHybrid(corpus, seed=99), model, priors, pool_factor=3)
    before = recall_at_1(FakeHybrid(corpus, seed=99), corpus, 200, seed=7)
    after = recall_at_1(tuned, corpus, 200, seed=7)
    assert after >= before + 0.10, (before, after)
    assert tuned.get(corpus[0].id) is corpus[0]
    assert len(tuned.retrieve("w1 w2", top_k=4)) == 4


def test_reranker_priors_follow_the_labels():
    corpus = make_corpus(20, seed=4)
    base = FakeHybrid(corpus, seed=1)
    items = simulate(corpus, base, 120, seed=2)
    _, priors, _ = train_reranker(items)
    bad_ids = {i.cited_ids[0] for i in items if i.rating < 0}
    good_ids = {i.cited_ids[0] for i in items if i.rating > 0}
    assert all(priors[e][1] > 0 for e in bad_ids)
    assert all(priors[e][0] > 0 for e in good_ids)
    with pytest.raises(ValueError, match="no excerpt labels"):
        train_reranker([i for i in items if False])


def test_verifier_agrees_with_held_out_labels_and_scores_candidates():
    corpus = make_corpus(60, seed=8)
    base = FakeHybrid(corpus, seed=2)
    items = simulate(corpus, base, 300, seed=5) + simulate(corpus, base, 150, seed=6, step_index=1)
    model, report = train_verifier(items)
    assert report.n_heldout > 50
    assert report.heldout["auc"] > 0.75 and report.heldout["accuracy"] > 0.65
    assert set(report.per_step) == {"0:locate", "1:locate"}
    scorer = VerifierScorer(model)
    # the scorer prefers a candidate citing the excerpt the question was drawn from
    rng = random.Random(4)
    wins = 0
    for _ in range(50):
        target = rng.choice(corpus)
        question = " ".join(rng.sample(target.text.split(), 4))
        pool = base.retrieve(question, top_k=8)
        if target.id not in {e.id for e in pool}:
            pool = pool[:7] + base.retrieve(" ".join(target.text.split()), top_k=1)
        other = next(e for e in pool if e.id != target.id)
        s = {e.id: scorer.score(question=question, step=ProcedureStep("locate", "find it"), step_index=0,
                                candidate=Candidate(e.text[:40], [Citation(e.id, e.text[:20])],
                                                    features={"quote_share": 0.5}), excerpts=pool)
             for e in (target, other)}
        wins += s[target.id] > s[other.id]
    assert wins >= 35
    assert VerifierScorer.uncertainty(0.5) == 1.0 and VerifierScorer.uncertainty(1.0) == 0.0
    scale = model.extra["card_scale"]              # the snapshot carries its map onto cards' thresholds
    assert scale["p"] == sorted(scale["p"]) and len(scale["p"]) == len(scale["confidence"]) > 1


def test_prelabel_only_when_the_lab_threshold_is_met():
    report = {"heldout": {"n": 100, "accuracy": 0.8, "auc": 0.85}}
    assert not prelabel_allowed(report, min_accuracy=None, min_auc=None)
    assert prelabel_allowed(report, min_accuracy=0.75, min_auc=0.8)
    assert not prelabel_allowed(report, min_accuracy=0.9, min_auc=None)
    assert not prelabel_allowed({"heldout": {"n": 5, "accuracy": 1.0, "auc": 1.0}}, min_accuracy=0.5, min_auc=None)
    model = LinearModel.fit([{"a": 0.0}, {"a": 1.0}], [0, 1])
    off = VerifierScorer(model)
    on = VerifierScorer(model, prelabel_enabled=True, prelabel_confidence=0.8)
    assert off.prelabel("s", 0.99) is None
    assert on.prelabel("s", 0.5) is None
    machine = on.prelabel("s", 0.95)
    assert machine.rating == 1 and machine.source is ReviewSource.machine
    assert on.prelabel("s", 0.05).rating == -1


def test_exemplars_from_approved_and_corrected_steps_by_similarity():
    corpus = make_corpus(10, seed=1)
    items = simulate(corpus, FakeHybrid(corpus), 30, seed=3)
    items[0].question = "why did the wolf eat grandmother"
    items[0].rating, items[0].correction = -1, "The wolf was hungry, see the forest excerpt."
    items[1].question = "where did the miller hide his gold"
    items[1].rating = 1
    for i in items[2:]:
        i.rating = -1
    exemplars = exemplars_from(items)
    assert {e.text for e in exemplars} == {"The wolf was hungry, see the forest excerpt.", items[1].step.text}
    source = SnapshotExemplars(exemplars)
    top = source.exemplars("synth", "locate", "What did the wolf do to grandmother?", k=1)
    assert top[0].text.startswith("The wolf was hungry")
    assert source.exemplars("synth", "answer", "wolf", k=2) == []
    assert source.exemplars("other", "locate", "wolf", k=2) == []


def test_two_stage_reranker_equals_its_stages():
    from app.tuning.reranker import PRIOR_FEATURES, fit_two_stage

    rng = random.Random(0)
    rows, labels = [], []
    for _ in range(300):
        y = int(rng.random() < 0.5)
        rows.append({"overlap": rng.gauss(y, 1.0), "bm25_ratio": rng.gauss(0.5 * y, 1.0),
                     "prior_good": float(rng.random() < 0.3 * y), "prior_bad": float(rng.random() < 0.3 * (1 - y)),
                     "prior_net": rng.gauss(y - 0.5, 0.5)})
        labels.append(y)
    model = fit_two_stage(rows, labels)
    assert set(PRIOR_FEATURES) <= set(model.feature_names)
    w = model.weights()
    assert w["overlap"] > 0 and w["prior_net"] > 0
    # gathered labels that contradict the reviews cannot earn a negative weight
    flipped = [{**r, "prior_net": -r["prior_net"]} for r in rows]
    assert fit_two_stage(flipped, labels).weights()["prior_net"] == 0.0
    # without priors (an excerpt nobody reviewed) the ranking is the content model's
    blank = [{**r, "prior_good": 0.0, "prior_bad": 0.0, "prior_net": 0.0} for r in rows[:50]]
    from app.tuning.linear import LinearModel
    content = LinearModel.fit([{k: v for k, v in r.items() if k not in PRIOR_FEATURES} for r in rows], labels)
    a = model.decision(blank).argsort().tolist()
    b = content.decision([{k: v for k, v in r.items() if k not in PRIOR_FEATURES} for r in blank]).argsort().tolist()
    assert a == b


def test_verifier_features_ignore_list_order_and_compare_sentences():
    from app.domain import Excerpt, Location, RetrievalScores, ReviewSource, Step
    from app.tuning.labels import LabelledStep
    from app.tuning.verifier import labelled_rows

    def ex(i: int, text: str, fused: float) -> Excerpt:
        return Excerpt(id=f"s#{i}", book_id="s", text=text, location=Location("s", 1, "One", i, i),
                       scores=RetrievalScores(bm25=fused, fused=fused, bm25_rank=4 - i))

    pool = [ex(1, "The king rode out at dawn. He found nothing in the forest that day.", 0.9),
            ex(2, "The old miller hid the golden goose under the mill. Nobody saw him do it.", 0.5),
            ex(3, "Rain fell on the village for many days and nights.", 0.2)]
    question = "Where did the miller hide the golden goose?"

    def features(quote_excerpt: str, quote: str, excerpts) -> dict:
        cand = Candidate("x", [Citation(quote_excerpt, quote, valid=True)], chosen=True)
        step = Step(id="st", turn_id="t", index=0, name="Locate", text="x", citations=cand.citations,
                    excerpts=list(excerpts), candidates=[cand])
        item = LabelledStep("c", question, step, 1, ReviewSource.human)
        return labelled_rows(item)[0][0]

    f_good = features("s#2", "The old miller hid the golden goose under the mill.", pool)
    # a stored step lists its cited excerpt first; the features must not change with that order
    assert features("s#2", "The old miller hid the golden goose under the mill.",
                    [pool[1], pool[0], pool[2]]) == f_good
    assert f_good["ev_excerpt_rank"] == 0.5                  # second in retrieval order
    f_bad = features("s#1", "He found nothing in the forest that day.", pool)
    assert f_good["ev_relevance_rank"] == 1.0 and f_good["ev_cov_margin"] == 0.0
    assert f_bad["ev_relevance_margin"] < 0 and f_bad["ev_cov"] < f_good["ev_cov"]
    assert not any(k.startswith("s#") or "miller" in k for k in f_good)      # no ids, no words


def test_corrections_become_preferred_alternatives():
    from app.domain import Excerpt, Location, RetrievalScores, ReviewSource, Step
    from app.tuning.labels import LabelledStep
    from app.tuning.verifier import labelled_rows

    pool = [Excerpt(id=f"s#{i}", book_id="s", text=t, location=Location("s", 1, "One", i, i),
                    scores=RetrievalScores(bm25=f, fused=f)) for i, (t, f) in enumerate(
        [("The king rode out at dawn. He found nothing in the forest that day.", 0.9),
         ("The old miller hid the golden goose under the mill. Nobody saw him do it.", 0.5)], start=1)]
    cand = Candidate("x", [Citation("s#1", "He found nothing in the forest that day.", valid=True)], chosen=True)
    step = Step(id="st", turn_id="t", index=0, name="Locate", text="x", citations=cand.citations,
                excerpts=pool, candidates=[cand])
    item = LabelledStep("c", "Where did the miller hide the goose?", step, -1, ReviewSource.human,
                        correction="The passage is: the old miller hid the golden goose under the mill.")
    rows = labelled_rows(item)
    assert [(label, weight) for _, label, weight in rows] == [(0, 1.0), (1, 1.0)]
    assert rows[1][0]["ev_cov"] > rows[0][0]["ev_cov"]
    reader = LabelledStep("c", "Where?", step, 1, ReviewSource.human, kind=ReviewKind.reader)
    assert labelled_rows(reader)[0][1:] == (1, 0.5)          # a reader's thumb counts half


def test_a_correction_is_worded_like_its_siblings():
    """The corrected sentence takes the kept candidate's wording (its quote swapped), so the
    verifier compares sentences, not a templated step with bare prose."""
    from app.domain import Excerpt, Location, RetrievalScores, ReviewSource, Step
    from app.tuning.labels import LabelledStep
    from app.bots.grounding import candidate_features
    from app.tuning.verifier import labelled_rows

    pool = [Excerpt(id=f"s#{i}", book_id="s", text=t, location=Location("s", 1, "One", i, i),
                    scores=RetrievalScores(bm25=f, fused=f)) for i, (t, f) in enumerate(
        [("The king rode out at dawn. He found nothing in the forest that day.", 0.9),
         ("The old miller hid the golden goose under the mill. Nobody saw him do it.", 0.5)], start=1)]
    quote = "He found nothing in the forest that day."
    text = f"Locate: in The Tale (ch. 1) I find: \u201c{quote}\u201d"
    cand = Candidate(text, [Citation("s#1", quote, valid=True)], chosen=True)
    cand.features = candidate_features(cand, pool)          # as the engine stores them
    step = Step(id="st", turn_id="t", index=0, name="Locate", text=text, citations=cand.citations,
                excerpts=pool, candidates=[cand])
    item = LabelledStep("c", "Where did the miller hide the goose?", step, -1, ReviewSource.human,
                        correction="The old miller hid the golden goose under the mill.")
    kept, corrected = (row for row, _, _ in labelled_rows(item))
    assert corrected["token_overlap"] == pytest.approx(kept["token_overlap"], abs=0.35)
    assert abs(corrected["log_len"] - kept["log_len"]) < 0.3       # same template around both quotes
    assert corrected["ev_cov"] > kept["ev_cov"]
