"""Holmes loops back once, in a real browser: the revisit is marked, the jump explained in one line,
the path summarised, and an editor's −1 on the revisit ends the review of the steps after it on the path.

A lab member tightens Holmes's card on the running server (hot reload): elimination now always sends
him back to Hypothesise, at most twice — so the path is fixed whatever the verifier says.
"""

from __future__ import annotations

import pytest

from app.domain import ReviewKind, ReviewSource
from conftest import ARTIFACTS
from test_browser import ask, latest_turn, login, pick_profile

pytestmark = pytest.mark.slow

QUESTION = "What did Holmes conclude about the man's wound?"
REASON = "every hypothesis eliminated → back to Hypothesise, visit 2 of 2"
PATH = ["Observe", "Recall", "Hypothesise", "Eliminate", "Hypothesise", "Eliminate", "Conclude"]


OBSERVE_AGAIN = """      next:
        - when: {fault: [not_in_book, wrong_excerpt]}
          to: Observe
          because: no data yet, and I cannot make bricks without clay
        - when: {score_below: 0.91}
          to: Observe
          because: the data are thin, so I look again
"""


@pytest.fixture()
def looping_holmes(ui_settings):
    card = ui_settings.characters_dir / "sherlock-holmes.yaml"
    shipped = card.read_text(encoding="utf-8")
    assert OBSERVE_AGAIN in shipped and "{score_below: 0.70}" in shipped and "      max_visits: 3\n" in shipped
    card.write_text(shipped.replace(OBSERVE_AGAIN, "").replace("{score_below: 0.70}", "{score_below: 1.0}")
                    .replace("      max_visits: 3\n", "      max_visits: 2\n"), encoding="utf-8")
    try:
        yield
    finally:
        card.write_text(shipped, encoding="utf-8")


def test_holmes_loops_back_once_and_the_ui_shows_the_path(browser, ui_server, ui_store, looping_holmes):
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    login(page, ui_server, "ed")
    pick_profile(page, "Sherlock Holmes", "Pray take a seat")
    ask(page, QUESTION)
    controls = page.locator('[data-testid="editor-controls"]')
    controls.nth(len(PATH) - 1).wait_for(timeout=120_000)
    assert controls.count() == len(PATH)
    page.get_by_text("5 · Hypothesise ↺ revisit 2").first.wait_for(timeout=10_000)
    page.get_by_text("6 · Eliminate ↺ revisit 2").first.wait_for(timeout=10_000)
    assert page.get_by_text("3 · Hypothesise").count() >= 1
    assert page.get_by_text("3 · Hypothesise ↺").count() == 0           # the first visit is not marked
    jump = page.get_by_text(REASON)
    jump.first.wait_for(timeout=10_000)
    assert jump.count() == 1                                          # one line, on the revisited step
    page.get_by_text("Path: Observe → Recall → Hypothesise → Eliminate → Hypothesise ↺2 → Eliminate ↺2 → "
                     "Conclude").first.wait_for(timeout=10_000)

    turn = latest_turn(ui_store, "ed")
    assert [s.name for s in turn.steps] == PATH and turn.question == QUESTION
    assert [s.visit for s in turn.steps] == [1, 1, 1, 1, 2, 2, 1] and turn.steps[4].via == REASON

    revisit = controls.nth(4)                                          # rate the revisit wrong
    revisit.scroll_into_view_if_needed()
    revisit.locator('[data-testid="rate--1"]').click()
    revisit.locator('[data-testid="save-review"]').click()
    page.locator('[data-testid="editor-recorded"]', has_text="Recorded −1").first.wait_for(timeout=20_000)
    page.locator('[data-testid="editor-recorded"]', has_text="Counted wrong").nth(1).wait_for(timeout=20_000)
    assert page.locator('[data-testid="editor-recorded"]', has_text="Counted wrong").count() == 2
    page.get_by_text(REASON).first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "08_holmes_loops_back.png"))
    rows = [ui_store.reviews_for_step(s.id, kind=ReviewKind.editor) for s in turn.steps]
    assert [r[0].source if r else None for r in rows] == [None, None, None, None, ReviewSource.human,
                                                         ReviewSource.inferred, ReviewSource.inferred]
    page.close()
