"""`bookbot tune`, `bookbot snapshots list|compare|activate|rollback`, `bookbot eval fairytaleqa`.

Settings are built inside each command and heavy modules (scikit-learn, the
engine, the library, the database) imported lazily, so `bookbot --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from app.commandkit import command_settings, fail
from rich.console import Console
from rich.table import Table

console = Console()
snapshots_app = typer.Typer(help="Tuning snapshots: list, compare, activate, roll back.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluations.", no_args_is_help=True)


def _store(settings, *, required: bool):  # noqa: ANN202
    """The review store (migrated), or None with a warning when it is optional and unreachable."""
    from app.review import db
    from app.review.store import ReviewStore

    url = settings.resolved_database_url
    try:
        db.upgrade(url)
    except db.StoreUnavailable as exc:
        if required:
            fail(str(exc))
        console.print(f"[yellow]warning:[/yellow] {exc}; the snapshot table is not updated "
                      "(the snapshot files are)")
        return None
    return ReviewStore(url)


def _fmt(value) -> str:  # noqa: ANN001
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


# ------------------------------------------------------------------ tune
def tune(character: str = typer.Argument(..., help="Character id (see `bookbot characters list`)."),
         activate: Optional[bool] = typer.Option(
             None, "--activate/--no-activate",
             help="Force the new snapshot active (or never). Default: active only when held-out "
                  "reviews show it beats the active snapshot (or the untuned bot).")) -> None:
    """Build the character's next tuning snapshot from its reviews (verifier, re-ranker, exemplars)."""
    from app.tuning.snapshots import SnapshotError
    from app.tuning.service import collect_labelled_steps, tune_character

    settings = command_settings()
    card = None
    try:
        from app.bots.cards import load_characters

        card = load_characters(settings).get(character)
    except Exception as exc:  # noqa: BLE001 - an unknown or broken card only weakens query rebuilding
        console.print(f"[yellow]warning:[/yellow] no usable card for {character!r} ({exc}); "
                      "re-ranker features use the question as the query")
    store = _store(settings, required=True)
    try:
        with console.status(f"collecting reviews of {character}…"):
            items = collect_labelled_steps(store, character, card)
        if not items:
            fail(f"no reviewed steps for {character!r}: editors rate steps in the review desk first "
                  f"(or check the id: `bookbot snapshots list` shows tuned characters)")
        with console.status(f"training on {len(items)} labelled steps…"):
            from app.evidence import SentenceVectors
            from app.library import load_default_embedder

            embedder, _ = load_default_embedder(settings)
            vectors = SentenceVectors(embedder) if embedder is not None else None
            result = tune_character(settings, store, character, character=card, make_active=activate,
                                    items=items, vectors=vectors)
    except (ValueError, SnapshotError) as exc:
        fail(str(exc))
    finally:
        store.close()
    meta = result.meta
    console.print(f"[green]snapshot {meta.id}[/green] from {meta.n_reviews} labelled steps; parts: "
                  f"{', '.join(meta.parts) or 'none'}" + (" — [bold]active[/bold]" if result.activated else
                                                         " — [bold]not active[/bold]"))
    from app.tuning.crossval import describe_choice

    if "verifier" in meta.metrics:
        console.print(describe_choice(meta.metrics["verifier"].get("regularisation") or {}))
    if activate is None:
        console.print(f"activation gate: {result.gate}")
    elif activate:
        console.print("activated by --activate (the held-out gate was not consulted)")
    _print_metrics([meta])
    if meta.notes:
        console.print(f"[yellow]notes:[/yellow] {meta.notes}")
    if result.activated:
        console.print(f"review queue re-ordered by verifier uncertainty: {result.reprioritized} turns; "
                      f"machine pre-labels: {result.prelabelled}")
    else:
        console.print(f"activate it with: bookbot snapshots activate {character} {meta.version}")


