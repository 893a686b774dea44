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

import numpy as np

from app.analyzer import normalize
from app.bots.grounding import GroundingScorer, candidate_features, grounding_score
from app.domain import Candidate, Citation, Excerpt, ProcedureStep, ReviewKind, ReviewSource, Review
from app.evidence import Sentence, SentencePool, SentenceVectors
from app.tuning.labels import LabelledStep
from app.tuning.linear import LinearModel
from app.tuning.crossval import Examples, choose_l2
from app.tuning.listwise import CandidateList, fit_listwise
from app.tuning.text import content_tokens, overlap, tokens

MAX_STEP_INDEX = 6
READER_WEIGHT = 0.5          # a reader's thumb counts half an editor's rating
GROUNDING_KEYS = ("token_overlap", "quote_coverage", "best_cited_rank_recip", "valid_fraction")
UNTUNED = "untuned_score"    # the untuned scorer's own score: what the fit starts from and is pulled back to
CARD_SCALE_LEVELS = 21       # quantiles matched between P(good) and the untuned confidence


def step_features(*, question: str, step_index: int, candidate: Candidate,
                  excerpts: Sequence[Excerpt]) -> dict[str, float]:
    """Named features of one candidate step; identical at training and answer time.

    Every feature means the same in any book (no excerpt id, no book's words): the
    ``ev_*`` sentence-evidence features the engine stored (``app.evidence``), a few
    grounding numbers, the step's place in the procedure and the text's length."""
    f: dict[str, float] = {}
    stored = candidate.features or {}
    for name, value in stored.items():
        if name.startswith("ev_") or name in GROUNDING_KEYS:
            try:
                v = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(v):
                f[name] = v
    cits = candidate.citations or []
    valid = [c for c in cits if c.valid]
    f[f"step_{min(step_index, MAX_STEP_INDEX)}"] = 1.0
    f["grounded"] = 1.0 if valid else 0.0
    f["valid_share"] = len(valid) / len(cits) if cits else 0.0
    f["log_len"] = math.log1p(len(tokens(candidate.text)))
    f["q_text_overlap"] = overlap(content_tokens(question), content_tokens(candidate.text))
    f[UNTUNED] = grounding_score({**stored, "grounded": f["grounded"]})
    return f


def retrieval_order(excerpts: Sequence[Excerpt]) -> list[Excerpt]:
    """A stored step lists its cited excerpts first; evidence ranks need the retrieval order."""
    return sorted(excerpts, key=lambda e: -(e.scores.fused if e.scores else 0.0))


def _with_evidence(cand: Candidate, pool: SentencePool) -> Candidate:
    """The candidate with its ``ev_*`` features recomputed on ``pool`` (as the engine computes them)."""
    return Candidate(text=cand.text, citations=list(cand.citations), score=cand.score, chosen=cand.chosen,
                     features={**(cand.features or {}), **pool.candidate_features(
                         [(c.excerpt_id, c.quote) for c in cand.citations if c.valid])})


def review_examples(item: LabelledStep, vectors: SentenceVectors | None = None
                    ) -> tuple[CandidateList | None, list[tuple[dict[str, float], int, float]]]:
    """What one review teaches: the step's candidate list with the preferred choice, and the
    (features, 0/1 label, weight) rows of the reviewed candidates.

    An editor's +1/0 prefers the kept candidate; a -1 with a correction that quotes a sentence
    of the step's excerpts prefers that sentence (added to the list when no sibling quoted it),
    and the correction is also a positive row; a -1 alone is a label for the kept candidate but
    no choice (it does not say which sibling was right: in train-story experiments, reading it as
    "any sibling" taught the verifier to avoid relevant sentences).  A reader's thumb counts
    ``READER_WEIGHT``."""
    excerpts = retrieval_order(item.step.excerpts)
    pool = SentencePool(item.question, excerpts, step_text=item.step_text, vectors=vectors)
    weight = READER_WEIGHT if item.kind is ReviewKind.reader else 1.0
    index = item.step.index
    cands = [_with_evidence(c, pool) for c in item.step.candidates] or [_with_evidence(item.chosen, pool)]
    chosen = next((k for k, c in enumerate(cands) if c.chosen), 0)
    rows = [step_features(question=item.question, step_index=index, candidate=c, excerpts=excerpts)
            for c in cands]
    examples = [(rows[chosen], int(item.good), weight)]
    target, exact = [chosen], True
    preferred = correction_sentence(item.correction, pool) if not item.good else None
    if preferred is not None:
        at = next((k for k, c in enumerate(cands) for cit in c.citations
                   if cit.valid and cit.excerpt_id == preferred.excerpt.id
                   and normalize(preferred.text).startswith(normalize(cit.quote).rstrip(" .…"))), None)
        if at is None:
            cand = Candidate(text=_as_sibling(cands[chosen], preferred.text, item.correction),
                             citations=[Citation(preferred.excerpt.id, preferred.text, valid=True)])
            cand.features = {**candidate_features(cand, excerpts),
                             **pool.candidate_features([(preferred.excerpt.id, preferred.text)])}
            rows.append(step_features(question=item.question, step_index=index, candidate=cand,
                                      excerpts=excerpts))
            at = len(rows) - 1
        examples.append((rows[at], 1, 1.0))
        target = [at]
    elif not item.good:     # "not this one" does not say which sibling: a label, but no choice to learn
        return None, examples
    return CandidateList(rows, target, exact, weight), examples


def _as_sibling(kept: Candidate, sentence: str, correction: str) -> str:
    """The corrected sentence worded as the kept candidate was (its quote swapped for the sentence),
    so that text-length and overlap features compare it with its siblings, not with bare prose."""
    quote = next((c.quote for c in kept.citations if c.valid and c.quote and c.quote in kept.text), None)
    return kept.text.replace(quote, sentence.strip(), 1) if quote else correction


