"""The learned retrieval re-ranker and the `domain.Retriever` wrapper that applies it.

Training data: excerpts that good steps cited (positives) and excerpts that
steps rated -1 for a wrong / not-in-book excerpt cited (negatives).  Features
per (query, excerpt) are read off the base hybrid retriever's pool: fused, dense
and BM25 scores (relative to the pool's best) and ranks, query–excerpt word and
bigram overlap (plain and idf-weighted within the pool), excerpt length, and the
labels the excerpt has gathered from earlier reviews (leaving out the
example's own turn in training).  The wrapper fetches a wider pool (``pool_factor`` × top_k) from the
base retriever and returns its top_k by the learned score — only where reviews judged some excerpt
of that pool: elsewhere (a book nobody reviewed) the retriever's order stands.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from app.domain import Excerpt, Retriever
from app.tuning.labels import LabelledStep
from app.tuning.linear import LinearModel
from app.tuning.text import (bigram_overlap, content_tokens, idf_for_texts, overlap, tokens,
                             weighted_overlap)

RERANKER_MARGIN = 0.02     # held-out AUC points a re-ranker must gain over the retriever's own order


def _inv(rank: int | None) -> float:
    return 1.0 / rank if rank else 0.0


def pool_features(query: str, pool: Sequence[Excerpt],
                  priors: Mapping[str, tuple[int, int]] | None = None) -> list[dict[str, float]]:
    """One feature dict per excerpt of a retrieved pool (same order as the pool)."""
    priors = priors or {}
    q_all = tokens(query)
    q_terms = content_tokens(query)
    texts = [tokens(e.text) for e in pool]
    idf = idf_for_texts(tuple(e.text for e in pool))
    default_idf = math.log(len(pool) + 1.0) if pool else 1.0
    scores = [e.scores for e in pool]
    max_fused = max((s.fused for s in scores if s), default=0.0) or 1.0
    max_bm25 = max((s.bm25 or 0.0 for s in scores if s), default=0.0) or 1.0
    max_dense = max((s.dense for s in scores if s and s.dense is not None), default=0.0)
    fused_order = sorted(range(len(pool)), key=lambda i: -(scores[i].fused if scores[i] else 0.0))
    fused_rank = {i: r + 1 for r, i in enumerate(fused_order)}
    rows: list[dict[str, float]] = []
    for i, ex in enumerate(pool):
        s = scores[i]
        good, bad = priors.get(ex.id, (0, 0))
        row = {
            "fused_ratio": (s.fused / max_fused) if s else 0.0,
            "fused_rr": 1.0 / fused_rank[i],
            "dense": (s.dense if s and s.dense is not None else 0.0),
            "dense_gap": ((s.dense - max_dense) if s and s.dense is not None else -1.0),
            "dense_missing": 0.0 if s and s.dense is not None else 1.0,
            "dense_rr": _inv(s.dense_rank if s else None),
            "bm25_ratio": ((s.bm25 or 0.0) / max_bm25) if s else 0.0,
            "bm25_missing": 0.0 if s and s.bm25 is not None else 1.0,
            "bm25_rr": _inv(s.bm25_rank if s else None),
            "overlap": overlap(q_terms, texts[i]),
            "idf_overlap": weighted_overlap(q_terms, texts[i], idf, default_idf),
            "bigram_overlap": bigram_overlap(q_all, texts[i]),
            "log_len": math.log1p(len(texts[i])),
            "prior_good": math.log1p(good),
            "prior_bad": math.log1p(bad),
            "prior_net": (good - bad) / (good + bad + 1.0),
        }
        rows.append(row)
    return rows


@dataclass
class RerankerReport:
    n_examples: int
    n_positive: int
    n_negative: int
    excerpts_with_priors: int
    heldout: dict = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def excerpt_priors(items: Sequence[LabelledStep]) -> dict[str, tuple[int, int]]:
    """(good, bad) citation counts per excerpt id from human reviews."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for item in items:
        label = item.excerpt_label
        if label is None:
            continue
        for eid in item.cited_ids:
            counts[eid][0 if label > 0 else 1] += 1
    return {k: (v[0], v[1]) for k, v in counts.items()}


