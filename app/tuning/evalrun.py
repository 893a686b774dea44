"""`bookbot eval fairytaleqa`: options, progress, the table, the PNG curve, the JSON and the snapshot.

The measuring itself lives in `app.tuning.evaluation`; this module wires it to
the data on disk, the embedding model (cached per text in the data dir), Rich
output and the files it writes.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.settings import Settings
from app.tuning.evaluation import DEFAULT_COUNTS, Curve, Indexes, learning_curve, plot_curve
from app.tuning.fairytaleqa import CHARACTER_ID, CachedEmbedder, load_split, resolve_split

R1_TARGET_POINTS = 5.0


@dataclass
class EvalOptions:
    path: Path
    train: Path | None = None
    split: str = "val"
    train_split: str = "train"
    max_reviews: int = 3000
    counts: list[int] | None = None
    candidates: int = 4
    noise: float = 0.0
    seed: int = 0
    seeds: int = 3
    corrections: float = 0.5
    limit: int | None = None
    train_stories: int = 120
    dense: bool = True
    plot: Path | None = None
    json_out: Path | None = None
    save_snapshot: bool = True


def curve_counts(max_reviews: int, counts: list[int] | None) -> list[int]:
    if counts:
        if any(c < 0 for c in counts):
            raise ValueError("review counts must be >= 0")
        return sorted(set([0, *counts]))
    return sorted({0, *(c for c in DEFAULT_COUNTS if c <= max_reviews), max_reviews})


def run_fairytaleqa(settings: Settings, options: EvalOptions, console: Console) -> dict:
    started = time.perf_counter()
    val_dir = resolve_split(options.path, options.split)
    train_dir = resolve_split(options.train, None) if options.train else \
        resolve_split(val_dir.parent, options.train_split)
    if train_dir.resolve() == val_dir.resolve():
        raise ValueError(f"--train ({train_dir}) is the split being reported on; use the train split")
    counts = curve_counts(options.max_reviews, options.counts)
    val = load_split(val_dir, limit=options.limit)
    train = load_split(train_dir)
    random.Random(options.seed).shuffle(train)
    train = train[:options.train_stories]

    embedder, cache = None, None
    if options.dense:
        from app.library import load_default_embedder

        base, warning = load_default_embedder(settings)
        if base is None:
            console.print(f"[yellow]warning:[/yellow] {warning}")
        else:
            cache = CachedEmbedder(base, settings.data_dir / "cache" / f"embeddings-{base.name}.npz")
            embedder = cache
    n_val_q = sum(len(s.questions) for s in val)
    console.print(f"FairytaleQA: reporting on {val_dir} ({len(val)} stories, {n_val_q} questions); "
                  f"reviews simulated on {len(train)} stories of {train_dir}; "
                  f"retrieval {'hybrid (BM25 + dense)' if embedder else 'BM25 only'}; "
                  f"curve at {', '.join(map(str, counts))} reviews; best-of-{options.candidates}; "
                  f"{options.seeds} seed(s); label noise {options.noise}; "
                  f"{options.corrections:.0%} of -1 steps corrected")
    indexes = Indexes(embedder)
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        tasks: dict[str, int] = {}

        def on_progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total)
            progress.update(tasks[phase], completed=done)

        try:
            seeds = [options.seed + k for k in range(options.seeds)]
            curve, parts = learning_curve(val, train, indexes, counts=counts, candidates=options.candidates,
                                          noise=options.noise, seeds=seeds, corrections=options.corrections,
                                          on_progress=on_progress)
        finally:
            if cache is not None:
                cache.save()

    summary = summarize(curve)
    print_table(console, curve, summary, options)
    plot_path = options.plot or settings.data_dir / "eval" / "fairytaleqa_curve.png"
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    plot_curve(curve, plot_path, title=(f"FairytaleQA {val_dir.name}: {n_val_q} questions, "
                                        f"{'hybrid' if embedder else 'BM25'} retrieval, offline backend, "
                                        f"best-of-{options.candidates}, mean of {options.seeds} seed(s), "
                                        f"label noise {options.noise}"))
    console.print(f"learning curve: {plot_path}")
    report = {"val": str(val_dir), "train": str(train_dir), "val_stories": len(val), "val_questions": n_val_q,
              "train_stories": len(train), "retrieval": "hybrid" if embedder else "bm25",
              "candidates": options.candidates, "noise": options.noise, "seed": options.seed,
              "seeds": options.seeds, "corrections": options.corrections,
              "retriever": curve.retriever,
              "points": [{"reviews": p.reviews, **p.metrics, "per_seed": p.seeds, "gated": p.gated,
                          "gate_activated": p.activated, "tuning": p.tuning} for p in curve.points],
              "summary": summary, "seconds": round(time.perf_counter() - started, 1)}
    if options.json_out:
        options.json_out.parent.mkdir(parents=True, exist_ok=True)
        options.json_out.write_text(json.dumps(report, indent=1), encoding="utf-8")
        console.print(f"numbers: {options.json_out}")
    if options.save_snapshot and parts is not None:
        from app.tuning.snapshots import SnapshotMeta, next_version, now_iso, save_artefacts

        meta = SnapshotMeta(CHARACTER_ID, next_version(settings, CHARACTER_ID), now_iso(),
                            n_reviews=curve.points[-1].reviews, metrics={**parts.metrics, "eval": summary},
                            notes="; ".join(parts.notes))
        folder = save_artefacts(settings, meta, verifier=parts.verifier, reranker=parts.reranker,
                                priors=parts.priors, exemplars=parts.exemplars)
        console.print(f"tuned parts kept as snapshot {meta.id} ({folder})")
    console.print(f"done in {report['seconds']:.0f} s")
    return report


def summarize(curve: Curve) -> dict:
    base, last = curve.points[0], curve.points[-1]
    gain, (lo, hi) = curve.gain(last)
    untuned_gain, (ulo, uhi) = curve.gain(base)
    rows = {p.reviews: curve.gain(p) for p in curve.points}
    return {"reviews": last.reviews, "retriever_R@1": curve.retriever["R@1"],
            "retriever_R@3": curve.retriever["R@3"], "oracle": base.metrics["oracle"],
            "R@1_untuned": base.metrics["R@1"], "R@1_tuned": last.metrics["R@1"],
            "R@1_gain_points": round(gain, 2), "R@1_gain_interval": [round(lo, 2), round(hi, 2)],
            "untuned_gain_points": round(untuned_gain, 2), "untuned_gain_interval": [round(ulo, 2), round(uhi, 2)],
            "gain_by_reviews": {n: [round(g, 2), round(a, 2), round(b, 2)] for n, (g, (a, b)) in rows.items()},
            "R@1_target_met": gain >= R1_TARGET_POINTS and lo > 0,
            "ROUGE-L_untuned": base.metrics["ROUGE-L"], "ROUGE-L_tuned": last.metrics["ROUGE-L"],
            "verifier_best_of_n": last.metrics["chosen_good"], "first_candidate": last.metrics["first_good"],
            "verifier_beats_first": last.metrics["chosen_good"] > last.metrics["first_good"]}


def print_table(console: Console, curve: Curve, summary: dict, options: EvalOptions) -> None:
    table = Table(title=f"FairytaleQA feedback loop ({curve.questions} questions; "
                        f"tuned rows: mean of {options.seeds} seed(s))")
    for col in ("row", "R@1", "R@1 vs retriever (95% CI)", "R@3", "ROUGE-L", "token F1",
                f"best-of-{options.candidates} step good", "first cand. good", "verifier AUC",
                "gate: live / R@1 readers get"):
        table.add_column(col, justify="right")
    table.add_row("retriever alone (top hit)", f"{curve.retriever['R@1']:.3f}", "–",
                  f"{curve.retriever['R@3']:.3f}", "–", "–", "–", "–", "–", "–")
    table.add_row("candidate oracle (ceiling)", f"{curve.points[0].metrics['oracle']:.3f}", "–", "–",
                  "–", "–", "–", "–", "–", "–")
    for p in curve.points:
        m = p.metrics
        gain, (lo, hi) = curve.gain(p)
        auc = (p.tuning.get("verifier", {}).get("heldout", {}) or {}).get("auc")
        name = "engine, untuned" if p.reviews == 0 else f"engine, {p.reviews} reviews"
        table.add_row(name, f"{m['R@1']:.3f}", f"{gain:+.1f} ({lo:+.1f}, {hi:+.1f})", f"{m['R@3']:.3f}",
                      f"{m['ROUGE-L']:.3f}", f"{m['F1']:.3f}", f"{m['chosen_good']:.3f}",
                      f"{m['first_good']:.3f}", f"{auc:.3f}" if auc is not None else "–",
                      f"{p.activated}/{len(p.seeds)} / {p.gated['R@1']:.3f}" if p.reviews else "–")
    console.print(table)
    ok = "[green]met[/green]" if summary["R@1_target_met"] else "[red]not met[/red]"
    lo, hi = summary["R@1_gain_interval"]
    console.print(f"R@1: retriever {summary['retriever_R@1']:.3f} → tuned engine {summary['R@1_tuned']:.3f} with "
                  f"{summary['reviews']} reviews ({summary['R@1_gain_points']:+.1f} points, 95% CI "
                  f"{lo:+.1f} to {hi:+.1f}; target +{R1_TARGET_POINTS:.0f} with the interval above 0: {ok})")
    ok = "[green]yes[/green]" if summary["verifier_beats_first"] else "[red]no[/red]"
    console.print(f"step cites evidence: verifier best-of-{options.candidates} "
                  f"{summary['verifier_best_of_n']:.3f} vs first candidate {summary['first_candidate']:.3f} "
                  f"(above: {ok})")