def _metric_rows(meta) -> dict[str, str]:  # noqa: ANN001
    m = meta.metrics
    v = m.get("verifier", {})
    r = m.get("reranker", {})
    rows = {"labelled steps": _fmt(meta.n_reviews),
            "good share": _fmt(round(m.get("labels", {}).get("good", 0) / meta.n_reviews, 3)
                               if meta.n_reviews else None),
            "verifier held-out n": _fmt(v.get("heldout", {}).get("n")),
            "verifier accuracy": _fmt(v.get("heldout", {}).get("accuracy")),
            "verifier ROC AUC": _fmt(v.get("heldout", {}).get("auc"))}
    for name, per in sorted((v.get("per_step") or {}).items()):
        rows[f"  step {name} acc / AUC"] = f"{_fmt(per.get('accuracy'))} / {_fmt(per.get('auc'))}"
    rows.update({"re-ranker examples (+/−)": (f"{r.get('n_positive')}/{r.get('n_negative')}" if r else "–"),
                 "re-ranker held-out AUC": _fmt((r.get("heldout") or {}).get("auc")),
                 "excerpts with labels": _fmt(r.get("excerpts_with_priors")),
                 "exemplars": _fmt(m.get("exemplars", {}).get("n"))})
    return rows


def _print_metrics(metas, active: str | None = None) -> None:  # noqa: ANN001
    table = Table(title="snapshot metrics")
    table.add_column("metric")
    rows = [_metric_rows(m) for m in metas]
    for m in metas:
        table.add_column(m.version + (" (active)" if m.version == active else ""), justify="right")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    for key in keys:
        table.add_row(key, *(r.get(key, "–") for r in rows))
    console.print(table)


# ------------------------------------------------------------------ snapshots
@snapshots_app.command("list")
def snapshots_list(character: Optional[str] = typer.Argument(None, help="Only this character.")) -> None:
    """Snapshot versions per character, with their headline metrics; * marks the active one."""
    from app.tuning import snapshots as snap

    settings = command_settings()
    try:
        characters = [character] if character else snap.list_characters(settings)
        table = Table(title="tuning snapshots")
        for col in ("character", "version", "created", "reviews", "parts", "verifier acc", "verifier AUC",
                    "exemplars"):
            table.add_column(col)
        count = 0
        for cid in characters:
            active = snap.active_version(settings, cid)
            for m in snap.list_snapshots(settings, cid):
                held = m.metrics.get("verifier", {}).get("heldout", {})
                table.add_row(cid, ("* " if m.version == active else "  ") + m.version, m.created_at,
                              str(m.n_reviews), ",".join(m.parts), _fmt(held.get("accuracy")),
                              _fmt(held.get("auc")), _fmt(m.metrics.get("exemplars", {}).get("n")))
                count += 1
    except snap.SnapshotError as exc:
        fail(str(exc))
    if not count:
        console.print("no snapshots yet: run `bookbot tune CHARACTER` after editors have reviewed some steps")
        return
    console.print(table)


@snapshots_app.command("compare")
def snapshots_compare(character: str = typer.Argument(...),
                      versions: Optional[list[str]] = typer.Argument(
                          None, help="Versions to compare (default: the active one and the newest).")) -> None:
    """Metrics of snapshots side by side."""
    from app.tuning import snapshots as snap

    settings = command_settings()
    try:
        metas = {m.version: m for m in snap.list_snapshots(settings, character)}
        if not metas:
            fail(f"{character!r} has no snapshots; run `bookbot tune {character}` first")
        active = snap.active_version(settings, character)
        if not versions:
            newest = list(metas)[-1]
            versions = list(dict.fromkeys([v for v in (active, newest) if v]))
            if len(versions) == 1 and len(metas) > 1:
                versions = list(metas)[-2:]
        unknown = [v for v in versions if v not in metas]
        if unknown:
            fail(f"unknown version(s) {', '.join(unknown)} for {character}; have {', '.join(metas)}")
    except snap.SnapshotError as exc:
        fail(str(exc))
    _print_metrics([metas[v] for v in versions], active)


def _mirror(settings):  # noqa: ANN001, ANN202
    from app.tuning.snapshots import StoreMirror

    store = _store(settings, required=False)
    return (StoreMirror(store), store) if store is not None else (None, None)


@snapshots_app.command("activate")
def snapshots_activate(character: str = typer.Argument(...), version: str = typer.Argument(...)) -> None:
    """Make a snapshot active: new conversations with the character use it (no restart)."""
    from app.tuning import snapshots as snap

    settings = command_settings()
    mirror, store = _mirror(settings)
    try:
        if store is not None:      # built on another machine of a shared database: its files come from there
            snap.SharedSnapshots(settings, store).materialize(character, version)
        meta = snap.activate(settings, character, version, mirror=mirror)
    except (snap.SnapshotError, KeyError) as exc:
        fail(str(exc))
    finally:
        if store is not None:
            store.close()
    console.print(f"[green]{meta.id} is active[/green] for new conversations")


