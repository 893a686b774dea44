"""Fairy tales → novels: the bots on our own question set, before and after tuning on FairytaleQA reviews.

    python benchmarks/novel_eval.py [--books ../shared/books] [--reviews 1000] [--seeds 3]

Uses the data dir of the settings (``BOOKBOT_DATA_DIR``): the Holmes and Alice books are
imported from ``--books`` when missing.  For each of the 40 questions of
``benchmarks/novel_questions.yaml`` (30 Holmes, 10 Alice; the answering paragraph marked by a
verbatim phrase) it reports, in one run:

- the library retriever alone (bare question, the character's books): is the marked paragraph
  its top hit / in its top 3;
- the untuned bot (offline backend, grounding scorer): does its first cited passage hold the
  marked paragraph (R@1), do its first three (R@3), does the conclusion contain a gold answer,
  and the conclusion's ROUGE-L F1;
- the bot tuned on reviews simulated on FairytaleQA *train* (the snapshot's verifier and
  re-ranker, as `snapshots activate` would give the character), mean of ``--seeds`` seeds.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def score(qa, turn, evidence: frozenset[str]) -> dict[str, float]:
    from app.bots.backends.extractive import conclusion
    from app.tuning.fairytaleqa import turn_cited_ids
    from app.tuning.text import rouge_l

    ranked = turn_cited_ids(turn)
    final = conclusion(turn.question, turn.steps)
    return {"R@1": float(bool(set(ranked[:1]) & evidence)), "R@3": float(bool(set(ranked[:3]) & evidence)),
            "answer in conclusion": float(any(a.lower() in final.lower() for a in qa.answers)),
            "ROUGE-L": max(rouge_l(final, a) for a in qa.answers)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--books", type=Path, default=ROOT.parent / "shared" / "books")
    parser.add_argument("--fairytaleqa", type=Path, default=ROOT.parent / "shared" / "eval" / "fairytaleqa")
    parser.add_argument("--reviews", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=4)
    args = parser.parse_args()

    from app.bots.cards import load_characters
    from app.evidence import SentenceVectors
    from app.library import load_default_embedder, open_library
    from app.settings import Settings
    from app.tuning.evaluation import Indexes, bootstrap_interval, make_engine, simulate_reviews
    from app.tuning.fairytaleqa import CachedEmbedder, SimulatedEditor, load_split
    from app.tuning.novelqa import evidence_map, import_books, load_novel_questions
    from app.tuning.tune import train_parts

    settings = Settings()
    questions = load_novel_questions(ROOT / "benchmarks" / "novel_questions.yaml")
    library = open_library(settings)
    import_books(library, args.books, ROOT / "books", {q.book for q in questions},
                 on_import=lambda book: print(f"importing {book} from {args.books} …", flush=True))
    if library.embedder is None:
        print("no embedding model: run `bookbot models fetch` first", file=sys.stderr)
        return 2
    cards = load_characters(settings)
    vectors = SentenceVectors(library.embedder)
    evidence = evidence_map(questions, library)
    retriever = library.retriever()

    def run(parts) -> list[dict[str, float]]:
        engine = make_engine(retriever, parts=parts, candidates=args.candidates, top_k=settings.top_k,
                             vectors=vectors)
        return [score(qa, engine.answer(cards.get(qa.character), qa.question), evidence[qa.id])
                for qa in questions]

    started = time.perf_counter()
    base = []
    for qa in questions:
        ids = [e.id for e in retriever.retrieve(qa.question, top_k=5,
                                                book_ids=list(cards.get(qa.character).book_ids))]
        base.append({"R@1": float(bool(set(ids[:1]) & evidence[qa.id])),
                     "R@3": float(bool(set(ids[:3]) & evidence[qa.id]))})
    untuned = run(None)

    fq_embedder, _ = load_default_embedder(settings)
    cache = CachedEmbedder(fq_embedder, settings.data_dir / "cache" / f"embeddings-{fq_embedder.name}.npz")
    train = load_split(args.fairytaleqa / "train")
    random.Random(0).shuffle(train)
    indexes = Indexes(cache)
    tuned_runs = []
    for seed in range(args.seeds):
        print(f"simulating {args.reviews} FairytaleQA train reviews (seed {seed}) …", flush=True)
        labelled = simulate_reviews(train[:120], indexes, args.reviews,
                                    editor=SimulatedEditor(seed=seed, corrections=0.5), candidates=4, seed=seed)
        tuned_runs.append(run(train_parts(labelled, vectors=indexes.vectors)))
    cache.save()
    tuned = [{k: float(np.mean([r[i][k] for r in tuned_runs])) for k in untuned[0]} for i in range(len(questions))]

    def mean(rows, key):
        return float(np.mean([r[key] for r in rows]))

    print(f"\n{len(questions)} questions ({sum(q.character == 'sherlock-holmes' for q in questions)} Holmes, "
          f"{sum(q.character == 'alice' for q in questions)} Alice); tuned: {args.reviews} simulated FairytaleQA "
          f"train reviews, mean of {args.seeds} seeds; {time.perf_counter() - started:.0f} s")
    print(f"{'':34s} {'R@1':>6s} {'R@3':>6s} {'answer in concl.':>17s} {'ROUGE-L':>8s}")
    print(f"{'retriever alone (top hit)':34s} {mean(base, 'R@1'):6.3f} {mean(base, 'R@3'):6.3f}")
    for name, rows in (("bot, untuned", untuned), ("bot, tuned on FairytaleQA reviews", tuned)):
        print(f"{name:34s} {mean(rows, 'R@1'):6.3f} {mean(rows, 'R@3'):6.3f} "
              f"{mean(rows, 'answer in conclusion'):17.3f} "
              f"{mean(rows, 'ROUGE-L'):8.3f}")
    diff = [t["R@1"] - u["R@1"] for t, u in zip(tuned, untuned)]
    lo, hi = bootstrap_interval(diff)
    print(f"tuned − untuned R@1: {100 * np.mean(diff):+.1f} points (95% CI {100 * lo:+.1f} to {100 * hi:+.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
