"""The learned step verifier: features of a candidate step → probability an editor finds it good.

`step_features` turns one candidate (its grounding features from the engine plus
what can be read off its citations and the retrieved excerpts) into named
numbers; `train_verifier` fits a logistic regression on labelled steps, reports
held-out agreement with editors (accuracy, ROC AUC, per procedure step) and
refits on everything; `VerifierScorer` implements `domain.StepScorer` for the
engine's best-of-N, and also gives the review desk an uncertainty for queue
ordering and machine pre-labels once the lab's threshold is met.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from app.analyzer import split_sentences
from app.domain import Candidate, Excerpt, ProcedureStep, ReviewKind, ReviewSource, Review
from app.tuning.labels import LabelledStep
from app.tuning.linear import LinearModel
from app.tuning.text import (bigram_overlap, content_tokens, idf_for_texts, overlap, tokens,
                             weighted_overlap)

MAX_STEP_INDEX = 6


def _inv(rank: int | None) -> float:
    return 1.0 / rank if rank else 0.0


def step_features(*, question: str, step_index: int, candidate: Candidate,
                  excerpts: Sequence[Excerpt]) -> dict[str, float]:
    """Named features of one candidate step; identical at training and answer time."""
    f: dict[str, float] = {}
    for name, value in (candidate.features or {}).items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            f[f"g_{name}"] = v
    f[f"step_{min(step_index, MAX_STEP_INDEX)}"] = 1.0
    cits = candidate.citations or []
    valid = [c for c in cits if c.valid]
    f["n_citations"] = float(len(cits))
    f["valid_share"] = len(valid) / len(cits) if cits else 0.0
    f["grounded"] = 1.0 if valid else 0.0
    # position by fused score, not list order: a stored step lists its cited excerpts first
    fused = [e.scores.fused if e.scores else 0.0 for e in excerpts]
    order = sorted(range(len(excerpts)), key=lambda i: -fused[i])
    by_id = {excerpts[i].id: (r, excerpts[i]) for r, i in enumerate(order)}
    max_fused = max((e.scores.fused for e in excerpts if e.scores), default=0.0) or 1.0
    max_bm25 = max((e.scores.bm25 or 0.0 for e in excerpts if e.scores), default=0.0) or 1.0
    cited = [by_id[c.excerpt_id] for c in valid if c.excerpt_id in by_id]
    q_terms = content_tokens(question)
    text_terms = tokens(candidate.text)
    f["log_len"] = math.log1p(len(text_terms))
    f["q_text_overlap"] = overlap(q_terms, text_terms)
    quote_terms = [t for c in valid for t in tokens(c.quote)]
    f["quote_coverage"] = min(1.0, len(quote_terms) / len(text_terms)) if text_terms else 0.0
    f["cited_known"] = 1.0 if cited else 0.0
    best = {"pos_rr": 0.0, "fused_ratio": 0.0, "dense": 0.0, "dense_rr": 0.0, "bm25_ratio": 0.0,
            "bm25_rr": 0.0, "q_excerpt_overlap": 0.0, "q_excerpt_bigrams": 0.0}
    for pos, ex in cited:
        s = ex.scores
        ex_terms = tokens(ex.text)
        vals = {"pos_rr": 1.0 / (pos + 1),
                "q_excerpt_overlap": overlap(q_terms, ex_terms),
                "q_excerpt_bigrams": bigram_overlap(tokens(question), ex_terms)}
        if s is not None:
            vals.update(fused_ratio=s.fused / max_fused, dense=s.dense or 0.0,
                        dense_rr=_inv(s.dense_rank), bm25_ratio=(s.bm25 or 0.0) / max_bm25,
                        bm25_rr=_inv(s.bm25_rank))
        for k, v in vals.items():
            best[k] = max(best[k], v)
    f.update({f"cited_{k}": v for k, v in best.items()})
    f.update(_relative_features(question, [c.quote for c in valid], [e.id for _, e in cited], excerpts))
    f.update(_sentence_features(question, [c.quote for c in valid], {c.excerpt_id for c in valid}, excerpts))
    return f


def _sentence_features(question: str, quotes: Sequence[str], cited_ids: set[str],
                       excerpts: Sequence[Excerpt]) -> dict[str, float]:
    """How the quote and the cited excerpt's best sentence match the question compared with every
    sentence of the step's excerpts, i.e. with the sentences its sibling candidates lead with."""
    out: dict[str, float] = {}
    sents = [(e.id, tokens(s)) for e in excerpts for s in split_sentences(e.text) if len(s.split()) >= 3]
    if not sents:
        return out
    q_terms = content_tokens(question)
    idf = idf_for_texts(tuple(" ".join(t) for _, t in sents))
    default = math.log(len(sents) + 1.0)
    scores = [weighted_overlap(q_terms, t, idf, default) for _, t in sents]
    quote = max((weighted_overlap(q_terms, tokens(q), idf, default) for q in quotes), default=0.0)
    own = max((v for (eid, _), v in zip(sents, scores) if eid in cited_ids), default=0.0)
    other = max((v for (eid, _), v in zip(sents, scores) if eid not in cited_ids), default=0.0)
    out["quote_sent_score"] = quote
    out["quote_sent_rank_rr"] = 1.0 / (1 + sum(1 for v in scores if v > quote)) if quotes else 0.0
    out["quote_sent_margin"] = quote - max(scores)
    out["cited_best_sent_margin"] = own - other
    return out


