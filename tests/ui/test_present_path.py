"""How a turn's path is shown: revisits marked, the reason for each jump in one line (plain data, and the terminal)."""

from __future__ import annotations

from dataclasses import replace

from rich.console import Console

from app.bots.engine import StepStarted, TransitionTaken
from app.bots.render import EventPrinter
from app.domain import Character, Condition, ProcedureStep, Step, Transition
from app.ui import present

REASON = "every hypothesis eliminated → back to Hypothesise, visit 2 of 3"


def step(index, name, visit=1, via=""):
    return Step(id=f"s{index}", turn_id="t", index=index, name=name, text=f"{name} text.", citations=[],
                excerpts=[], visit=visit, via=via)


def test_titles_mark_revisits():
    assert present.step_title(0, "Observe") == "1 · Observe"
    assert present.step_title(4, "Hypothesise", 2) == "5 · Hypothesise ↺ revisit 2"


def test_step_shows_the_jump_reason_in_one_line_above_its_text():
    md = present.step_markdown(step(4, "Hypothesise", 2, REASON), [("Source 1", "A Study in Scarlet, ch. 1 ¶2")])
    first, rest = md.split("\n\n", 1)
    assert first == f"↪ _{REASON}_" and rest.startswith("Hypothesise text.")
    assert "↪" not in present.step_markdown(step(0, "Observe"), [])


def test_path_line_only_when_the_path_left_the_list():
    plain = [step(0, "Observe"), step(1, "Hypothesise"), step(2, "Eliminate")]
    assert present.path_line(plain) == ""
    looped = plain + [step(3, "Hypothesise", 2, REASON), step(4, "Eliminate", 2)]
    assert present.path_line(looped) == ("Path: Observe → Hypothesise → Eliminate → Hypothesise ↺2 → "
                                         "Eliminate ↺2")


def test_terminal_prints_revisit_and_reason():
    procedure = (ProcedureStep("Observe", "o"), ProcedureStep("Hypothesise", "h", max_visits=3),
                 ProcedureStep("Eliminate", "e", next=(Transition("Hypothesise", Condition(score_below=0.5)),)))
    character = Character("holmes", "Holmes", ("b",), "en", "d", "p", "s", "g", procedure)
    console = Console(record=True, width=120)
    printer = EventPrinter(console, character, streams=False)
    printer(TransitionTaken(from_name="Eliminate", to_name="Hypothesise", reason=REASON, visit=2, max_visits=3))
    printer(StepStarted(index=3, name="Hypothesise", step_id="s3", visit=2, via=REASON))
    text = console.export_text()
    assert f"↪ {REASON}" in text and "[4] Hypothesise ↺ revisit 2" in text
    linear = EventPrinter(Console(record=True), replace(character, procedure=procedure[:2]), streams=False)
    linear(StepStarted(index=0, name="Observe", step_id="s0"))
    assert "[1/2] Observe" in linear.console.export_text()