def labelled_rows(item: LabelledStep, vectors: SentenceVectors | None = None
                  ) -> list[tuple[dict[str, float], int, float]]:
    """(features, 0/1 label, weight) of the candidates a review judged (see `review_examples`)."""
    return review_examples(item, vectors)[1]


def correction_sentence(correction: str, pool: SentencePool) -> Sentence | None:
    """The pool sentence an editor's correction quotes (or mostly repeats), if any."""
    text = normalize(correction)
    if len(text) < 8:
        return None
    best, best_share = None, 0.0
    corr_terms = set(content_tokens(correction))
    for sent in pool.sentences:
        if normalize(sent.text).strip(" \"'.,;:!?") in text:
            return sent
        terms_ = set(content_tokens(sent.text))
        share = len(terms_ & corr_terms) / len(terms_) if terms_ else 0.0
        if share > best_share:
            best, best_share = sent, share
    return best if best_share >= 0.7 else None


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
    heldout_items: list[LabelledStep] = field(default_factory=list, repr=False)   # for the activation gate
    heldout_probs: list[float] = field(default_factory=list, repr=False)
    regularisation: dict = field(default_factory=dict)   # `choose_l2`'s table and choice

    def to_dict(self) -> dict:
        return {"n_train": self.n_train, "n_heldout": self.n_heldout, "heldout": self.heldout,
                "per_step": self.per_step, "weights": self.weights, "regularisation": self.regularisation}


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


def fit_verifier(examples: Examples, *, l2: float | None) -> LinearModel:
    """The listwise verifier on precomputed `review_examples` (``l2=None``: the untuned ranking)."""
    lists = [candidate_list for candidate_list, _ in examples]
    rows = [row for _, rows_ in examples for row in rows_]
    steps = sorted({name for _, rows_ in examples for r, _, _ in rows_ for name in r if name.startswith("step_")})
    model = fit_listwise(lists, rows, l2=l2, anchor=UNTUNED, calibrate=steps)
    model.extra["rows"] = {"reviews": len(examples), "corrections": len(rows) - len(examples)}
    return model


def _turns(items: Sequence[LabelledStep]) -> tuple[list[str], list[str]]:
    """(turn ids in a fixed order, each item's turn id): what cross-validation splits by."""
    return turns_in_order(items), [i.turn_id for i in items]


def train_verifier(items: Sequence[LabelledStep], *, heldout_share: float = 0.25, seed: int = 0,
                   vectors: SentenceVectors | None = None) -> tuple[LinearModel, VerifierReport]:
    """Fit on labelled steps; metrics come from a held-out share of turns, the model from all of them.
    The pull away from the untuned ranking is chosen by cross-validation (`choose_l2`), for the
    probe on its own training turns only, so the held-out metrics the gate reads stay unseen."""
    if not items:
        raise ValueError("no labelled steps: review some steps before tuning the verifier")
    examples = [review_examples(item, vectors) for item in items]
    of_item = {id(item): ex for item, ex in zip(items, examples)}
    train, held = _split_by_turn(items, heldout_share, seed)
    per_step: dict[str, dict] = {}
    heldout: dict = {"n": 0, "accuracy": None, "auc": None, "positive_rate": None}
    probs: list[float] = []
    if train and held:
        train_ex = [of_item[id(i)] for i in train]
        probe = fit_verifier(train_ex, l2=choose_l2(_turns(train), train_ex, fit_verifier, seed=seed)[0])
        feats = [of_item[id(i)][1][0][0] for i in held]
        probs = probe.predict_proba(feats).tolist()
        labels = [int(i.good) for i in held]
        heldout = agreement(labels, probs)
        names = sorted({(i.step.index, i.step.name) for i in held})
        for index, name in names:
            idx = [k for k, i in enumerate(held) if i.step.index == index]
            per_step[f"{index}:{name}"] = agreement([labels[k] for k in idx], [probs[k] for k in idx])
    l2, choice = choose_l2(_turns(items), examples, fit_verifier, seed=seed)
    model = fit_verifier(examples, l2=l2)
    model.extra["card_scale"] = card_scale(model, [rows[0][0] for _, rows in examples])
    model.extra["heldout"] = heldout
    model.extra["regularisation"] = choice
    return model, VerifierReport(len(train), len(held), heldout, per_step, model.weights(),
                                 list(held) if probs else [], probs, choice)


def card_scale(model: LinearModel, kept: Sequence[Mapping[str, float]]) -> dict | None:
    """A monotone map from the verifier's P(good) onto the untuned confidence (grounding score over
    its top) that cards' transition thresholds are written in, matched quantile for quantile over
    the kept steps the verifier was trained on.  A verifier that keeps the untuned ranking then
    takes the untuned paths; one that ranks a step higher gives it a higher confidence."""
    if len(kept) < CARD_SCALE_LEVELS:
        return None
    levels = np.linspace(0.0, 1.0, CARD_SCALE_LEVELS)
    probs = np.quantile(model.predict_proba(kept), levels)
    untuned = np.quantile([GroundingScorer.confidence(r.get(UNTUNED, 0.0)) for r in kept], levels)
    rising = np.concatenate([[True], np.diff(probs) > 1e-9])
    return {"p": probs[rising].round(6).tolist(), "confidence": untuned[rising].round(6).tolist()}


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

    def confidence(self, probability: float) -> float:
        """A step's P(good) on the scale of cards' thresholds (`card_scale`; as is in older snapshots)."""
        scale = self.model.extra.get("card_scale")
        if not scale:
            return min(1.0, max(0.0, float(probability)))
        return float(np.interp(probability, scale["p"], scale["confidence"]))

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