def training_rows(items: Sequence[LabelledStep], priors: Mapping[str, tuple[int, int]], *,
                  leave_turn_out: bool = True) -> tuple[list[dict[str, float]], list[int], list[str]]:
    """(features, 0/1 label, turn id) per cited excerpt of a labelled step.

    With ``leave_turn_out`` an excerpt's prior leaves out the labels its own turn gave it (a
    turn's steps often cite the same excerpt), so the prior never contains the answer."""
    own: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    if leave_turn_out:
        for item in items:
            label = item.excerpt_label
            if label is not None:
                for eid in item.cited_ids:
                    own[(item.turn_id, eid)][0 if label > 0 else 1] += 1
    rows: list[dict[str, float]] = []
    labels: list[int] = []
    groups: list[str] = []
    for item in items:
        label = item.excerpt_label
        if label is None or not item.step.excerpts:
            continue
        cited = set(item.cited_ids)
        if not cited:
            continue
        query = item.query or item.question
        pool = list(item.step.excerpts)
        adjusted = dict(priors)
        for eid in (e.id for e in pool):
            mine = own.get((item.turn_id, eid))
            if mine and eid in adjusted:
                good, bad = adjusted[eid]
                adjusted[eid] = (max(0, good - mine[0]), max(0, bad - mine[1]))
        feats = pool_features(query, pool, adjusted)
        for ex, row in zip(pool, feats):
            if ex.id in cited:
                rows.append(row)
                labels.append(1 if label > 0 else 0)
                groups.append(item.turn_id)
    return rows, labels, groups


PRIOR_FEATURES = ("prior_good", "prior_bad", "prior_net")


def _combine(content: LinearModel, prior_stage: LinearModel) -> LinearModel:
    """One linear model: a * content logit + prior weights (stage two is fitted on both)."""
    names = list(content.feature_names) + [n for n in PRIOR_FEATURES if n not in content.feature_names]
    idx = {n: i for i, n in enumerate(prior_stage.feature_names)}
    a = prior_stage.coef[idx["content"]] / prior_stage.scale[idx["content"]] if "content" in idx else 1.0
    # content logit = sum(c_i * (x_i - m_i) / s_i) + b ; stage two standardises it once more
    coef = [a * c for c in content.coef]
    mean, scale = list(content.mean), list(content.scale)
    intercept = prior_stage.intercept + a * (content.intercept - prior_stage.mean[idx["content"]]) \
        if "content" in idx else content.intercept
    for n in PRIOR_FEATURES:
        if n in content.feature_names:
            continue
        if n in idx:
            coef.append(prior_stage.coef[idx[n]])
            mean.append(prior_stage.mean[idx[n]])
            scale.append(prior_stage.scale[idx[n]])
        else:
            coef.append(0.0)
            mean.append(0.0)
            scale.append(1.0)
    return LinearModel(names, mean, scale, coef, intercept, n_train=content.n_train,
                       positive_rate=content.positive_rate, kind="logistic-two-stage")


def fit_two_stage(rows: Sequence[Mapping[str, float]], labels: Sequence[int], *, c: float = 1.0) -> LinearModel:
    """Content features first (what carries over to excerpts nobody has reviewed), then the
    excerpt's gathered labels (net approval) on top with a non-negative weight, so priors can
    neither crowd the content weights out nor, fitted on few labels, point the wrong way."""
    content_rows = [{k: v for k, v in r.items() if k not in PRIOR_FEATURES} for r in rows]
    content = LinearModel.fit(content_rows, labels, c=c)
    logits = content.decision(content_rows).tolist()
    stage_rows = [{"content": z, "prior_net": r.get("prior_net", 0.0)} for z, r in zip(logits, rows)]
    if len(set(labels)) < 2:
        return content
    stage = LinearModel.fit(stage_rows, labels, c=c)
    # monotone in the gathered labels: more approvals never push an excerpt down
    k = stage.feature_names.index("prior_net")
    stage.coef[k] = max(0.0, stage.coef[k])
    return _combine(content, stage)