def _relative_features(question: str, quotes: Sequence[str], cited_ids: Sequence[str],
                       excerpts: Sequence[Excerpt]) -> dict[str, float]:
    """How the cited excerpt and quote match the *question* compared with the step's other excerpts."""
    q_terms = content_tokens(question)
    texts = [tokens(e.text) for e in excerpts]
    idf = idf_for_texts(tuple(e.text for e in excerpts))
    default = math.log(len(excerpts) + 1.0) if excerpts else 1.0
    pool = [weighted_overlap(q_terms, t, idf, default) for t in texts]
    cited = [pool[i] for i, e in enumerate(excerpts) if e.id in set(cited_ids)]
    out = {"q_idf_overlap": 0.0, "q_idf_gap": -1.0, "q_idf_rank_rr": 0.0,
           "quote_q_idf_overlap": 0.0}
    if cited:
        best = max(cited)
        out["q_idf_overlap"] = best
        out["q_idf_gap"] = best - max(pool)
        out["q_idf_rank_rr"] = 1.0 / (1 + sum(1 for v in pool if v > best))
    quote_terms = [t for q in quotes for t in tokens(q)]
    out["quote_q_idf_overlap"] = weighted_overlap(q_terms, quote_terms, idf, default)
    return out


def labelled_features(item: LabelledStep) -> dict[str, float]:
    return step_features(question=item.question, step_index=item.step.index,
                         candidate=item.chosen, excerpts=item.step.excerpts)


# ---------------------------------------------------------------- metrics

def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    pos = [s for y, s in zip(labels, scores) if y]
    neg = [s for y, s in zip(labels, scores) if not y]
    if not pos or not neg:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(list(labels), list(scores)))


def agreement(labels: Sequence[int], probs: Sequence[float]) -> dict:
    n = len(labels)
    correct = sum(int((p >= 0.5) == bool(y)) for y, p in zip(labels, probs))
    auc = roc_auc(labels, probs)
    return {"n": n, "accuracy": round(correct / n, 4) if n else None,
            "auc": round(auc, 4) if auc is not None else None,
            "positive_rate": round(sum(labels) / n, 4) if n else None}


@dataclass
class VerifierReport:
    n_train: int
    n_heldout: int
    heldout: dict
    per_step: dict[str, dict]
    weights: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"n_train": self.n_train, "n_heldout": self.n_heldout, "heldout": self.heldout,
                "per_step": self.per_step, "weights": self.weights}


def turns_in_order(items: Sequence[LabelledStep]) -> list[str]:
    """Turn ids ordered by their question (then id): turn ids are random, so ordering by content
    keeps the held-out split, and the metrics reported from it, the same from run to run."""
    key: dict[str, tuple[str, str]] = {}
    for i in items:
        key.setdefault(i.turn_id, (i.question, i.turn_id))
    return sorted(key, key=key.__getitem__)


