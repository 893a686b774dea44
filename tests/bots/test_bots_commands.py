"""The `bookbot ask/chat/characters` commands through Typer's runner, on a real (BM25-only) library."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from app.bots import commands

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def cli(tmp_path, monkeypatch):
    chars = tmp_path / "characters"
    shutil.copytree(ROOT / "characters", chars)
    for name, value in {"BOOKBOT_DATA_DIR": tmp_path / "data", "BOOKBOT_CHARACTERS_DIR": chars,
                        "BOOKBOT_BOOKS_DIR": ROOT / "books",
                        "BOOKBOT_EMBED_MODEL_DIR": tmp_path / "no-model"}.items():
        monkeypatch.setenv(name, str(value))
    for name in ("BOOKBOT_LLM_BASE_URL", "BOOKBOT_LLM_MODEL", "BOOKBOT_DATABASE_URL", "BOOKBOT_CHROMA_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    app = typer.Typer()
    commands.register(app)
    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)
    run.chars = chars
    return run


def test_characters_list_and_check(cli):
    out = cli("characters", "list")
    assert out.exit_code == 0 and "sherlock-holmes" in out.output and "kim-cheomji" in out.output
    out = cli("characters", "check")
    assert out.exit_code == 0 and out.output.count("✓") == 4
    bad = cli.chars / "alice.yaml"
    bad.write_text(bad.read_text("utf-8").replace("greeting: >-", "greetin: >-"), "utf-8")
    out = cli("characters", "check")
    assert out.exit_code == 1
    assert "alice.yaml:" in out.output and "greetin" in out.output and "did you mean `greeting`" in out.output
    out = cli("characters", "list")
    assert "stale" not in out.output and "alice.yaml" in out.output   # fresh registry: no good version yet


def test_new_import_export(cli, tmp_path):
    out = cli("characters", "new", "dr-watson", "--name", "Dr Watson", "--book", "gutenberg-244")
    assert out.exit_code == 0 and (cli.chars / "dr-watson.yaml").exists()
    assert cli("characters", "new", "dr-watson", "--name", "x").exit_code == 1
    assert cli("characters", "check", "dr-watson").exit_code == 0
    out = cli("characters", "export", "sherlock-holmes", "-o", str(tmp_path / "holmes.json"))
    assert out.exit_code == 0
    data = json.loads((tmp_path / "holmes.json").read_text("utf-8"))
    assert data["spec"] == "chara_card_v2" and data["data"]["name"] == "Sherlock Holmes"
    data["data"]["name"] = "Mycroft Holmes"
    data["data"]["extensions"]["bookbot"]["id"] = "mycroft-holmes"
    (tmp_path / "mycroft.json").write_text(json.dumps(data), "utf-8")
    out = cli("characters", "import", str(tmp_path / "mycroft.json"))
    assert out.exit_code == 0, out.output
    assert "Mycroft Holmes" in (cli.chars / "mycroft-holmes.yaml").read_text("utf-8")
    assert cli("characters", "import", str(tmp_path / "mycroft.json")).exit_code == 1   # exists
    assert cli("characters", "check", "mycroft-holmes").exit_code == 0


@pytest.fixture()
def alice_library(cli, shared_dir):
    from app.library import open_library
    from app.settings import Settings
    library = open_library(Settings())
    library.add_file(shared_dir / "books" / "alice_wonderland_11.txt")
    library.close()


def test_ask_offline_prints_steps_citations_answer(cli, alice_library):
    out = cli("ask", "alice", "Why did Alice follow the White Rabbit down the rabbit-hole?")
    assert out.exit_code == 0, out.output
    text = out.output
    assert "OFFLINE MODE" in text
    for name in ["Notice", "Check the rules", "Try it", "Make sense of it"]:   # Alice's card is a graph:
        assert re.search(rf"\[\d+\] {name}", text)                              # steps numbered on the path
    assert "Alice\u2019s Adventures in Wonderland" in text and "ch. " in text and "\u201c" in text
    assert "Curiouser and curiouser!" in text          # the card's answer template
    assert "steps grounded" in text


def test_ask_json_and_unknown_character(cli, alice_library):
    out = cli("ask", "alice", "Who is the Cheshire Cat?", "--json", "-n", "1")
    turn = json.loads(out.output)
    assert turn["character_id"] == "alice" and turn["backend"] == "extractive"
    names = [s["name"] for s in turn["steps"]]                      # Alice's card is a graph: every step
    assert set(names) == {"Notice", "Check the rules", "Try it", "Make sense of it"} and len(names) <= 8
    assert [s["index"] for s in turn["steps"]] == list(range(len(names)))   # numbered on the path
    assert all(len(s["candidates"]) == 1 for s in turn["steps"])
    assert all(s["grounded"] and all(c["valid"] for c in s["citations"]) for s in turn["steps"])
    out = cli("ask", "nobody", "hi")
    assert out.exit_code == 1 and "no character 'nobody'" in out.output


def test_ask_without_books_says_how_to_fix(cli):
    out = cli("ask", "elizabeth-bennet", "Who is Mr Darcy?")
    assert out.exit_code == 1 and "bookbot books sync" in out.output


def test_chat_repl(cli, alice_library):
    out = cli("chat", "alice", input="What did the Caterpillar ask?\nexit\n")
    assert out.exit_code == 0, out.output
    assert "How do you do?" in out.output and "OFFLINE MODE" in out.output and "[4] " in out.output


def test_ask_save_stores_turn_for_review(cli, alice_library, tmp_path):
    out = cli("ask", "alice", "What did the Caterpillar ask Alice?", "--save", "--json", "-n", "2")
    assert out.exit_code == 0, out.output
    printed = json.loads(out.output[out.output.index("{"):])
    from app.review.store import ReviewStore
    from app.settings import Settings
    store = ReviewStore(Settings().resolved_database_url)
    try:
        turn = store.get_turn(printed["id"])
    finally:
        store.close()
    assert turn is not None and turn.character_id == "alice" and len(turn.steps) >= 4
    assert [s.id for s in turn.steps] == [s["id"] for s in printed["steps"]]      # stored in path order
    assert [(s.visit, s.via) for s in turn.steps] == [(s["visit"], s["via"]) for s in printed["steps"]]
    assert sum(len(s.candidates) for s in turn.steps) == sum(len(s["candidates"]) for s in printed["steps"])
    assert all(c.features for s in turn.steps for c in s.candidates)


def test_ask_json_prints_only_json_on_stdout(cli, alice_library):
    card = cli.chars / "alice.yaml"
    text = card.read_text("utf-8")
    card.write_text(text.replace("books:\n", "books:\n  - gutenberg-99999\n", 1), "utf-8")
    out = cli("ask", "alice", "Who is the Cheshire Cat?", "--json", "-n", "1")
    assert out.exit_code == 0, out.output
    turn = json.loads(out.stdout)                         # stdout is JSON and nothing else
    assert "Missing books" in out.stderr and "gutenberg-99999" in out.stderr
    assert {s["origin"] for s in turn["steps"]} == {"offline"}
