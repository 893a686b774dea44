"""Rich rendering of engine events in a terminal (used by `bookbot ask` and `bookbot chat`).

Shows the mode (OFFLINE MODE clearly), each step as it starts, its streamed
text, the chosen text with its citations (book, chapter, quoted passage) or an
UNGROUNDED warning, notices, the answer, and timings.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from app.bots.engine import (AnswerDelta, EngineEvent, Notice, StepDelta, StepDone, StepStarted, TransitionTaken,
                             TurnDone, TurnStarted)
from app.domain import Character, Step, Turn

OFFLINE_BANNER = ("OFFLINE MODE — no language model configured: every step is quoted straight from the "
                  "book (set BOOKBOT_LLM_BASE_URL and BOOKBOT_LLM_MODEL to use one).")


def mode_banner(console: Console, backend_name: str, offline: bool) -> None:
    if offline:
        console.print(Panel(Text(OFFLINE_BANNER, style="bold yellow"), border_style="yellow"))
    else:
        console.print(f"[dim]Model: {escape(backend_name)}[/dim]")


def _excerpt_title(step: Step, excerpt_id: str) -> str:
    for e in step.excerpts:
        if e.id == excerpt_id:
            return f"{e.book_title or e.book_id}, {e.location.label()}"
    return excerpt_id


def render_step(console: Console, step: Step, total: int | None, show_text: bool = True) -> None:
    if show_text:
        console.print(Text(step.text))
    valid = [c for c in step.citations if c.valid]
    if step.grounded:
        for c in valid:
            console.print(Text.assemble(("   \u2514 ", "dim"), (_excerpt_title(step, c.excerpt_id), "cyan"),
                                        (": ", "dim"), (f"\u201c{c.quote}\u201d", "italic")))
    else:
        console.print(Text("   \u26a0 UNGROUNDED: no valid citation for this step; do not rely on it.",
                           style="bold red"))
    for c in step.citations:
        if not c.valid:
            console.print(Text(f"   \u2717 rejected citation {c.excerpt_id!r}: {c.problem}", style="dim red"))
    if step.origin == "fallback":
        console.print(Text("   \u21ba OFFLINE FALLBACK: the model failed; this step is quoted from the book.",
                           style="yellow"))
    console.print(Text(f"   {'model · ' if step.origin == 'model' else ''}retrieval {step.retrieval_ms:.0f} ms · "
                       f"generation {step.generation_ms:.0f} ms · score {step.score:.2f} · "
                       f"{len(step.candidates)} candidate(s)", style="dim"))


class EventPrinter:
    """Feeds engine events to a Rich console as they arrive."""

    def __init__(self, console: Console, character: Character, streams: bool):
        self.console = console
        self.character = character
        self.streams = streams
        self.total = len(character.procedure) if not any(s.next for s in character.procedure) else None
        self._streamed: dict[int, str] = {}
        self._answer = ""
        self.turn: Turn | None = None

    def __call__(self, event: EngineEvent) -> None:
        c = self.console
        if isinstance(event, TurnStarted):
            mode_banner(c, event.backend, event.offline)
        elif isinstance(event, StepStarted):
            self._streamed[event.index] = ""
            where = f"{event.index + 1}/{self.total}" if self.total else f"{event.index + 1}"
            again = f" ↺ revisit {event.visit}" if event.visit > 1 else ""
            c.print(Text(f"\n[{where}] {event.name}{again}", style="bold magenta"))
        elif isinstance(event, TransitionTaken):
            c.print(Text(f"   ↪ {event.reason}", style="cyan"))
        elif isinstance(event, StepDelta):
            if self.streams:
                self._streamed[event.index] = self._streamed.get(event.index, "") + event.text
                c.print(Text(event.text, style="dim"), end="")
        elif isinstance(event, StepDone):
            streamed = self._streamed.get(event.step.index, "")
            if streamed:
                c.print()
            same = streamed.strip() == event.step.text.strip()
            render_step(c, event.step, self.total, show_text=not same)
        elif isinstance(event, Notice):
            style = "bold red" if event.level == "error" else "bold yellow"
            c.print(Panel(Text(event.message, style=style), border_style=style.split()[-1]))
        elif isinstance(event, AnswerDelta):
            if not self._answer:
                c.print(Text(f"\n{self.character.name}:", style="bold green"))
            self._answer += event.text
            if self.streams:
                c.print(Text(event.text), end="")
        elif isinstance(event, TurnDone):
            self.turn = event.turn
            if self.streams:
                c.print()
            else:
                c.print(Text(event.turn.answer))
            grounded = sum(s.grounded for s in event.turn.steps)
            c.print(Text(f"\n{grounded}/{len(event.turn.steps)} steps grounded · backend "
                         f"{event.turn.backend} · {event.total_ms:.0f} ms", style="dim"))