def train_reranker(items: Sequence[LabelledStep], *, c: float = 1.0) -> tuple[LinearModel, dict[str, tuple[int, int]], RerankerReport]:
    priors = excerpt_priors(items)
    rows, labels, groups = training_rows(items, priors)
    if not rows:
        raise ValueError("no excerpt labels: the re-ranker needs steps rated +1, or -1 with a "
                         "'wrong_excerpt' / 'not_in_book' fault")
    if len(set(labels)) < 2:
        raise ValueError(f"all {len(labels)} excerpt labels are {'good' if labels[0] else 'bad'}: "
                         "the re-ranker needs both cited-and-approved and wrong-excerpt steps")
    heldout: dict = {}
    from app.tuning.verifier import turns_in_order

    with_rows = set(groups)
    turns = [t for t in turns_in_order(items) if t in with_rows]
    if len(turns) >= 8:
        # held-out turns see only the priors the training turns gathered
        held = set(turns[::4])
        train_items = [i for i in items if i.turn_id not in held]
        train_priors = excerpt_priors(train_items)
        tr_rows, tr_labels, _ = training_rows(train_items, train_priors)
        te_rows, te_labels, _ = training_rows([i for i in items if i.turn_id in held], train_priors,
                                              leave_turn_out=False)
        if len(set(tr_labels)) == 2 and te_rows:
            from app.tuning.verifier import agreement, roc_auc

            probe = fit_two_stage(tr_rows, tr_labels, c=c)
            heldout = agreement(te_labels, probe.predict_proba(te_rows).tolist())
            base_auc = roc_auc(te_labels, [r["fused_ratio"] for r in te_rows])
            heldout["retriever_auc"] = round(base_auc, 4) if base_auc is not None else None
    model = fit_two_stage(rows, labels, c=c)
    report = RerankerReport(len(rows), sum(labels), len(labels) - sum(labels),
                            len(priors), heldout, model.weights())
    return model, priors, report


def beats_retriever(report: RerankerReport, margin: float = RERANKER_MARGIN) -> tuple[bool, str]:
    """Does the re-ranker order held-out reviewed excerpts better than the retriever's own scores?"""
    new, old = report.heldout.get("auc"), report.heldout.get("retriever_auc")
    if new is None or old is None:
        return False, "too few reviewed turns to show it orders excerpts better than the retriever"
    if new <= old + margin:
        return False, (f"held-out AUC {new:.3f} is not above the retriever's own {old:.3f} by {margin}: "
                       "the retriever's order is kept")
    return True, f"held-out AUC {new:.3f} vs the retriever's {old:.3f}"


class ExcerptReranker:
    """The learned re-ranker as ``rerank(query, excerpts)``: what the library's LlamaIndex node
    postprocessor (``app.library.postprocessors.ExcerptRerankerPostprocessor``) calls."""

    def __init__(self, model: LinearModel, priors: Mapping[str, tuple[int, int]] | None = None) -> None:
        self.model = model
        self.priors = dict(priors or {})

    def rerank(self, query: str, excerpts: list[Excerpt]) -> list[Excerpt]:
        """The pool by learned score; a pool in which reviews judged no excerpt keeps the
        retriever's order (on books nobody reviewed, the content features alone moved
        FairytaleQA R@3 by -0.3 on train stories and novel R@1 by -1.7: docs/tuning.md)."""
        if len(excerpts) <= 1 or not any(e.id in self.priors for e in excerpts):
            return list(excerpts)
        scores = self.model.decision(pool_features(query, excerpts, self.priors)).tolist()
        return [excerpts[i] for i in sorted(range(len(excerpts)), key=lambda i: (-scores[i], i))]


def reranked(retriever: Retriever, model: LinearModel, priors: Mapping[str, tuple[int, int]] | None = None,
             *, pool_factor: int = 3) -> Retriever:
    """``retriever`` with the learned re-ranker: as a LlamaIndex node postprocessor on the library's
    retriever (``with_postprocessors``), else as a `RerankingRetriever` wrapper (any `domain.Retriever`)."""
    if hasattr(retriever, "with_postprocessors"):
        from app.library.postprocessors import ExcerptRerankerPostprocessor

        return retriever.with_postprocessors([ExcerptRerankerPostprocessor(ExcerptReranker(model, priors))],
                                             pool_factor=pool_factor)
    return RerankingRetriever(retriever, model, priors, pool_factor=pool_factor)


class RerankingRetriever:
    """A `domain.Retriever` that re-scores the base retriever's wider pool with the learned model."""

    def __init__(self, base: Retriever, model: LinearModel,
                 priors: Mapping[str, tuple[int, int]] | None = None, *, pool_factor: int = 3) -> None:
        self.base = base
        self.model = model
        self.priors = dict(priors or {})
        self.pool_factor = max(1, pool_factor)

    def retrieve(self, query: str, *, top_k: int = 5,
                 book_ids: Sequence[str] | None = None) -> list[Excerpt]:
        pool = self.base.retrieve(query, top_k=top_k * self.pool_factor, book_ids=book_ids)
        return ExcerptReranker(self.model, self.priors).rerank(query, pool)[:top_k]

    def get(self, excerpt_id: str) -> Excerpt | None:
        return self.base.get(excerpt_id)

    def __getattr__(self, name: str):
        # anything else the base offers (e.g. book listing) passes through
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)
