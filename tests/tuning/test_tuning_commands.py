"""The CLI: `bookbot tune`, `bookbot snapshots …`, `bookbot eval fairytaleqa` (small)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from app.cli import build
from app.tuning.tune import build_snapshot

from tuning_synth import FakeHybrid, make_corpus, simulate

runner = CliRunner()


@pytest.fixture()
def cli_env(settings, monkeypatch, tmp_path):
    monkeypatch.setenv("BOOKBOT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("BOOKBOT_CHARACTERS_DIR", str(settings.characters_dir))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return settings


def invoke(*args: str):
    result = runner.invoke(build(), list(args))
    return result.exit_code, result.output


def test_snapshots_commands(cli_env):
    settings = cli_env
    assert invoke("snapshots", "list")[1].startswith("no snapshots yet")
    corpus = make_corpus(30, seed=1)
    items = simulate(corpus, FakeHybrid(corpus), 80, seed=2)
    build_snapshot(settings, "synth", items[:40])
    build_snapshot(settings, "synth", items)
    code, out = invoke("snapshots", "activate", "synth", "v1")
    assert code == 0 and "synth@v1 is active" in out
    code, out = invoke("snapshots", "list", "synth")
    assert code == 0 and "* v1" in out and "  v2" in out
    code, out = invoke("snapshots", "compare", "synth")
    assert code == 0 and "v1 (active)" in out and "v2" in out and "verifier ROC AUC" in out
    code, out = invoke("snapshots", "activate", "synth", "v2")
    code, out = invoke("snapshots", "rollback", "synth")
    assert code == 0 and "v1 is active" in out
    code, out = invoke("snapshots", "activate", "synth", "v9")
    assert code == 1 and "no snapshot synth@v9" in out
    code, out = invoke("snapshots", "compare", "synth", "v1", "v7")
    assert code == 1 and "unknown version(s) v7" in out
    # the store's table mirrors activations made from the CLI (rows added on first activation)
    from app.review.store import ReviewStore
    store = ReviewStore(settings.resolved_database_url)
    try:
        assert {r.id for r in store.list_snapshots("synth")} == {"synth@v1", "synth@v2"}
        assert store.active_snapshot("synth").id == "synth@v1"
    finally:
        store.close()


def test_tune_without_reviews_says_what_to_do(cli_env):
    code, out = invoke("tune", "nobody")
    assert code == 1 and "no reviewed steps for 'nobody'" in out


def test_eval_fairytaleqa_small(cli_env, shared_dir, tmp_path):
    root = shared_dir / "eval" / "fairytaleqa"
    plot, out_json = tmp_path / "curve.png", tmp_path / "eval.json"
    code, out = invoke("eval", "fairytaleqa", str(root / "val"), "--train", str(root / "train"),
                       "--simulate-reviews", "60", "--limit", "1", "--train-stories", "3", "--bm25-only",
                       "--seeds", "2", "--plot", str(plot), "--json", str(out_json))
    assert code == 0, out
    assert "FairytaleQA feedback loop" in out and "R@1:" in out and "95% CI" in out
    for row in ("retriever alone", "candidate oracle", "engine, untuned", "engine, 60 reviews"):
        assert row in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(out_json.read_text())
    assert [p["reviews"] for p in report["points"]] == [0, 60]
    assert len(report["points"][1]["per_seed"]) == 2 and 0 <= report["retriever"]["R@1"] <= 1
    lo, hi = report["summary"]["R@1_gain_interval"]
    assert lo <= report["summary"]["R@1_gain_points"] <= hi
    assert report["retrieval"] == "bm25" and report["val_stories"] == 1
    assert (cli_env.data_dir / "snapshots" / "fairytaleqa-storyteller" / "v1" / "meta.json").exists()
    code, out = invoke("eval", "fairytaleqa", str(root / "val"), "--train", str(root / "val"))
    assert code == 1 and "is the split being reported on" in out
    code, out = invoke("eval", "fairytaleqa", str(tmp_path), "--simulate-reviews", "10")
    assert code == 1 and "not a FairytaleQA split folder" in out


def test_tune_command_builds_and_activates_from_stored_reviews(cli_env, shared_dir):
    from app.bots.backends.extractive import ExtractiveBackend
    from app.bots.engine import Engine
    from app.domain import Role
    from app.review import db
    from app.review.store import ReviewStore
    from app.tuning.evaluation import Indexes
    from app.tuning.fairytaleqa import CHARACTER_ID, SimulatedEditor, load_split, storyteller

    settings = cli_env
    settings.ensure_dirs()
    db.upgrade(settings.resolved_database_url)
    store = ReviewStore(settings.resolved_database_url)
    story = load_split(shared_dir / "eval" / "fairytaleqa" / "train", limit=1)[0]
    engine = Engine(Indexes(None).get(story), ExtractiveBackend(), sink=store, candidates=2)
    try:
        for qa in story.questions[:10]:
            turn = engine.answer(storyteller(story.name), qa.question)
            for review in SimulatedEditor().review_turn(turn, qa.evidence):
                store.record_review(review, Role.editor)
    finally:
        store.close()
    code, out = invoke("tune", CHARACTER_ID)
    assert code == 0, out
    assert "no usable card" in out                      # not a card in characters/: still tunes
    # 30 reviewed steps leave too few held-out ones to show the snapshot is better: kept inactive
    assert f"snapshot {CHARACTER_ID}@v1" in out and "not active" in out and "verifier ROC AUC" in out
    assert "activation gate:" in out and "too few" in out
    assert "verifier: kept the untuned ranking" in out or "verifier: learned ranking" in out
    code, out = invoke("snapshots", "list", CHARACTER_ID)
    assert "* v1" not in out
    code, out = invoke("tune", CHARACTER_ID, "--activate")   # a lab member's explicit choice
    assert code == 0 and "v2" in out and "not active" not in out
    code, out = invoke("snapshots", "list", CHARACTER_ID)
    assert "* v2" in out
