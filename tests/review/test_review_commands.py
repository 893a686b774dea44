"""`bookbot db|reviews|users` end to end through Typer, on a SQLite file in a tmp data dir."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from app.domain import Review, ReviewKind, Role
from app.review import commands
from app.review.store import ReviewStore


def _cli() -> typer.Typer:
    root = typer.Typer()
    commands.register(root)
    return root


def test_db_users_reviews_commands(tmp_path, monkeypatch, turn_factory) -> None:  # noqa: ANN001
    data = tmp_path / "data"
    monkeypatch.setenv("BOOKBOT_DATA_DIR", str(data))
    monkeypatch.setenv("BOOKBOT_CHARACTERS_DIR", str(tmp_path / "no-cards"))
    monkeypatch.delenv("BOOKBOT_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    run = CliRunner().invoke
    cli = _cli()

    res = run(cli, ["db", "current"])
    assert res.exit_code == 0 and "blank" in res.output
    res = run(cli, ["db", "upgrade"])
    from app.review.db import head
    assert res.exit_code == 0 and f"blank → {head()}" in res.output, res.output
    assert "up to date" in run(cli, ["db", "current"]).output

    assert run(cli, ["users", "add", "edith", "--role", "editor", "--password", "s3cret-pass"]).exit_code == 0
    res = run(cli, ["users", "add", "rob", "--role", "reader"], input="pw-pw-pw-pw\npw-pw-pw-pw\n")
    assert res.exit_code == 0 and "added rob (reader)" in res.output
    res = run(cli, ["users", "add", "tess", "--role", "lab", "--password-stdin"], input="stdin-password\n")
    assert res.exit_code == 0 and "added tess (lab)" in res.output
    res = run(cli, ["users", "add", "edith", "--password", "s3cret-pass"])
    assert res.exit_code == 1 and "already exists" in res.output
    res = run(cli, ["users", "set-role", "rob", "wizard"])
    assert res.exit_code == 1 and "unknown role" in res.output
    assert "rob is now editor" in run(cli, ["users", "set-role", "rob", "editor"]).output
    res = run(cli, ["users", "list"])
    assert "edith" in res.output and "rob" in res.output

    store = ReviewStore(f"sqlite:///{data / 'bookbot.db'}")
    turn = turn_factory()
    store.save_turn(turn)
    for reviewer, ratings in (("edith", (1, -1, -1)), ("rob", (1, 0, 1))):
        for st, rating in zip(turn.steps, ratings):
            if reviewer == "edith" and st.index == 2:
                continue                              # inferred after her -1
            store.record_review(Review(step_id=st.id, reviewer=reviewer, kind=ReviewKind.editor,
                                       rating=rating), Role.editor)
    store.close()

    out = tmp_path / "reviews" / "holmes.jsonl"
    res = run(cli, ["reviews", "export", "--format", "trl-stepwise", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "wrote 2 trl-stepwise rows" in res.output and "true: 4" in res.output and "false: 2" in res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["labels"] for r in rows] == [[True, False, False], [True, True, True]]
    res = run(cli, ["reviews", "export", "--format", "parquet", "--out", str(out)])
    assert res.exit_code == 1 and "unknown format" in res.output

    res = run(cli, ["reviews", "stats", "--json"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output)
    assert stats["labels"]["editor/inferred/-1"] == 1 and stats["pairs"][0]["n"] == 2
    res = run(cli, ["reviews", "stats"])
    assert res.exit_code == 0 and "Cohen's kappa" in res.output and "Krippendorff" in res.output


def test_db_upgrade_unreachable_postgres(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("BOOKBOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BOOKBOT_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/x?connect_timeout=2")
    res = CliRunner().invoke(_cli(), ["db", "upgrade"])
    assert res.exit_code == 1 and "unavailable" in res.output and "is PostgreSQL running" in res.output
