"""A snapshot moves away from the untuned bot only as far as held-out reviews support.

The verifier's pull from the untuned ranking is chosen by cross-validation over turns
(`choose_l2`), and the re-ranker is used only when it orders held-out reviewed excerpts
better than the retriever's own scores.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

from app.tuning.listwise import CandidateList
from app.tuning.reranker import RerankerReport, beats_retriever
from app.tuning.crossval import choose_l2 as choose, describe_choice
from app.tuning.verifier import UNTUNED, fit_verifier


def reviews(n: int, *, signal: bool, seed: int = 0):
    """n reviewed steps of 4 candidates each.  The untuned score is right 60% of the time; with
    ``signal`` the reviews also prefer the candidate with the highest ``cue`` (a feature the
    untuned score ignores), otherwise they prefer a random candidate."""
    rng = random.Random(seed)
    items, examples = [], []
    for k in range(n):
        rows = [{UNTUNED: rng.random(), "cue": rng.random(), "noise": rng.random()} for _ in range(4)]
        if signal:
            target = max(range(4), key=lambda i: rows[i]["cue"])
        else:
            target = rng.randrange(4)
        kept = max(range(4), key=lambda i: rows[i][UNTUNED])
        items.append(SimpleNamespace(turn_id=f"t{k}", question=f"q{k}"))
        examples.append((CandidateList(rows, [target], True), [(rows[kept], int(kept == target), 1.0)]))
    return items, examples


def choose_l2(items, examples):
    turn_ids = [i.turn_id for i in items]
    return choose((turn_ids, turn_ids), examples, fit_verifier)


def ranking(model, rows):
    return sorted(range(len(rows)), key=lambda i: -model.decision([rows[i]])[0])


def test_reviews_without_signal_keep_the_untuned_ranking():
    items, examples = reviews(300, signal=False)
    l2, choice = choose_l2(items, examples)
    assert l2 is None and choice["chosen"] == "untuned"
    assert set(choice["grid"]) >= {"untuned", "l2=5"}
    model = fit_verifier(examples, l2=l2)
    rng = random.Random(9)
    for _ in range(50):
        rows = [{UNTUNED: rng.random(), "cue": rng.random(), "noise": rng.random()} for _ in range(4)]
        assert ranking(model, rows) == sorted(range(4), key=lambda i: -rows[i][UNTUNED])


def test_reviews_with_a_consistent_signal_move_the_verifier():
    items, examples = reviews(300, signal=True)
    l2, choice = choose_l2(items, examples)
    assert l2 is not None, choice
    grid = choice["grid"]
    assert grid[choice["chosen"]]["accuracy"] > grid["untuned"]["accuracy"] and choice["criterion"] == "choices"
    model = fit_verifier(examples, l2=l2)
    rng = random.Random(9)
    hits = 0
    for _ in range(200):
        rows = [{UNTUNED: rng.random(), "cue": rng.random(), "noise": rng.random()} for _ in range(4)]
        hits += ranking(model, rows)[0] == max(range(4), key=lambda i: rows[i]["cue"])
    assert hits / 200 > 0.8


def test_too_few_reviews_keep_the_untuned_ranking():
    items, examples = reviews(12, signal=True)
    l2, choice = choose_l2(items, examples)
    assert l2 is None and "fewer than" in choice["reason"]


def test_reranker_is_used_only_when_it_beats_the_retrievers_order():
    def report(auc, base):
        return RerankerReport(100, 50, 50, 0, {"auc": auc, "retriever_auc": base})

    assert beats_retriever(report(0.80, 0.70))[0]
    used, why = beats_retriever(report(0.71, 0.70))
    assert not used and "retriever's order is kept" in why
    used, why = beats_retriever(RerankerReport(10, 5, 5, 0, {}))
    assert not used and "too few" in why


def test_tune_says_which_ranking_it_kept():
    items, examples = reviews(300, signal=False)
    line = describe_choice(choose_l2(items, examples)[1])
    assert line.startswith("verifier: kept the untuned ranking; on held-out turns it picked")
    items, examples = reviews(300, signal=True)
    assert describe_choice(choose_l2(items, examples)[1]).startswith("verifier: learned ranking (l2=")
    assert "fewer than 30 reviews" in describe_choice(choose_l2(*reviews(12, signal=True))[1])


def test_reranker_keeps_the_retrievers_order_where_no_excerpt_was_reviewed():
    from app.domain import Excerpt, Location, RetrievalScores
    from app.tuning.linear import LinearModel
    from app.tuning.reranker import ExcerptReranker

    pool = [Excerpt(id=f"b#{i}", book_id="b", text=f"word{i} " * (i + 1), location=Location("b", 1, "One", i, i),
                    scores=RetrievalScores(bm25=1.0 / (i + 1), fused=1.0 / (i + 1))) for i in range(6)]
    # a model that prefers low fused scores: it would turn the pool upside down
    model = LinearModel(["fused_ratio"], [0.0], [1.0], [-5.0], 0.0)
    unreviewed = ExcerptReranker(model, {"other#1": (3, 0)})
    assert [e.id for e in unreviewed.rerank("word1", pool)] == [e.id for e in pool]
    reviewed = ExcerptReranker(model, {"b#2": (0, 2)})
    assert [e.id for e in reviewed.rerank("word1", pool)][0] == "b#5"


def test_a_tuned_verifier_speaks_the_confidence_scale_of_card_thresholds():
    # Holmes's "score_below: 0.91" is written on the untuned confidence (grounding score / its top);
    # a verifier that keeps the untuned ranking gives the same confidences, so it takes the same paths
    from app.bots.graph import confidence
    from app.bots.grounding import GroundingScorer
    from app.tuning.verifier import VerifierScorer, card_scale

    _, examples = reviews(300, signal=False)
    kept = [rows[0][0] for _, rows in examples]
    model = fit_verifier(examples, l2=None)
    raw = VerifierScorer(model)
    assert confidence(0.42, raw) == 0.42                          # an older snapshot: P(good) as is
    model.extra["card_scale"] = card_scale(model, kept)
    tuned = VerifierScorer(model)
    mapped = [confidence(float(model.predict_proba([r])[0]), tuned) for r in kept]
    untuned = [confidence(r[UNTUNED], GroundingScorer()) for r in kept]
    assert max(abs(a - b) for a, b in zip(mapped, untuned)) < 0.03
    by_untuned = [mapped[i] for i in sorted(range(len(kept)), key=untuned.__getitem__)]
    assert by_untuned == sorted(by_untuned)                        # the same order
    assert card_scale(model, kept[:5]) is None                    # too few steps to match quantiles
