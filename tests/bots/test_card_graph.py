"""Cards with procedure graphs: `check` names each graph error with file, line and fix; Card V2 keeps the graph."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from app.bots import commands
from app.bots.cardio import card_to_v2, card_to_yaml, import_v2
from app.bots.cards import CardInvalid, parse_card_file, parse_card_text
from app.domain import STOP, Condition, Transition

ROOT = Path(__file__).resolve().parents[2]
HOLMES = (ROOT / "characters" / "sherlock-holmes.yaml").read_text(encoding="utf-8")
ELIMINATE_RULE = """        - when: {score_below: 0.70}
          to: Hypothesise
          because: every hypothesis eliminated
"""


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_shipped_holmes_graph():
    holmes = parse_card_text(HOLMES, Path("sherlock-holmes.yaml")).to_character()
    steps = {s.name: s for s in holmes.procedure}
    assert steps["Eliminate"].next == (Transition("Hypothesise", Condition(score_below=0.70),
                                                  "every hypothesis eliminated"),)
    assert steps["Hypothesise"].max_visits == 3 and steps["Observe"].max_visits == 2
    assert steps["Observe"].next[0].to == "Observe"
    assert steps["Observe"].next[0].when.fault == ("not_in_book", "wrong_excerpt")


@pytest.mark.parametrize("mutate, needle, message, fix", [
    (lambda t: t.replace("to: Hypothesise", "to: Hypothesis"), "to: Hypothesis",
     "transition to unknown step 'Hypothesis'", "did you mean `to: Hypothesise`?"),
    (lambda t: t.replace(ELIMINATE_RULE, ELIMINATE_RULE + "        - to: stop\n"), None, None, None),
    (lambda t: t.replace("no data yet, and I cannot make bricks without clay\n",
                         "no data yet, and I cannot make bricks without clay\n        - to: Conclude\n"),
     "- name: Recall", "step 'Recall' can never be reached", "add a transition `- to: Recall`"),
    (lambda t: t.replace("      max_visits: 3\n", ""), "- name: Hypothesise",
     "the loop Hypothesise → Eliminate → Hypothesise has no limit", "add `max_visits: 2` (or 3) to step Hypothesise"),
])
def test_graph_errors_name_file_line_and_fix(tmp_path, mutate, needle, message, fix):
    text = mutate(HOLMES)
    path = tmp_path / "sherlock-holmes.yaml"
    path.write_text(text, encoding="utf-8")
    if message is None:                    # Eliminate then always stops: Conclude is never reached
        with pytest.raises(CardInvalid) as info:
            parse_card_file(path)
        (err,) = info.value.errors
        assert "step 'Conclude' can never be reached" in err.message
        assert err.line == line_of(text, "- name: Conclude")
        return
    with pytest.raises(CardInvalid) as info:
        parse_card_file(path)
    errors = [e for e in info.value.errors if message in e.message]
    assert len(errors) == 1, info.value
    err = errors[0]
    assert err.line == line_of(text, needle) and fix in err.fix and err.path == path
    assert str(err).startswith(f"{path}:{err.line}: procedure.steps.")


@pytest.mark.parametrize("when, message", [
    ("{fault: out_of_character}", "fault 'out_of_character' is a fault only an editor can judge"),
    ("{fault: sloppy}", "fault 'sloppy' is no fault tag"),
    ("{score_below: 60}", "less than or equal to 1"),
    ("{visits_below: 1}", "greater than or equal to 2"),
    ("{score_belo: 0.6}", "Extra inputs are not permitted"),
])
def test_bad_conditions_are_explained(tmp_path, when, message):
    text = HOLMES.replace("{score_below: 0.70}", when)
    with pytest.raises(CardInvalid) as info:
        parse_card_text(text, tmp_path / "sherlock-holmes.yaml")
    err = next(e for e in info.value.errors if message in e.message)
    assert err.line == line_of(text, when) and err.field.startswith("procedure.steps.3.next.0.when")


def test_stop_is_reserved_and_shorthand_when(tmp_path):
    text = HOLMES.replace("    - name: Conclude\n", "    - name: Stop\n").replace("step:Conclude", "step:Stop")
    with pytest.raises(CardInvalid) as info:
        parse_card_text(text, tmp_path / "sherlock-holmes.yaml")
    assert any("'Stop' is reserved" in e.message for e in info.value.errors)
    text = HOLMES.replace("{fault: [not_in_book, wrong_excerpt]}", "ungrounded")
    card = parse_card_text(text, tmp_path / "sherlock-holmes.yaml")
    assert card.to_character().procedure[0].next[0].when == Condition(ungrounded=True)
    assert STOP == "stop"


def test_card_v2_round_trip_keeps_the_graph(tmp_path):
    card = parse_card_text(HOLMES, Path("sherlock-holmes.yaml"))
    v2 = card_to_v2(card)
    steps = v2["data"]["extensions"]["bookbot"]["procedure"]["steps"]
    assert steps[3]["next"] == [{"to": "Hypothesise", "when": {"score_below": 0.70},
                                 "because": "every hypothesis eliminated"}]
    assert steps[2]["max_visits"] == 3 and "next" not in steps[1] and "max_visits" not in steps[1]
    path = tmp_path / "holmes.json"
    path.write_text(json.dumps(v2), encoding="utf-8")
    back = import_v2(path)
    assert back == card and back.to_character().procedure == card.to_character().procedure
    yaml_text = card_to_yaml(back)
    assert "max_visits: 3" in yaml_text and "next: []" not in yaml_text and "null" not in yaml_text
    # a broken graph in a V2 file is refused with the path inside the V2 card
    steps[3]["next"][0]["to"] = "Hypothesis"
    path.write_text(json.dumps(v2), encoding="utf-8")
    with pytest.raises(CardInvalid) as info:
        import_v2(path)
    assert info.value.errors[0].field == "data.extensions.bookbot.procedure.steps.3.next.0.to"


def test_check_command_reports_graph_errors(tmp_path, monkeypatch):
    chars = tmp_path / "characters"
    shutil.copytree(ROOT / "characters", chars)
    for name, value in {"BOOKBOT_DATA_DIR": tmp_path / "data", "BOOKBOT_CHARACTERS_DIR": chars,
                        "BOOKBOT_BOOKS_DIR": ROOT / "books"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("COLUMNS", "250")
    app = typer.Typer()
    commands.register(app)
    holmes = chars / "sherlock-holmes.yaml"
    holmes.write_text(HOLMES.replace("      max_visits: 3\n", "").replace("to: Observe", "to: Obsrve"), "utf-8")
    out = CliRunner().invoke(app, ["characters", "check", "sherlock-holmes"], catch_exceptions=False)
    assert out.exit_code == 1
    text = re.sub(r"\s+", " ", out.output)
    assert "transition to unknown step 'Obsrve'" in text and "did you mean `to: Observe`?" in text
    assert "has no limit" in text and f"sherlock-holmes.yaml:{line_of(holmes.read_text('utf-8'), '- name: Hypothesise')}" in text
