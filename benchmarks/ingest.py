"""Ingest and search benchmark over the six English books, with in-run baselines.

Each pipeline runs in its own subprocess (fresh data dir) so its peak memory
(max RSS) is its own:

- ``ours``: ``Library.add_file`` for each book (parse, chapters, paragraph-
  aligned excerpts inside the 256-token window, embed, Chroma + BM25 + catalog).
- ``embedder``: the same excerpts embedded by the same ONNX model, nothing
  else — the lower limit (target: ours within 1.2x).
- ``llamaindex``: LlamaIndex's default pipeline on the same decoded text:
  ``SentenceSplitter()`` (1024-token chunks) + ``VectorStoreIndex`` on a
  Chroma PersistentClient, same embedder (which truncates to its window).

Then search latency p50/p95 over the whole library — ours through the
production path (``Library.retriever()``: the LlamaIndex ``ConvexFusionRetriever``
with its BM25 and ``VectorStoreIndex``-over-Chroma parts, instrumentation on),
the same fusion called directly on bm25s and Chroma as before LlamaIndex ran
the search (``previous``, same process and data), BM25 only; LlamaIndex's
default vector retriever — and a small answer check: for 14 questions with a
phrase that only the answering passage contains, is that phrase in the top 5?
Usage: ``python benchmarks/ingest.py [--books DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BOOKS = ["study_in_scarlet_244.txt", "sign_of_four_2097.txt", "sherlock_adventures_1661.txt",
         "hound_baskervilles_2852.txt", "alice_wonderland_11.txt", "pride_prejudice_1342.txt"]
QUESTIONS = [  # (question, phrase that occurs in the answering passage)
    ("What did Holmes say to Watson when they first met?", "Afghanistan, I perceive"),
    ("What word was written in blood on the wall of the Lauriston Gardens house?", "RACHE"),
    ("What work did the Red-headed League pay Jabez Wilson to do?", "Encyclopaedia"),
    ("What killed Julia Stoner in the Speckled Band?", "swamp adder"),
    ("How did the engineer Victor Hatherley lose his thumb?", "cleaver"),
    ("What dress did Violet Hunter have to wear at the Copper Beeches?", "electric blue"),
    ("Which dog did Holmes borrow to follow the creosote trail?", "Toby"),
    ("Which drug does Holmes inject at the start of The Sign of the Four?", "cocaine"),
    ("Who was the wicked ancestor in the legend of the Baskerville hound?", "Hugo Baskerville"),
    ("Where was the blue carbuncle found?", "crop"),
    ("Who is the woman Holmes always calls the woman?", "Irene Adler"),
    ("What was written on the bottle Alice found on the little table?", "DRINK ME"),
    ("What truth is universally acknowledged about a single man with a fortune?", "universally acknowledged"),
    ("What did Mr. Collins propose to Elizabeth?", "marriage"),
]
SEARCHES = [q for q, _ in QUESTIONS] + [
    "Holmes plays the violin", "the hound on the moor at night", "the Mad Hatter's tea party",
    "Mr. Darcy's letter to Elizabeth", "the Agra treasure in the iron box", "Mormons in Utah",
    "a man with a twisted lip in an opium den", "the Cheshire cat grin", "Lady Catherine de Bourgh visits",
    "the footprints of a gigantic hound"]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _embedder(model_dir: Path):
    from app.library.embedder import OnnxEmbedder

    return OnnxEmbedder.load(model_dir)


def previous_path(library, query: str, top_k: int = 5) -> list[str]:
    """The search as it ran before LlamaIndex (direct bm25s + Chroma + the same fusion), for comparison."""
    import numpy as np

    from app.library.retrieval import fuse

    corpus, config = library.current(), library.fusion
    bm25_all = corpus.bm25.scores(query)
    n = config.candidates
    top = np.argpartition(-bm25_all, n)[:n]
    top = sorted((i for i in top if bm25_all[i] > 0), key=lambda i: -bm25_all[i])
    ids = corpus.bm25.ids
    bm25 = {ids[i]: float(bm25_all[i]) for i in top}
    bm25_rank = {ids[i]: r for r, i in enumerate(top, start=1)}
    qv = library.embedder.embed_query(query)
    d_ids, sims = library.dense.query(qv, n)
    dense = {i: float(x) for i, x in zip(d_ids, sims) if i in corpus.excerpts}
    dense_rank = {i: r for r, i in enumerate(dense, start=1)}
    for i, v in library.dense.vectors([i for i in bm25 if i not in dense]).items():
        dense[i] = float(v @ qv)
    for i in dense:
        if i not in bm25:
            bm25[i] = float(bm25_all[corpus.bm25.position[i]])
    ranked = fuse(bm25, dense, bm25_rank=bm25_rank, dense_rank=dense_rank, config=config)
    return [x.id for x in ranked[:top_k]]


def _latency(search) -> tuple[float, float]:
    search("warm up")
    times = []
    for _ in range(3):
        for q in SEARCHES:
            t = time.perf_counter()
            search(q)
            times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times), statistics.quantiles(times, n=20)[18]


def run_ours(books_dir: Path, model_dir: Path, work: Path) -> dict:
    from app.library import open_library
    from app.settings import Settings

    settings = Settings(data_dir=work / "ours", books_dir=work / "manifests", embed_model_dir=model_dir)
    started = time.perf_counter()
    library = open_library(settings)
    excerpts = 0
    for name in BOOKS:
        excerpts += library.add_file(books_dir / name).excerpts
    ingest = time.perf_counter() - started
    retriever = library.retriever()
    bm25_only = library.retriever(fusion=type(library.fusion)(method="bm25"))
    result = {"ingest_s": ingest, "excerpts": excerpts}
    queries = library.embed_model._queries      # the query-vector memo would hide the embedding time
    searches = {
        "hybrid": lambda q: (queries.clear(), retriever.retrieve(q, top_k=5)),
        "previous": lambda q: previous_path(library, q),
        "bm25": lambda q: bm25_only.retrieve(q, top_k=5),
    }
    for _ in range(2):            # interleaved twice, so load changes hit both paths alike
        for label, search in searches.items():
            p50, p95 = _latency(search)
            result.setdefault(f"{label}_p50_runs", []).append(p50)
            result.setdefault(f"{label}_p95_runs", []).append(p95)
    for label in searches:
        result[f"{label}_p50_ms"] = statistics.median(result[f"{label}_p50_runs"])
        result[f"{label}_p95_ms"] = statistics.median(result[f"{label}_p95_runs"])
    result["same_top5_as_previous"] = sum([e.id for e in retriever.retrieve(q, top_k=5)] == previous_path(library, q)
                                          for q in SEARCHES) / len(SEARCHES)
    result["answers_top5"] = sum(any(p in e.text.replace("\n", " ") for e in retriever.retrieve(q, top_k=5))
                                 for q, p in QUESTIONS)
    result["peak_mb"] = peak_mb()
    return result


def _search_only(model_dir: Path, work: Path, path: str) -> dict:
    """Open the library ``ours`` built and search it by one path only: its own peak RSS and latency."""
    from app.library import open_library
    from app.settings import Settings

    library = open_library(Settings(data_dir=work / "ours", books_dir=work / "manifests", embed_model_dir=model_dir))
    if path == "previous":
        search = lambda q: previous_path(library, q)  # noqa: E731
    else:
        retriever = library.retriever()
        queries = library.embed_model._queries
        search = lambda q: (queries.clear(), retriever.retrieve(q, top_k=5))  # noqa: E731
    p50, p95 = _latency(search)
    return {"p50_ms": p50, "p95_ms": p95, "peak_mb": peak_mb()}


def run_search_llamaindex(books_dir: Path, model_dir: Path, work: Path) -> dict:
    return _search_only(model_dir, work, "llamaindex")


def run_search_previous(books_dir: Path, model_dir: Path, work: Path) -> dict:
    return _search_only(model_dir, work, "previous")


def run_embedder(books_dir: Path, model_dir: Path, work: Path) -> dict:
    from app.library.excerpts import build_excerpts
    from app.library.importers import read_book

    embedder = _embedder(model_dir)
    texts = []
    for name in BOOKS:
        book = read_book(books_dir / name)
        texts += [e.text for e in build_excerpts(book.meta, book.chapters, embedder)]
    started = time.perf_counter()
    embedder.embed(texts)
    return {"embed_s": time.perf_counter() - started, "excerpts": len(texts), "peak_mb": peak_mb()}


def run_llamaindex(books_dir: Path, model_dir: Path, work: Path) -> dict:
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from llama_index.core import Document, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from app.library.importers import decode_text
    from app.library.llama_adapter import LlamaEmbedding

    embedder = _embedder(model_dir)
    started = time.perf_counter()
    documents = [Document(text=decode_text((books_dir / n).read_bytes(), books_dir / n), metadata={"file": n})
                 for n in BOOKS]
    nodes = SentenceSplitter().get_nodes_from_documents(documents)
    client = chromadb.PersistentClient(path=str(work / "llamaindex"), settings=ChromaSettings(anonymized_telemetry=False))
    store = ChromaVectorStore(chroma_collection=client.get_or_create_collection("llamaindex_default"))
    index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store),
                             embed_model=LlamaEmbedding(embedder, query_memo=0))
    ingest = time.perf_counter() - started
    counts = embedder.count_tokens([n.get_content() for n in nodes])
    retriever = index.as_retriever(similarity_top_k=5)
    retriever.retrieve("warm up")
    times = []
    for _ in range(3):
        for q in SEARCHES:
            t = time.perf_counter()
            retriever.retrieve(q)
            times.append(1000 * (time.perf_counter() - t))
    answers = sum(any(p in n.node.get_content().replace("\n", " ") for n in retriever.retrieve(q))
                  for q, p in QUESTIONS)
    return {"ingest_s": ingest, "chunks": len(nodes),
            "not_embedded_share": sum(max(0, c - embedder.max_tokens) for c in counts) / sum(counts),
            "vector_p50_ms": statistics.median(times), "vector_p95_ms": statistics.quantiles(times, n=20)[18],
            "answers_top5": answers, "peak_mb": peak_mb()}


MODES = {"ours": run_ours, "embedder": run_embedder, "llamaindex": run_llamaindex,
         "search_previous": run_search_previous, "search_llamaindex": run_search_llamaindex}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=Path, default=ROOT.parent / "shared" / "books")
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get(
        "BOOKBOT_EMBED_MODEL_DIR", Path.home() / ".cache" / "bookbot" / "models" / "all-MiniLM-L6-v2")))
    parser.add_argument("--mode", choices=sorted(MODES))
    parser.add_argument("--work", type=Path, help="with --mode: the run's folder (search modes read its ours/)")
    parser.add_argument("--results", type=Path, help="JSON file: keep each pipeline's numbers there and "
                        "reuse the ones already measured")
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(MODES[args.mode](args.books, args.model_dir, args.work)))
        return
    results = json.loads(args.results.read_text()) if args.results and args.results.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="bookbot-bench-") as work:
        for mode in ("embedder", "ours", "search_previous", "search_llamaindex", "llamaindex"):
            if mode in results:
                continue
            print(f"running {mode}…", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, __file__, "--mode", mode, "--books", str(args.books),
                                  "--model-dir", str(args.model_dir), "--work", work],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{mode}: {json.dumps(results[mode])}", file=sys.stderr, flush=True)
            if args.results:
                args.results.write_text(json.dumps(results, indent=1))
    ours, emb, li = results["ours"], results["embedder"], results["llamaindex"]
    print(f"six English books, {ours['excerpts']} excerpts (ours) / {li['chunks']} chunks (LlamaIndex default)")
    print(f"{'pipeline':<34}{'ingest s':>10}{'peak MB':>10}")
    print(f"{'embedder alone (same excerpts)':<34}{emb['embed_s']:>10.1f}{emb['peak_mb']:>10.0f}")
    print(f"{'ours (Library.add_file x6)':<34}{ours['ingest_s']:>10.1f}{ours['peak_mb']:>10.0f}"
          f"   = {ours['ingest_s'] / emb['embed_s']:.2f}x the embedder alone")
    print(f"{'LlamaIndex SentenceSplitter+VSI':<34}{li['ingest_s']:>10.1f}{li['peak_mb']:>10.0f}"
          f"   ({100 * li['not_embedded_share']:.0f}% of chunk tokens beyond the window, never embedded)")
    print(f"{'search latency (ms)':<34}{'p50':>10}{'p95':>10}")
    print(f"{'ours hybrid (LlamaIndex retriever)':<34}{ours['hybrid_p50_ms']:>10.1f}{ours['hybrid_p95_ms']:>10.1f}")
    print(f"{'ours hybrid, previous direct path':<34}{ours['previous_p50_ms']:>10.1f}{ours['previous_p95_ms']:>10.1f}"
          f"   (same top 5 for {100 * ours['same_top5_as_previous']:.0f}% of queries)")
    print(f"{'ours BM25 only':<34}{ours['bm25_p50_ms']:>10.1f}{ours['bm25_p95_ms']:>10.1f}")
    print(f"{'LlamaIndex vector retriever':<34}{li['vector_p50_ms']:>10.1f}{li['vector_p95_ms']:>10.1f}")
    if "search_previous" in results:
        sp, sl = results["search_previous"], results["search_llamaindex"]
        print(f"{'search alone, own process':<34}{'p50':>10}{'p95':>10}{'peak MB':>10}")
        for label, r in (("previous direct path", sp), ("LlamaIndex retriever", sl)):
            print(f"{label:<34}{r['p50_ms']:>10.1f}{r['p95_ms']:>10.1f}{r['peak_mb']:>10.0f}")
    print(f"answer passage in top 5: ours {ours['answers_top5']}/{len(QUESTIONS)}, "
          f"LlamaIndex default {li['answers_top5']}/{len(QUESTIONS)}")


if __name__ == "__main__":
    main()