@snapshots_app.command("rollback")
def snapshots_rollback(character: str = typer.Argument(...)) -> None:
    """Go back to the previously active snapshot (or to the untuned bot)."""
    from app.tuning import snapshots as snap

    settings = command_settings()
    mirror, store = _mirror(settings)
    try:
        previous = snap.rollback(settings, character, mirror=mirror)
    except (snap.SnapshotError, KeyError) as exc:
        fail(str(exc))
    finally:
        if store is not None:
            store.close()
    console.print(f"[green]{character}: {previous or 'untuned (no snapshot)'} is active[/green] "
                  "for new conversations")


# ------------------------------------------------------------------ eval
def eval_fairytaleqa(
    path: Path = typer.Argument(..., help="FairytaleQA split to report on (e.g. ../shared/eval/fairytaleqa/val), "
                                          "or the dataset root together with --split."),
    train: Optional[Path] = typer.Option(None, "--train", help="Split the simulated reviews come from "
                                         "(default: <root>/<train-split>)."),
    simulate_reviews: int = typer.Option(3000, "--simulate-reviews", min=0,
                                         help="Most simulated step reviews (the curve's last point)."),
    split: str = typer.Option("val", help="Split folder under PATH when PATH is the dataset root."),
    train_split: str = typer.Option("train", help="Split folder for --train when it is not given."),
    counts: Optional[str] = typer.Option(None, help="Review counts of the learning curve, e.g. 0,100,300 "
                                         "(default: 0,100,300,1000,3000 up to --simulate-reviews)."),
    candidates: int = typer.Option(4, min=1, help="Candidates per step (best-of-N)."),
    noise: float = typer.Option(0.0, min=0.0, max=0.49, help="Label noise of the simulated editor."),
    seed: int = typer.Option(0, help="First seed of the simulated reviews."),
    seeds: int = typer.Option(3, min=1, help="Seeds per tuned point (their mean is reported)."),
    corrections: float = typer.Option(0.5, min=0.0, max=1.0,
                                      help="Share of -1 steps the simulated editor also corrects."),
    limit: Optional[int] = typer.Option(None, help="Only the first N report stories (quick runs)."),
    train_stories: int = typer.Option(120, min=1, help="Train stories the review questions are drawn from."),
    dense: bool = typer.Option(True, "--dense/--bm25-only", help="Use the embedding model (cached per text)."),
    plot: Optional[Path] = typer.Option(None, help="PNG learning curve (default <data_dir>/eval/fairytaleqa_curve.png)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the numbers as JSON here too."),
    save_snapshot: bool = typer.Option(True, "--save-snapshot/--no-save-snapshot",
                                       help="Keep the last tuned parts as a snapshot of the storyteller."),
) -> None:
    """Simulate editor reviews on train, tune on them, and measure the bot on val before/after."""
    from app.tuning.evalrun import EvalOptions, run_fairytaleqa

    settings = command_settings()
    try:
        review_counts = ([int(c) for c in counts.split(",") if c.strip()] if counts else None)
    except ValueError:
        fail(f"--counts must be comma-separated numbers, got {counts!r}")
    options = EvalOptions(path=path, train=train, split=split, train_split=train_split,
                          max_reviews=simulate_reviews, counts=review_counts, candidates=candidates,
                          noise=noise, seed=seed, seeds=seeds, corrections=corrections, limit=limit, train_stories=train_stories, dense=dense,
                          plot=plot, json_out=json_out, save_snapshot=save_snapshot)
    try:
        run_fairytaleqa(settings, options, console)
    except ValueError as exc:
        fail(str(exc))


def register(root: typer.Typer) -> None:
    root.command("tune")(tune)
    root.add_typer(snapshots_app, name="snapshots")
    existing = [g for g in root.registered_groups if g.name == "eval"]
    if existing:
        existing[0].typer_instance.command("fairytaleqa")(eval_fairytaleqa)
    else:
        eval_app.command("fairytaleqa")(eval_fairytaleqa)
        root.add_typer(eval_app, name="eval")
