"""Citation validation edge cases and grounding features."""

from __future__ import annotations

from app.bots.grounding import (GroundingScorer, candidate_features, normalize, quote_in_text,
                                validate_citations)
from app.domain import Candidate, Citation, ProcedureStep


def test_normalisation_of_quotes_case_and_whitespace():
    text = "\u201cIt is a capital mistake,\u201d said he,\n  \u2018to theorize\u2019 \u2014 before data."
    assert normalize(text) == "\"it is a capital mistake,\" said he, 'to theorize' - before data."
    assert quote_in_text('it is a CAPITAL   mistake', text)
    assert quote_in_text("'to theorize' - before", text)
    assert quote_in_text("\u201cIt is a capital mistake,\u201d", text)   # surrounding quote marks dropped


def test_ellipsis_fragments_must_appear_in_order():
    text = "You have been in Afghanistan, I perceive. I knew you came from Afghanistan."
    assert quote_in_text("You have been in Afghanistan \u2026 I knew you came", text)
    assert quote_in_text("You have been ... came from Afghanistan", text)
    assert not quote_in_text("I knew you came ... You have been in Afghanistan", text)


def test_validate_citations_problems(excerpts):
    step_excerpts = excerpts[:3]
    cits = [
        Citation("e1", "I perceive"),                         # valid
        Citation("e9", "You have been in Afghanistan"),       # not retrieved at all
        Citation("e4", "eliminated the impossible"),          # exists in library but not retrieved for this step
        Citation("e2", "a hat of the deerstalker kind"),      # invented quote
        Citation("e3", ""),                                   # no quote
        Citation("e3", "It"),                                 # too short to check
        Citation("e1", "i  PERCEIVE"),                        # duplicate of the first after normalising
    ]
    out = validate_citations(cits, step_excerpts)
    assert [c.valid for c in out] == [True, False, False, False, False, False]
    assert out[1].problem.startswith("unknown excerpt") and out[2].problem.startswith("unknown excerpt")
    assert out[3].problem == "quote not in excerpt"
    assert out[4].problem == "no quote given"
    assert out[5].problem == "quote too short to check"


def test_features_and_score_prefer_grounded(excerpts):
    good = Candidate("I perceive you have been in Afghanistan.",
                     validate_citations([Citation("e1", "You have been in Afghanistan, I perceive")], excerpts))
    bad = Candidate("You have been in Afghanistan, I perceive.",
                    validate_citations([Citation("zz", "You have been in Afghanistan")], excerpts))
    fg, fb = candidate_features(good, excerpts), candidate_features(bad, excerpts)
    assert fg["grounded"] == 1.0 and fb["grounded"] == 0.0
    assert fg["n_valid_citations"] == 1 and fb["n_citations"] == 1 and fb["valid_fraction"] == 0
    assert fg["best_cited_rank_recip"] == 1.0
    assert 0 < fg["token_overlap"] <= 1 and fg["quote_coverage"] > 0.5
    assert all(isinstance(v, float) for v in fg.values())
    scorer = GroundingScorer()
    step = ProcedureStep("Observe", "x")
    good.features, bad.features = fg, fb
    sg = scorer.score(question="q", step=step, step_index=0, candidate=good, excerpts=excerpts)
    sb = scorer.score(question="q", step=step, step_index=0, candidate=bad, excerpts=excerpts)
    assert sg > 1.0 > sb


def test_korean_quotes_and_tokens():
    text = "이날이야말로 동소문 안에서 인력거꾼 노릇을 하는 김 첨지에게는 오래간만에도 닥친 운수 좋은 날이었다."
    assert quote_in_text("김 첨지에게는 오래간만에도 닥친 운수 좋은 날", text)
    assert not quote_in_text("김 첨지는 부자였다", text)
