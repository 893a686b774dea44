"""The FairytaleQA feedback-loop evaluation: simulate reviews on train, tune, measure on val.

In one run, on the reported split and the same per-story retrievers (the production
retriever class, ``app.library.build_section_index``):

- the untuned retriever's own ranking, top hit as is (the first baseline);
- the candidate-oracle ceiling: a question counts when any best-of-N candidate of its
  first step cites evidence (what a perfect step scorer could reach);
- the untuned engine (offline extractive backend, grounding scorer);
- the tuned curve: for each review count the first N simulated step reviews (the
  untuned bot answering shuffled *train* questions, rated by `SimulatedEditor`) train a
  snapshot; the tuned bot answers every question.  Each tuned point is run for several
  seeds (which train questions are reviewed, label noise, corrections) and averaged.

Per question: evidence hit of the first excerpt the steps cite (R@1) and of the first
three (R@3), ROUGE-L F1 and token F1 of the answer's conclusion against the gold
answers (best over annotators).  R@1 gains carry a 95% bootstrap interval over questions.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from app.domain import Retriever, ReviewSource, Turn
from app.tuning.fairytaleqa import QA, SimulatedEditor, StoryData, cited_ids, storyteller, turn_cited_ids
from app.tuning.labels import LabelledStep
from app.tuning.text import rouge_l, token_f1
from app.tuning.tune import TrainedParts, train_parts

DEFAULT_COUNTS = (0, 100, 300, 1000, 3000)
Progress = Callable[[str, int, int], None]          # (phase, done, total)
PER_QUESTION = ("R@1", "R@3", "ROUGE-L", "F1", "oracle", "grounded", "chosen_good", "first_good")


@dataclass
class Indexes:
    """One retriever per story (the production retriever class), built on first use."""
    embedder: object | None
    built: dict[str, Retriever] = field(default_factory=dict)
    vectors: object | None = None

    def __post_init__(self) -> None:
        if self.embedder is not None and self.vectors is None:
            from app.evidence import SentenceVectors

            self.vectors = SentenceVectors(self.embedder)

    def get(self, story: StoryData) -> Retriever:
        if story.name not in self.built:
            from app.library import build_section_index

            self.built[story.name] = build_section_index(story.sections, "en", self.embedder,
                                                         book_id=story.name)
        return self.built[story.name]


def make_engine(retriever: Retriever, *, parts: TrainedParts | None, candidates: int, top_k: int = 5,
                vectors=None):
    from app.bots.backends.extractive import ExtractiveBackend
    from app.bots.engine import Engine
    from app.tuning.reranker import reranked
    from app.tuning.verifier import VerifierScorer

    scorer = exemplars = None
    if parts is not None:
        if parts.reranker is not None:
            retriever = reranked(retriever, parts.reranker, parts.priors, pool_factor=3)
        if parts.verifier is not None:
            scorer = VerifierScorer(parts.verifier)
        if parts.exemplars is not None and len(parts.exemplars):
            exemplars = parts.exemplars
    return Engine(retriever, ExtractiveBackend(vectors=vectors), scorer=scorer, exemplars=exemplars,
                  candidates=candidates, top_k=top_k, vectors=vectors)


def answer_all(questions: Sequence[tuple[StoryData, QA]], indexes: Indexes, *,
               parts: TrainedParts | None, candidates: int, top_k: int = 5,
               on_progress: Progress | None = None, phase: str = "answering") -> list[tuple[QA, Turn]]:
    out: list[tuple[QA, Turn]] = []
    engines: dict[str, object] = {}
    for n, (story, qa) in enumerate(questions, start=1):
        engine = engines.get(story.name)
        if engine is None:
            engine = engines[story.name] = make_engine(indexes.get(story), parts=parts, candidates=candidates,
                                                       top_k=top_k, vectors=indexes.vectors)
        turn = engine.answer(storyteller(story.name), qa.question, conversation_id=f"eval-{story.name}")
        out.append((qa, turn))
        if on_progress:
            on_progress(phase, n, len(questions))
    return out


# ---------------------------------------------------------------- per-question scores

def question_scores(qa: QA, turn: Turn) -> dict[str, float]:
    from app.bots.backends.extractive import conclusion

    ranked = turn_cited_ids(turn)
    final = conclusion(turn.question, turn.steps)
    first = turn.steps[0] if turn.steps else None
    pool = {c.excerpt_id for cand in (first.candidates if first else []) for c in cand.citations if c.valid}
    multi = [s for s in turn.steps if len(s.candidates) > 1]
    return {"R@1": float(bool(set(ranked[:1]) & qa.evidence)),
            "R@3": float(bool(set(ranked[:3]) & qa.evidence)),
            "ROUGE-L": max((rouge_l(final, a) for a in qa.answers), default=0.0),
            "F1": max((token_f1(final, a) for a in qa.answers), default=0.0),
            "oracle": float(bool(pool & qa.evidence)),
            "grounded": sum(s.grounded for s in turn.steps) / len(turn.steps) if turn.steps else 0.0,
            "chosen_good": (sum(bool(set(cited_ids(s)) & qa.evidence) for s in multi) / len(multi)
                            if multi else 0.0),
            "first_good": (sum(bool({c.excerpt_id for c in s.candidates[0].citations if c.valid}
                                    & qa.evidence) for s in multi) / len(multi) if multi else 0.0)}


def retriever_scores(questions: Sequence[tuple[StoryData, QA]], indexes: Indexes,
                     top_k: int = 5) -> list[dict[str, float]]:
    """The untuned retriever's own ranking for the bare question, top hit as is."""
    out = []
    for story, qa in questions:
        ids = [e.id for e in indexes.get(story).retrieve(qa.question, top_k=top_k, book_ids=[story.name])]
        out.append({"R@1": float(bool(set(ids[:1]) & qa.evidence)),
                    "R@3": float(bool(set(ids[:3]) & qa.evidence))})
    return out