def _split_by_turn(items: Sequence[LabelledStep], heldout_share: float,
                   seed: int) -> tuple[list[LabelledStep], list[LabelledStep]]:
    turns = turns_in_order(items)
    random.Random(seed).shuffle(turns)
    n_held = int(round(len(turns) * heldout_share))
    held = set(turns[:n_held])
    return ([i for i in items if i.turn_id not in held], [i for i in items if i.turn_id in held])


def train_verifier(items: Sequence[LabelledStep], *, heldout_share: float = 0.25, seed: int = 0,
                   c: float = 0.5) -> tuple[LinearModel, VerifierReport]:
    """Fit on labelled steps; metrics come from a held-out share of turns, the model from all of them."""
    if not items:
        raise ValueError("no labelled steps: review some steps before tuning the verifier")
    train, held = _split_by_turn(items, heldout_share, seed)
    per_step: dict[str, dict] = {}
    heldout: dict = {"n": 0, "accuracy": None, "auc": None, "positive_rate": None}
    if train and held:
        probe = LinearModel.fit([labelled_features(i) for i in train], [int(i.good) for i in train], c=c)
        probs = probe.predict_proba([labelled_features(i) for i in held]).tolist()
        labels = [int(i.good) for i in held]
        heldout = agreement(labels, probs)
        names = sorted({(i.step.index, i.step.name) for i in held})
        for index, name in names:
            idx = [k for k, i in enumerate(held) if i.step.index == index]
            per_step[f"{index}:{name}"] = agreement([labels[k] for k in idx], [probs[k] for k in idx])
    model = LinearModel.fit([labelled_features(i) for i in items], [int(i.good) for i in items], c=c)
    model.extra["heldout"] = heldout
    return model, VerifierReport(len(train), len(held), heldout, per_step, model.weights())


# ---------------------------------------------------------------- using it

class VerifierScorer:
    """`domain.StepScorer`: P(good step) from the learned verifier."""

    def __init__(self, model: LinearModel, *, prelabel_confidence: float = 0.9,
                 prelabel_enabled: bool = False) -> None:
        self.model = model
        self.prelabel_confidence = prelabel_confidence
        self.prelabel_enabled = prelabel_enabled

    def score(self, *, question: str, step: ProcedureStep, step_index: int,
              candidate: Candidate, excerpts: Sequence[Excerpt]) -> float:
        feats = step_features(question=question, step_index=step_index, candidate=candidate,
                              excerpts=excerpts)
        return float(self.model.predict_proba([feats])[0])

    def score_many(self, rows: Sequence[Mapping[str, float]]) -> list[float]:
        return self.model.predict_proba(rows).tolist()

    @staticmethod
    def uncertainty(probability: float) -> float:
        """1 at p=0.5, 0 at p in {0, 1}: the review queue shows the least certain steps first."""
        return 1.0 - abs(2.0 * probability - 1.0)

    def prelabel(self, step_id: str, probability: float, *, reviewer: str = "verifier") -> Review | None:
        """A machine review (+1 / -1) when pre-labelling is enabled and the verifier is confident."""
        if not self.prelabel_enabled:
            return None
        if probability >= self.prelabel_confidence:
            rating = 1
        elif probability <= 1.0 - self.prelabel_confidence:
            rating = -1
        else:
            return None
        return Review(step_id=step_id, reviewer=reviewer, kind=ReviewKind.editor, rating=rating,
                      source=ReviewSource.machine)


def prelabel_allowed(report: Mapping, *, min_accuracy: float | None, min_auc: float | None,
                     min_heldout: int = 30) -> bool:
    """Does a snapshot's held-out agreement pass the lab's threshold (None = pre-labelling off)?"""
    if min_accuracy is None and min_auc is None:
        return False
    held = report.get("heldout") or {}
    if (held.get("n") or 0) < min_heldout:
        return False
    if min_accuracy is not None and (held.get("accuracy") is None or held["accuracy"] < min_accuracy):
        return False
    if min_auc is not None and (held.get("auc") is None or held["auc"] < min_auc):
        return False
    return True
