"""Fakes for the bots tests: an in-memory retriever over given excerpts and a small character."""

from __future__ import annotations

import pytest
from bots_fakes import HOLMES_TEXTS, FakeRetriever, make_excerpt

from app.domain import Character, Excerpt, ProcedureStep


@pytest.fixture()
def excerpts() -> list[Excerpt]:
    out = [make_excerpt(eid, text) for eid, text in HOLMES_TEXTS[:-1]]
    out.append(make_excerpt("e6", HOLMES_TEXTS[-1][1], book_id="gutenberg-11",
                            title="Alice's Adventures in Wonderland"))
    return out


@pytest.fixture()
def retriever(excerpts) -> FakeRetriever:
    return FakeRetriever(excerpts)


@pytest.fixture()
def holmes() -> Character:
    return Character(
        id="sherlock-holmes", name="Sherlock Holmes", book_ids=("gutenberg-244",), language="en",
        description="A consulting detective.", personality="Cold, precise.", speech_style="Crisp.",
        greeting="Pray be seated.",
        procedure=(ProcedureStep("Observe", "Note the facts.", "observe perceive Afghanistan"),
                   ProcedureStep("Hypothesise", "Form a theory.", "theorize evidence"),
                   ProcedureStep("Conclude", "Conclude.", "eliminated impossible truth")),
        templates={"step": "{step}: \u201c{quote}\u201d ({book}, {chapter})", "answer": "Data: {points}"},
    )