def mean_scores(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = rows[0].keys() if rows else ()
    return {k: float(np.mean([r[k] for r in rows])) for k in keys}


def bootstrap_interval(values: Sequence[float], *, resamples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean over questions (values: one number per question)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(resamples, arr.size))].mean(axis=1)
    lo, hi = np.percentile(means, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


# ---------------------------------------------------------------- simulated reviews

def labelled_from_turn(turn: Turn, qa: QA, editor: SimulatedEditor) -> list[LabelledStep]:
    from app.bots.backends.base import step_text
    from app.bots.engine import build_query
    from app.bots.graph import procedure_step

    character = storyteller(qa.story)
    out = []
    for step, review in zip(turn.steps, editor.review_turn(turn, qa.evidence, qa.answers)):
        proc = procedure_step(character.procedure, step)
        query = build_query(qa.question, proc, turn.steps[:step.index])
        out.append(LabelledStep(character.id, qa.question, step, review.rating, ReviewSource.human,
                                review.kind, review.fault_tags, review.correction, query=query,
                                step_text=step_text(proc)))
    return out


def simulate_reviews(stories: Sequence[StoryData], indexes: Indexes, n_reviews: int, *,
                     editor: SimulatedEditor, candidates: int, seed: int = 0,
                     on_progress: Progress | None = None) -> list[LabelledStep]:
    """The untuned bot answers shuffled train questions; the editor rates every step; first N kept."""
    pool = [(s, qa) for s in stories for qa in s.questions]
    random.Random(seed).shuffle(pool)
    n_turns = math.ceil(n_reviews / len(storyteller("x").procedure)) if n_reviews else 0
    if n_turns > len(pool):
        raise ValueError(f"{n_reviews} reviews need {n_turns} train questions; the train split given "
                         f"has {len(pool)}")
    results = answer_all(pool[:n_turns], indexes, parts=None, candidates=candidates, on_progress=on_progress,
                         phase=f"simulating reviews (seed {seed})")
    labelled: list[LabelledStep] = []
    for qa, turn in results:
        labelled.extend(labelled_from_turn(turn, qa, editor))
    return labelled[:n_reviews]


# ---------------------------------------------------------------- the curve

@dataclass
class CurvePoint:
    reviews: int
    metrics: dict[str, float]                     # mean over seeds (and questions)
    per_question: list[dict[str, float]] = field(default_factory=list)   # mean over seeds
    seeds: list[dict[str, float]] = field(default_factory=list)          # per-seed means
    tuning: dict = field(default_factory=dict)
    gated: dict[str, float] = field(default_factory=dict)   # what readers get: tuned only where the gate activates
    activated: int = 0                                       # seeds whose snapshot the gate activated


@dataclass
class Curve:
    questions: int
    retriever: dict[str, float]
    retriever_rows: list[dict[str, float]]
    points: list[CurvePoint]

    def gain(self, point: CurvePoint, key: str = "R@1") -> tuple[float, tuple[float, float]]:
        """Points above the retriever, with a 95% bootstrap interval over questions."""
        diff = [p[key] - r[key] for p, r in zip(point.per_question, self.retriever_rows)]
        lo, hi = bootstrap_interval(diff)
        return 100 * float(np.mean(diff)), (100 * lo, 100 * hi)


def learning_curve(val: Sequence[StoryData], train: Sequence[StoryData], indexes: Indexes, *,
                   counts: Sequence[int] = DEFAULT_COUNTS, candidates: int = 4, noise: float = 0.0,
                   seeds: Sequence[int] = (0,), corrections: float = 0.5,
                   on_progress: Progress | None = None,
                   labelled: Sequence[LabelledStep] | None = None) -> tuple[Curve, TrainedParts | None]:
    """The whole comparison on ``val``; ``labelled`` (one seed's reviews) skips the simulation."""
    counts = sorted(set(counts))
    questions = [(s, qa) for s in val for qa in s.questions]
    baseline = retriever_scores(questions, indexes)
    untuned = [question_scores(qa, turn) for qa, turn in
               answer_all(questions, indexes, parts=None, candidates=candidates, on_progress=on_progress,
                          phase="val, untuned")]
    points = [CurvePoint(0, mean_scores(untuned), untuned, [mean_scores(untuned)])]
    tuned_counts = [n for n in counts if n > 0]
    per_seed: dict[int, list[list[dict[str, float]]]] = {n: [] for n in tuned_counts}
    gated: dict[int, list[list[dict[str, float]]]] = {n: [] for n in tuned_counts}
    activated: dict[int, int] = {n: 0 for n in tuned_counts}
    tuning: dict[int, dict] = {}
    last: TrainedParts | None = None
    for seed in seeds if labelled is None else (0,):
        reviews = labelled
        if reviews is None:
            editor = SimulatedEditor(noise, seed, corrections=corrections)
            reviews = simulate_reviews(train, indexes, max(tuned_counts, default=0), editor=editor,
                                       candidates=candidates, seed=seed, on_progress=on_progress)
        for n in tuned_counts:
            parts = train_parts(reviews[:n], vectors=indexes.vectors)
            results = answer_all(questions, indexes, parts=parts, candidates=candidates,
                                 on_progress=on_progress, phase=f"val, {n} reviews (seed {seed})")
            scores = [question_scores(qa, turn) for qa, turn in results]
            per_seed[n].append(scores)
            live = gate_against_untuned(parts)
            activated[n] += live
            gated[n].append(scores if live else untuned)
            tuning.setdefault(n, parts.metrics)
            last = parts
    for n in tuned_counts:
        runs = per_seed[n]
        averaged = [{k: float(np.mean([run[i][k] for run in runs])) for k in PER_QUESTION}
                    for i in range(len(questions))]
        points.append(CurvePoint(n, mean_scores(averaged), averaged, [mean_scores(r) for r in runs],
                                 tuning.get(n, {}), mean_scores([row for run in gated[n] for row in run]),
                                 activated[n]))
    return Curve(len(questions), mean_scores(baseline), baseline, points), last


def gate_against_untuned(parts: TrainedParts) -> bool:
    """Would `bookbot tune` activate these parts over the untuned bot (held-out reviews)?"""
    from app.tuning.gate import baseline_scores, decide

    report = parts.verifier_report
    if parts.verifier is None or report is None:
        return False
    return decide(report.heldout_items, report.heldout_probs, baseline_scores(report.heldout_items, None),
                  baseline="untuned").activate


def plot_curve(curve: Curve, path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = curve.points
    xs = [p.reviews for p in points]
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=120)
    for key, label, color in (("R@1", "evidence recall@1 (engine)", "tab:blue"),
                              ("R@3", "evidence recall@3 (engine)", "tab:orange"),
                              ("ROUGE-L", "conclusion ROUGE-L F1", "tab:green")):
        ys = [p.metrics[key] for p in points]
        ax.plot(xs, ys, marker="o", label=label, color=color)
        if len(points[-1].seeds) > 1:
            lo = [min(s[key] for s in p.seeds) for p in points]
            hi = [max(s[key] for s in p.seeds) for p in points]
            ax.fill_between(xs, lo, hi, color=color, alpha=0.15)
    ax.axhline(curve.retriever["R@1"], color="tab:blue", linestyle=":", linewidth=1.2,
               label="retriever alone, recall@1")
    ax.axhline(curve.retriever["R@3"], color="tab:orange", linestyle=":", linewidth=1.2,
               label="retriever alone, recall@3")
    ax.axhline(points[0].metrics["oracle"], color="grey", linestyle="--", linewidth=1,
               label="candidate oracle (ceiling)")
    ax.set_xscale("symlog", linthresh=100)
    ax.set_xlim(-5, max(xs) * 1.15 if max(xs) > 0 else 1)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel("simulated editor step reviews (train split)")
    ax.set_ylabel("share of questions (reported split)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
