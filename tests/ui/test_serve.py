"""`bookbot serve` start-up rules and `bookbot users` (no server needed)."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from app.cli import build
from app.ui import commands

runner = CliRunner()


@pytest.fixture()
def env(settings, monkeypatch):
    monkeypatch.setenv("BOOKBOT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("BOOKBOT_BOOKS_DIR", str(settings.books_dir))
    monkeypatch.delenv("BOOKBOT_DEV_MODE", raising=False)
    monkeypatch.delenv("BOOKBOT_AUTH_SECRET", raising=False)
    return settings


def test_first_start_creates_a_lab_account_with_a_one_time_random_password(env, monkeypatch):
    from app.review.store import ReviewStore

    monkeypatch.setattr(commands.os, "execve", lambda *a: None)
    result = runner.invoke(build(), ["serve", "--no-sync-books"])
    assert result.exit_code == 0, result.output
    match = re.search(r"account 'admin' \(lab\) with password (\S+)", result.output)
    assert match, result.output
    store = ReviewStore(env.resolved_database_url)
    assert [(u.name, u.role.value) for u in store.list_users()] == [("admin", "lab")]
    assert store.authenticate("admin", match.group(1)) is not None
    assert store.authenticate("admin", "admin") is None
    store.close()
    again = runner.invoke(build(), ["serve", "--no-sync-books"])        # only on the very first start
    assert again.exit_code == 0 and "with password" not in again.output
    other = runner.invoke(build(), ["serve", "--no-sync-books"], env={"BOOKBOT_DATA_DIR": str(env.data_dir / "b")})
    assert re.search(r"with password (\S+)", other.output).group(1) != match.group(1)   # random, not built in


def test_users_set_password(env):
    app = build()
    runner.invoke(app, ["users", "add", "ann", "--role", "editor", "--password-stdin"], input="long-enough-pw\n")
    r = runner.invoke(app, ["users", "set-password", "ann", "--password-stdin"], input="another-long-pw\n")
    assert r.exit_code == 0, r.output
    from app.review.store import ReviewStore

    store = ReviewStore(env.resolved_database_url)
    assert store.authenticate("ann", "another-long-pw") and not store.authenticate("ann", "long-enough-pw")
    store.close()
    r = runner.invoke(app, ["users", "set-password", "nobody", "--password-stdin"], input="another-long-pw\n")
    assert r.exit_code == 1 and "no user named" in r.output


def test_dev_mode_creates_demo_users_and_production_has_no_default_password(env, monkeypatch):
    from app.review.store import ReviewStore

    calls = []
    monkeypatch.setattr(commands.os, "execve", lambda *a: calls.append(a))
    monkeypatch.setattr(commands.os, "chdir", lambda *a: None)
    monkeypatch.setenv("BOOKBOT_DEV_MODE", "1")
    result = runner.invoke(build(), ["serve", "--no-sync-books", "--port", "8123"])
    assert result.exit_code == 0, result.output
    store = ReviewStore(env.resolved_database_url)
    assert {u.name: u.role.value for u in store.list_users()} == {"reader": "reader", "editor": "editor",
                                                                 "lab": "lab"}
    assert store.authenticate("editor", commands.demo_password("editor")) is not None
    store.close()
    (_, argv, child_env), = calls
    assert argv[-5:] == ["--host", "127.0.0.1", "--port", "8123", "--headless"][-5:]
    assert "DATABASE_URL" not in child_env and child_env["CHAINLIT_AUTH_SECRET"]
    assert child_env["BOOKBOT_DATA_DIR"] == str(env.data_dir.resolve())
    app_root = commands.Path(child_env["CHAINLIT_APP_ROOT"])
    assert app_root.parent == env.data_dir.resolve()              # Chainlit's .files stay in the data dir
    assert (app_root / ".chainlit" / "config.toml").is_file() and (app_root / "public" / "elements").is_dir()
    secret_file = env.data_dir / "auth_secret"
    assert oct(secret_file.stat().st_mode)[-3:] == "600"
    assert commands.auth_secret(env) == child_env["CHAINLIT_AUTH_SECRET"]     # stable across starts


def test_users_add_list_set_role(env):
    app = build()
    r = runner.invoke(app, ["users", "add", "ann", "--role", "editor", "--password-stdin"],
                      input="long-enough-pw\n")
    assert r.exit_code == 0 and "added ann (editor)" in r.output
    r = runner.invoke(app, ["users", "add", "bob", "--password-stdin"], input="short\n")
    assert r.exit_code == 1 and "too short" in r.output
    r = runner.invoke(app, ["users", "set-role", "ann", "lab"])
    assert r.exit_code == 0 and "ann is now lab" in r.output
    r = runner.invoke(app, ["users", "set-role", "nobody", "lab"])
    assert r.exit_code == 1 and "no user named" in r.output
    r = runner.invoke(app, ["users", "list"])
    assert "ann" in r.output and "lab" in r.output


def test_chainlit_config_keeps_steps_and_controls_visible():
    import tomllib

    cfg = tomllib.loads((commands.ROOT / ".chainlit" / "config.toml").read_text())
    assert cfg["UI"]["cot"] == "full"
    assert cfg["features"]["spontaneous_file_upload"]["enabled"] is False
    ko = json.loads((commands.ROOT / ".chainlit" / "translations" / "ko.json").read_text())
    assert ko["auth"]["login"]["form"]["email"]["label"] == "사용자 이름"
    assert (commands.ROOT / "chainlit_ko-KR.md").read_text().startswith("# Bookbot")
