"""Linear procedure vs procedure graph, same character, books, backend and scorer, in one run.

    python benchmarks/procedure_graph.py [--stories 8] [--candidates 4] [--only novel|fairytaleqa]

Two question sets:

- our novel questions (``benchmarks/novel_questions.yaml``: 30 Holmes, 10 Alice) over the library of
  the data dir (``BOOKBOT_DATA_DIR``; the books are imported from ``--books`` when missing), each
  character with its shipped card (a graph) and with the same card's steps as a plain list;
- FairytaleQA val (``--stories`` stories, all their questions; the production retriever per story,
  as `bookbot eval fairytaleqa` builds it), the evaluation's storyteller with its list procedure and
  with ``STORYTELLER_GRAPH`` below.

Per question, as `bookbot eval fairytaleqa` and `benchmarks/novel_eval.py` score it: evidence R@1 / R@3
(the first / first three excerpts the steps cite, in the order the steps were taken), ROUGE-L F1 of the
answer's conclusion against the gold answers; besides, "answer R@1": does the passage the answer
concludes with hold the evidence; per turn the steps taken and the time to the first step.  Both
procedures share their first step (same query, same backend), so R@1 can only differ where that
step cites nothing.  Offline extractive backend, untuned (grounding score as the step confidence).  Prints one row
per procedure, the graph − list R@1 difference with a 95% bootstrap interval, and the steps ratio.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.domain import Condition, ProcedureStep, Transition  # noqa: E402
from app.tuning.fairytaleqa import PROCEDURE  # noqa: E402

# The storyteller's procedure as a graph: a weak or off-question location is looked for again; an
# answer the scorer does not trust sends it back to gather more.  Thresholds: about the weakest third
# of each step's confidence on 60 FairytaleQA *train* questions (never chosen on what is reported).
STORYTELLER_GRAPH = (
    replace(PROCEDURE[0], max_visits=2, next=(
        Transition("Locate", Condition(fault=("wrong_excerpt", "not_in_book")), "the passage found is off the question"),
        Transition("Locate", Condition(score_below=0.94), "the passage found is a weak match"))),
    replace(PROCEDURE[1], max_visits=2),
    replace(PROCEDURE[2], next=(Transition("Gather", Condition(score_below=0.69), "the answer is not supported yet"),)),
)


def as_list(procedure: tuple[ProcedureStep, ...]) -> tuple[ProcedureStep, ...]:
    """The same steps, in the same order, without transitions: the linear procedure."""
    return tuple(replace(s, next=(), max_visits=None) for s in procedure)


def turn_scores(turn, first_ms: float, evidence: frozenset[str], answers) -> dict[str, float]:
    from app.bots.backends.extractive import concluded_from, conclusion
    from app.tuning.fairytaleqa import turn_cited_ids
    from app.tuning.text import rouge_l

    ranked = turn_cited_ids(turn)
    final = conclusion(turn.question, turn.steps)
    concluded = {concluded_from(turn.question, turn.steps)}
    return {"R@1": float(bool(set(ranked[:1]) & evidence)), "R@3": float(bool(set(ranked[:3]) & evidence)),
            "answer R@1": float(bool(concluded & evidence)),
            "ROUGE-L": max((rouge_l(final, a) for a in answers), default=0.0),
            "steps": float(len(turn.steps)), "revisits": float(sum(s.visit > 1 for s in turn.steps)),
            "first_ms": first_ms}


def timed_turn(engine, character, question: str):
    from app.bots.engine import StepDone, TurnDone

    started, first, turn = time.perf_counter(), None, None
    for event in engine.run(character, question):
        if first is None and isinstance(event, StepDone):
            first = (time.perf_counter() - started) * 1000
        if isinstance(event, TurnDone):
            turn = event.turn
    return turn, first or 0.0


def compare(jobs, label: str) -> dict:
    """``jobs``: (engine, list character, graph character, question, evidence, answers) per question.
    The two procedures answer each question back to back, in alternating order."""
    rows: dict[str, list[dict[str, float]]] = {"list": [], "graph": []}
    for n, (engine, linear, graph, question, evidence, answers) in enumerate(jobs):
        order = (("list", linear), ("graph", graph)) if n % 2 == 0 else (("graph", graph), ("list", linear))
        for name, character in order:
            turn, first = timed_turn(engine, character, question)
            rows[name].append(turn_scores(turn, first, evidence, answers))
        if (n + 1) % 20 == 0 or n + 1 == len(jobs):
            print(f"{label}: {n + 1}/{len(jobs)}", flush=True)
    return rows


def report(label: str, rows: dict) -> None:
    from app.tuning.evaluation import bootstrap_interval

    n = len(rows["list"])
    print(f"\n{label}: {n} questions")
    print(f"{'procedure':10s} {'R@1':>6s} {'R@3':>6s} {'answer R@1':>11s} {'ROUGE-L':>8s} {'steps/turn':>11s} "
          f"{'revisits':>9s} {'first step p50 ms':>18s}")
    for name in ("list", "graph"):
        r = rows[name]
        mean = {k: statistics.mean(x[k] for x in r) for k in r[0]}
        print(f"{name:10s} {mean['R@1']:6.3f} {mean['R@3']:6.3f} {mean['answer R@1']:11.3f} {mean['ROUGE-L']:8.3f} "
              f"{mean['steps']:11.2f} {mean['revisits']:9.2f} {statistics.median(x['first_ms'] for x in r):18.1f}")
    diff = [g["R@1"] - b["R@1"] for g, b in zip(rows["graph"], rows["list"])]
    lo, hi = bootstrap_interval(diff)
    ratio = statistics.mean(x["steps"] for x in rows["graph"]) / statistics.mean(x["steps"] for x in rows["list"])
    changed = sum(d != 0 for d in diff)
    better = np.mean(diff) > 0
    print(f"graph − list R@1: {100 * np.mean(diff):+.1f} points (95% CI {100 * lo:+.1f} to {100 * hi:+.1f}; "
          f"{changed} of {n} questions differ); steps ×{ratio:.2f}; target (better R@1, ≤ 1.5× steps): "
          f"{'MET' if better and ratio <= 1.5 else 'NOT MET'}")


def novel(args, settings) -> dict:
    from app.bots.cards import load_characters
    from app.evidence import SentenceVectors
    from app.library import open_library
    from app.tuning.evaluation import make_engine
    from app.tuning.novelqa import evidence_map, import_books, load_novel_questions

    questions = load_novel_questions(ROOT / "benchmarks" / "novel_questions.yaml")
    library = open_library(settings)
    import_books(library, args.books, ROOT / "books", {q.book for q in questions},
                 on_import=lambda book: print(f"importing {book} from {args.books} …", flush=True))
    cards = load_characters(settings)
    vectors = SentenceVectors(library.embedder) if library.embedder is not None else None
    evidence = evidence_map(questions, library)
    engine = make_engine(library.retriever(), parts=None, candidates=args.candidates, top_k=settings.top_k,
                         vectors=vectors)
    engine.answer(cards.get("sherlock-holmes"), "warm-up question about Baker Street")
    jobs = []
    for qa in questions:
        graph = cards.get(qa.character)
        jobs.append((engine, replace(graph, procedure=as_list(graph.procedure)), graph, qa.question,
                     evidence[qa.id], qa.answers))
    return compare(jobs, "novel questions")


def fairytaleqa(args, settings) -> dict:
    from app.library import load_default_embedder
    from app.tuning.evaluation import Indexes, make_engine
    from app.tuning.fairytaleqa import CachedEmbedder, load_split, storyteller

    base, warning = load_default_embedder(settings)
    if base is None:
        raise SystemExit(f"no embedding model: {warning}")
    cache = CachedEmbedder(base, settings.data_dir / "cache" / f"embeddings-{base.name}.npz")
    stories = load_split(args.fairytaleqa / "val")
    random.Random(args.seed).shuffle(stories)
    stories = stories[:args.stories]
    indexes = Indexes(cache)
    jobs = []
    for story in stories:
        engine = make_engine(indexes.get(story), parts=None, candidates=args.candidates, vectors=indexes.vectors)
        linear = storyteller(story.name)
        graph = replace(linear, procedure=STORYTELLER_GRAPH)
        jobs += [(engine, linear, graph, qa.question, qa.evidence, qa.answers) for qa in story.questions]
    try:
        return compare(jobs, f"FairytaleQA val ({len(stories)} stories)")
    finally:
        cache.save()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--books", type=Path, default=ROOT.parent / "shared" / "books")
    parser.add_argument("--fairytaleqa", type=Path, default=ROOT.parent / "shared" / "eval" / "fairytaleqa")
    parser.add_argument("--stories", type=int, default=8, help="FairytaleQA val stories (of 23), shuffled by --seed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--only", choices=("novel", "fairytaleqa"))
    args = parser.parse_args()

    from app.settings import Settings

    settings = Settings()
    started = time.perf_counter()
    results = {}
    if args.only in (None, "novel"):
        results["novel questions (30 Holmes, 10 Alice; shipped cards)"] = novel(args, settings)
    if args.only in (None, "fairytaleqa"):
        results[f"FairytaleQA val, {args.stories} stories (storyteller)"] = fairytaleqa(args, settings)
    for label, rows in results.items():
        report(label, rows)
    print(f"\nbest-of-{args.candidates}, offline extractive backend, untuned; {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
