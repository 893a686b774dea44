"""The FairytaleQA feedback-loop evaluation: simulate reviews on train, tune, measure on val.

For each review count (0, 100, 300, 1000, 3000 by default) the first N
simulated step reviews (collected on the *untuned* bot answering train
questions, in shuffled order) train a snapshot's parts; the tuned bot (re-ranked
retriever + verifier best-of-N + exemplars) then answers every val question with
the offline extractive backend and the real Engine.  Per point: evidence
recall@1/@3 of the excerpts the chosen steps cite, grounded-step share, answer
token-F1 against the gold answers, and the share of steps whose chosen
candidate cites evidence versus the share whose first candidate does.  Count 0
is the untuned bot (hybrid retriever, grounding scorer).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

from app.domain import Retriever, ReviewSource, Turn
from app.tuning.fairytaleqa import QA, SimulatedEditor, StoryData, cited_ids, storyteller
from app.tuning.labels import LabelledStep
from app.tuning.text import token_f1
from app.tuning.tune import TrainedParts, train_parts

DEFAULT_COUNTS = (0, 100, 300, 1000, 3000)
Progress = Callable[[str, int, int], None]          # (phase, done, total)


@dataclass
class Indexes:
    """One in-memory section index per story, built on first use."""
    embedder: object | None
    built: dict[str, Retriever] = field(default_factory=dict)

    def get(self, story: StoryData) -> Retriever:
        if story.name not in self.built:
            from app.library import build_section_index

            self.built[story.name] = build_section_index(story.sections, "en", self.embedder,
                                                         book_id=story.name)
        return self.built[story.name]


def make_engine(retriever: Retriever, *, parts: TrainedParts | None, candidates: int, top_k: int = 5):
    from app.bots.backends.extractive import ExtractiveBackend
    from app.bots.engine import Engine
    from app.tuning.reranker import RerankingRetriever
    from app.tuning.verifier import VerifierScorer

    scorer = exemplars = None
    if parts is not None:
        if parts.reranker is not None:
            retriever = RerankingRetriever(retriever, parts.reranker, parts.priors, pool_factor=3)
        if parts.verifier is not None:
            scorer = VerifierScorer(parts.verifier)
        if parts.exemplars is not None and len(parts.exemplars):
            exemplars = parts.exemplars
    return Engine(retriever, ExtractiveBackend(), scorer=scorer, exemplars=exemplars,
                  candidates=candidates, top_k=top_k)


def answer_all(questions: Sequence[tuple[StoryData, QA]], indexes: Indexes, *,
               parts: TrainedParts | None, candidates: int, top_k: int = 5,
               on_progress: Progress | None = None, phase: str = "answering") -> list[tuple[QA, Turn]]:
    out: list[tuple[QA, Turn]] = []
    engines: dict[str, object] = {}
    for n, (story, qa) in enumerate(questions, start=1):
        engine = engines.get(story.name)
        if engine is None:
            engine = engines[story.name] = make_engine(indexes.get(story), parts=parts,
                                                       candidates=candidates, top_k=top_k)
        turn = engine.answer(storyteller(story.name), qa.question, conversation_id=f"eval-{story.name}")
        out.append((qa, turn))
        if on_progress:
            on_progress(phase, n, len(questions))
    return out


def turn_metrics(results: Sequence[tuple[QA, Turn]]) -> dict[str, float]:
    n = len(results)
    r1 = r3 = f1 = 0.0
    steps = grounded = chosen_good = first_good = multi = 0
    for qa, turn in results:
        ranked: list[str] = []
        for step in turn.steps:
            for eid in cited_ids(step):
                if eid not in ranked:
                    ranked.append(eid)
        r1 += bool(set(ranked[:1]) & qa.evidence)
        r3 += bool(set(ranked[:3]) & qa.evidence)
        f1 += max((token_f1(turn.answer, a) for a in qa.answers), default=0.0)
        for step in turn.steps:
            steps += 1
            grounded += step.grounded
            if len(step.candidates) > 1:
                multi += 1
                chosen_good += bool(set(cited_ids(step)) & qa.evidence)
                first = step.candidates[0]
                first_good += bool({c.excerpt_id for c in first.citations if c.valid} & qa.evidence)
    return {"questions": n, "R@1": r1 / n if n else 0.0, "R@3": r3 / n if n else 0.0,
            "grounded": grounded / steps if steps else 0.0, "F1": f1 / n if n else 0.0,
            "chosen_good": chosen_good / multi if multi else 0.0,
            "first_good": first_good / multi if multi else 0.0}


def labelled_from_turn(turn: Turn, qa: QA, editor: SimulatedEditor) -> list[LabelledStep]:
    from app.bots.engine import build_query

    character = storyteller(qa.story)
    out = []
    for step, review in zip(turn.steps, editor.review_turn(turn, qa.evidence)):
        proc = character.procedure[step.index]
        query = build_query(qa.question, proc, turn.steps[:step.index])
        out.append(LabelledStep(character.id, qa.question, step, review.rating, ReviewSource.human,
                                review.kind, review.fault_tags, review.correction, query=query))
    return out


def simulate_reviews(stories: Sequence[StoryData], indexes: Indexes, n_reviews: int, *,
                     editor: SimulatedEditor, candidates: int, seed: int = 0,
                     on_progress: Progress | None = None) -> list[LabelledStep]:
    """The untuned bot answers shuffled train questions; the editor rates every step; first N kept."""
    pool = [(s, qa) for s in stories for qa in s.questions]
    random.Random(seed).shuffle(pool)
    n_turns = math.ceil(n_reviews / len(storyteller("x").procedure)) if n_reviews else 0
    chosen = pool[:n_turns]
    if n_turns > len(pool):
        raise ValueError(f"{n_reviews} reviews need {n_turns} train questions; the train split given "
                         f"has {len(pool)}")
    results = answer_all(chosen, indexes, parts=None, candidates=candidates, on_progress=on_progress,
                         phase="simulating reviews")
    labelled: list[LabelledStep] = []
    for qa, turn in results:
        labelled.extend(labelled_from_turn(turn, qa, editor))
    return labelled[:n_reviews]


@dataclass
class CurvePoint:
    reviews: int
    metrics: dict[str, float]
    tuning: dict = field(default_factory=dict)


def learning_curve(val: Sequence[StoryData], train: Sequence[StoryData], indexes: Indexes, *,
                   counts: Sequence[int] = DEFAULT_COUNTS, candidates: int = 4, noise: float = 0.0,
                   seed: int = 0, on_progress: Progress | None = None,
                   labelled: Sequence[LabelledStep] | None = None) -> tuple[list[CurvePoint], TrainedParts | None]:
    counts = sorted(set(counts))
    if labelled is None:
        labelled = simulate_reviews(train, indexes, max(counts), editor=SimulatedEditor(noise, seed),
                                    candidates=candidates, seed=seed, on_progress=on_progress)
    questions = [(s, qa) for s in val for qa in s.questions]
    points: list[CurvePoint] = []
    last: TrainedParts | None = None
    for n in counts:
        parts = train_parts(labelled[:n]) if n else None
        results = answer_all(questions, indexes, parts=parts, candidates=candidates,
                             on_progress=on_progress, phase=f"val with {n} reviews")
        points.append(CurvePoint(n, turn_metrics(results), parts.metrics if parts else {}))
        last = parts or last
    return points, last


def plot_curve(points: Sequence[CurvePoint], path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p.reviews for p in points]
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=120)
    series = [("R@1", "evidence recall@1"), ("R@3", "evidence recall@3"),
              ("chosen_good", "chosen step cites evidence (best-of-N)"),
              ("first_good", "first candidate cites evidence"), ("F1", "answer token-F1")]
    for key, label in series:
        ax.plot(xs, [p.metrics[key] for p in points], marker="o", label=label)
    ax.axhline(points[0].metrics["R@1"], color="grey", linestyle=":", linewidth=1,
               label="untuned R@1")
    ax.set_xscale("symlog", linthresh=100)
    ax.set_xlim(-5, max(xs) * 1.15 if max(xs) > 0 else 1)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel("simulated editor step reviews (train split)")
    ax.set_ylabel("share (val split)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
