"""What a tuning snapshot costs at answer time: re-ranked retrieval and verifier best-of-N.

Builds section indexes for a few FairytaleQA val stories, tunes a snapshot on
simulated editor reviews of train questions, then times, per question, the
bare hybrid retrieval (the in-run baseline) against the re-ranked retrieval
(3x wider pool + features + the learned model), and a whole untuned turn
(grounding scorer) against a tuned one (re-ranker + verifier + exemplars).
Prints p50/p95 in milliseconds and the overhead.

    python benchmarks/tuning_overhead.py [--stories 3] [--reviews 300] [--bm25-only]

Uses ../shared/eval/fairytaleqa and the embedding model from `bookbot models fetch`
(BOOKBOT_EMBED_MODEL_DIR / BOOKBOT_DATA_DIR as usual) unless --bm25-only.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "eval" / "fairytaleqa"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=3)
    parser.add_argument("--reviews", type=int, default=300)
    parser.add_argument("--bm25-only", action="store_true")
    args = parser.parse_args()

    from app.bots.backends.extractive import ExtractiveBackend
    from app.bots.engine import Engine
    from app.settings import Settings
    from app.tuning.evaluation import Indexes, simulate_reviews
    from app.tuning.fairytaleqa import SimulatedEditor, load_split, storyteller
    from app.tuning.reranker import RerankingRetriever
    from app.tuning.tune import train_parts
    from app.tuning.verifier import VerifierScorer

    embedder = None
    if not args.bm25_only:
        from app.library import load_default_embedder

        embedder, warning = load_default_embedder(Settings())
        if embedder is None:
            print(f"warning: {warning}")
    indexes = Indexes(embedder)
    train = load_split(DATA / "train")
    random.Random(0).shuffle(train)
    val = load_split(DATA / "val", limit=args.stories)
    labelled = simulate_reviews(train[:12], indexes, args.reviews, editor=SimulatedEditor(), candidates=4)
    parts = train_parts(labelled)
    print(f"snapshot from {len(labelled)} simulated reviews; retrieval "
          f"{'hybrid' if embedder else 'BM25 only'}; {sum(len(s.questions) for s in val)} questions")

    times: dict[str, list[float]] = {k: [] for k in ("retrieve", "retrieve+rerank", "turn", "turn tuned")}
    for story in val:
        base = indexes.get(story)
        tuned = RerankingRetriever(base, parts.reranker, parts.priors)
        plain = Engine(base, ExtractiveBackend(), candidates=4)
        better = Engine(tuned, ExtractiveBackend(), scorer=VerifierScorer(parts.verifier),
                        exemplars=parts.exemplars, candidates=4)
        for qa in story.questions:
            base.retrieve(qa.question, top_k=5)            # warm the query embedding cache-free path
            for name, fn in (("retrieve", lambda: base.retrieve(qa.question, top_k=5)),
                             ("retrieve+rerank", lambda: tuned.retrieve(qa.question, top_k=5)),
                             ("turn", lambda: plain.answer(storyteller(story.name), qa.question)),
                             ("turn tuned", lambda: better.answer(storyteller(story.name), qa.question))):
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1000)
    print(f"{'':<18}{'p50 ms':>10}{'p95 ms':>10}")
    for name, values in times.items():
        print(f"{name:<18}{statistics.median(values):>10.1f}{pct(values, 0.95):>10.1f}")
    for a, b in (("retrieve", "retrieve+rerank"), ("turn", "turn tuned")):
        print(f"overhead {b} vs {a} (baseline): {statistics.median(times[b]) - statistics.median(times[a]):+.1f} ms p50")


if __name__ == "__main__":
    main()
