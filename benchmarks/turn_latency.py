"""Turn latency of the engine with the offline (extractive) backend over the Sherlock Holmes library.

Measures, over N questions (default 50): time to the first step (StepDone of step 1, i.e. what the
reader sees first), time to the full turn, and — as the in-run baseline — one bare hybrid retrieval
call for the same question, so the engine's own overhead is visible.  Prints p50/p95 and whether the
target (first step < 300 ms p50) is met.

    python benchmarks/turn_latency.py [--questions 50] [--candidates 2]

Needs the library with Holmes's four books (`bookbot models fetch`, `bookbot books sync`);
BOOKBOT_DATA_DIR selects the data dir as usual.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

QUESTIONS = [
    "How did you know Watson had been in Afghanistan?",
    "What is the science of deduction?",
    "Who was Jefferson Hope and why did he kill Drebber?",
    "What did the word RACHE written in blood mean?",
    "How did you find the cab driver?",
    "Who are the Baker Street irregulars?",
    "What was in the Agra treasure box?",
    "Who was Tonga and what weapon did he use?",
    "How did Bartholomew Sholto die?",
    "What did the dog Toby follow?",
    "Why did Jonathan Small want the treasure?",
    "What happened to Mary Morstan's father?",
    "Who is Irene Adler?",
    "How did Irene Adler outwit you?",
    "What was the Red-Headed League really for?",
    "Why was Jabez Wilson copying the encyclopaedia?",
    "What is the secret of the speckled band?",
    "How did Dr Roylott kill Julia Stoner?",
    "What did the whistle in the night mean?",
    "Who was the man with the twisted lip?",
    "What was found in the goose's crop?",
    "How did the blue carbuncle get into the goose?",
    "What happened to the engineer's thumb?",
    "Why did the noble bachelor's bride vanish?",
    "What was the mystery of the beryl coronet?",
    "Why did the copper beeches employer want Violet Hunter to cut her hair?",
    "What were the five orange pips?",
    "Who was the K.K.K. in the five orange pips?",
    "What is a case of identity about?",
    "Who murdered Charles McCarthy at Boscombe Valley?",
    "What is the legend of the Hound of the Baskervilles?",
    "How did Sir Charles Baskerville die?",
    "Who was Stapleton really?",
    "What did Dr Mortimer bring to Baker Street?",
    "Why was a boot stolen from Sir Henry at the hotel?",
    "Who was the man on the tor?",
    "What was Barrymore signalling on the moor?",
    "How was the hound made to glow?",
    "What happened in the Grimpen Mire?",
    "Why did you stay hidden on the moor?",
    "How do you use tobacco ash as evidence?",
    "Why do you play the violin when you think?",
    "What do you think of the police detectives Lestrade and Gregson?",
    "Why do you take cocaine?",
    "What is your opinion of Watson's chronicles?",
    "How do you read a man's trade from his hands?",
    "What did you deduce from Watson's watch?",
    "What is the importance of footprints in your cases?",
    "What is the curious incident of the dog in the night-time?",
    "Why is it a capital mistake to theorize before one has data?",
]
HOLMES_BOOKS = ("gutenberg-244", "gutenberg-2097", "gutenberg-1661", "gutenberg-2852")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--candidates", type=int, default=None)
    parser.add_argument("--character", default="sherlock-holmes")
    args = parser.parse_args()

    from app.bots.backends import ExtractiveBackend
    from app.bots.cards import load_characters
    from app.bots.engine import Engine, StepDone
    from app.library import open_library
    from app.settings import Settings

    settings = Settings()
    t0 = time.perf_counter()
    library = open_library(settings)
    open_s = time.perf_counter() - t0
    have = {b.id for b in library.books()}
    missing = [b for b in HOLMES_BOOKS if b not in have]
    if missing:
        print(f"Holmes's books are missing from {settings.data_dir}: {missing}. "
              "Run `bookbot models fetch && bookbot books sync` first.", file=sys.stderr)
        return 2
    character = load_characters(settings).get(args.character)
    from app.evidence import SentenceVectors

    retriever = library.retriever()
    vectors = SentenceVectors(library.embedder) if library.embedder is not None else None
    engine = Engine(retriever, ExtractiveBackend(), candidates=args.candidates or settings.candidates_per_step,
                    top_k=settings.top_k, vectors=vectors)     # what the app and `bookbot ask` run
    words_only = Engine(retriever, ExtractiveBackend(), candidates=engine.candidates, top_k=settings.top_k)
    questions = (QUESTIONS * (args.questions // len(QUESTIONS) + 1))[:args.questions]
    dense = "on" if getattr(library, "embedder", None) is not None else "off (BM25 only)"
    print(f"library opened in {open_s:.2f}s; {len(have)} books; dense retrieval {dense}; "
          f"{len(character.procedure)} steps; {engine.candidates} candidates/step; top_k {engine.top_k}")

    engine.answer(character, "warm-up question about Baker Street")          # not measured
    baseline, first_step, full, steps_retrieval, grounded, words_first = [], [], [], [], [], []
    for q in questions:
        t = time.perf_counter()
        for event in words_only.run(character, q):
            if isinstance(event, StepDone):
                words_first.append((time.perf_counter() - t) * 1000)
                break
        t = time.perf_counter()
        retriever.retrieve(q, top_k=settings.top_k, book_ids=list(character.book_ids))
        baseline.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        first = None
        for event in engine.run(character, q):
            if first is None and isinstance(event, StepDone):
                first = (time.perf_counter() - t) * 1000
                steps_retrieval.append(event.step.retrieval_ms)
            last = event
        full.append((time.perf_counter() - t) * 1000)
        first_step.append(first)
        grounded.append(sum(s.grounded for s in last.turn.steps) / len(last.turn.steps))

    print(f"\n{len(questions)} questions, milliseconds      p50      p95      max")
    for name, vals in [("baseline: one bare retrieval", baseline),
                       ("first step, words only", words_first),
                       ("first step (StepDone #1)", first_step),
                       ("  of which retrieval", steps_retrieval),
                       ("full turn (all steps+answer)", full)]:
        print(f"  {name:30s} {pct(vals, .5):8.1f} {pct(vals, .95):8.1f} {max(vals):8.1f}")
    p50 = pct(first_step, .5)
    print(f"\nengine overhead on the first step vs bare retrieval (p50): {p50 - pct(baseline, .5):.1f} ms")
    print(f"grounded steps: {100 * statistics.mean(grounded):.0f}%")
    print(f"target first step < 300 ms p50: {'MET' if p50 < 300 else 'MISSED'} ({p50:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
