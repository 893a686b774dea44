"""Bookbot as a person uses it: real `bookbot serve`, real Chromium, real database rows.

Editor: sign in, pick Sherlock Holmes, ask, see ≥3 steps with citations, open a
cited passage, rate a step −1 with a correction containing markup (shown as
text, never run), find the review (and the inferred labels after it) in the
database, reopen the thread and see the review recorded.  Reader: thumbs only,
no editor controls.  Review desk: the reader's turn is queued for the editor.
Bad input: oversized and other-language questions get a plain answer.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app.domain import ReviewKind, ReviewSource
from conftest import ARTIFACTS, USERS

pytestmark = pytest.mark.slow

QUESTION = "How did you know Watson had been in Afghanistan?"
MARKUP = "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script> Holmes saw the tan"


def login(page, base: str, name: str) -> None:
    page.goto(base + "/")
    page.fill("#email", name)
    page.fill("#password", USERS[name][1])
    page.click("button[type=submit]")
    page.wait_for_selector("#chat-input", timeout=30_000)


def pick_profile(page, profile: str, expect_text: str) -> None:
    page.click("#chat-profiles")
    page.click(f'[data-test="select-item:{profile}"]')
    confirm = page.get_by_role("button", name="Confirm")
    try:
        confirm.wait_for(timeout=2_000)
        confirm.click()
    except Exception:
        pass
    page.get_by_text(expect_text).first.wait_for(timeout=30_000)


def ask(page, text: str) -> None:
    """Type and send as a person does: Enter once the send button is enabled, i.e. the composer holds
    the text and no answer is running (before that, Enter sends nothing: a busy machine showed it)."""
    page.fill("#chat-input", text)
    try:
        expect(page.locator("#chat-submit")).to_be_enabled(timeout=45_000)
    except AssertionError:
        # Seen twice on this machine (1 Dec 2026): after a refused message the composer holds the text but
        # Chainlit's client still counts a task as running (no stop button, send disabled) although the
        # server answered.  A person reloads the page; so does the test, and keeps the evidence.
        page.screenshot(path=str(ARTIFACTS / "stuck_composer.png"))
        print(f"composer stuck: stop button shown={page.locator('#stop-button').count()}, "
              f"input={page.locator('#chat-input').input_value()[:40]!r}; reloading")
        page.reload()
        page.wait_for_selector("#chat-input", timeout=30_000)
        page.fill("#chat-input", text)
        expect(page.locator("#chat-submit")).to_be_enabled(timeout=45_000)
    page.keyboard.press("Enter")


def latest_turn(store, user: str):
    from app.review.models import TurnRow

    with store._tx() as s:
        turn_id = s.scalar(select(TurnRow.id).where(TurnRow.user_id == user)
                           .order_by(TurnRow.created_at.desc()).limit(1))
    return store.get_turn(turn_id) if turn_id else None


def test_editor_asks_opens_a_passage_rates_minus_one_and_finds_it_stored(browser, ui_server, ui_store):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("dialog", lambda d: d.dismiss())
    login(page, ui_server, "ed")
    pick_profile(page, "Sherlock Holmes", "Pray take a seat")
    assert page.get_by_text("Offline mode.").count() == 1          # said once, plainly
    ask(page, QUESTION)
    controls = page.locator('[data-testid="editor-controls"]')
    controls.nth(4).wait_for(timeout=90_000)                        # at least the five procedure steps
    page.get_by_text("I draw my conclusion").first.wait_for(timeout=90_000)   # the answer: every step done
    taken = len(latest_turn(ui_store, "ed").steps)                  # Holmes's card is a graph: he may loop
    assert controls.count() == taken >= 5
    links = page.locator(".element-link", has_text=re.compile("source 1", re.I))
    assert links.count() >= 3                                       # every step cites the book
    page.get_by_text("1 · Observe").first.wait_for()
    answer_y = page.locator('[data-step-type="assistant_message"]').last.bounding_box()["y"]
    last_step_y = page.locator('[data-step-type="tool"]').last.bounding_box()["y"]
    assert answer_y > last_step_y                                   # the answer comes after the steps
    page.screenshot(path=str(ARTIFACTS / "01_editor_answer.png"))

    links.nth(1).click()                                            # open step 2's cited passage
    side = page.locator('[data-testid="excerpt"]')
    side.first.wait_for(timeout=10_000)
    assert "A Study In Scarlet" in side.first.inner_text()
    assert page.locator('[data-testid="excerpt-quote"]').count() >= 1
    page.screenshot(path=str(ARTIFACTS / "02_cited_passage.png"))

    step2 = controls.nth(1)
    step2.locator('[data-testid="rate--1"]').click()
    step2.locator('[data-testid="tag-faulty_logic"]').click()
    step2.locator('[data-testid="correction"]').fill(MARKUP)
    step2.locator('[data-testid="save-review"]').click()
    page.locator('[data-testid="editor-recorded"]', has_text="Recorded −1").first.wait_for(timeout=20_000)
    page.locator('[data-testid="editor-recorded"]', has_text="Counted wrong").nth(2).wait_for(timeout=20_000)
    shown = page.locator('[data-testid="recorded-correction"]').first.inner_text()
    assert MARKUP in shown                                          # the markup is shown as text
    assert page.evaluate("window.__pwned") is None                  # ... and never ran
    step2.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "03_step_rated_minus_one.png"))

    turn = latest_turn(ui_store, "ed")
    assert turn is not None and turn.question == QUESTION and len(turn.steps) == taken
    reviews = {st.index: ui_store.reviews_for_step(st.id, kind=ReviewKind.editor) for st in turn.steps}
    mine = reviews[1][0]
    assert (mine.rating, mine.correction, mine.source) == (-1, MARKUP, ReviewSource.human)
    assert [t.value for t in mine.fault_tags] == ["faulty_logic"]
    assert [r[0].source for i, r in reviews.items() if i > 1] == [ReviewSource.inferred] * (taken - 2)
    assert reviews[0] == []

    step2.locator('[data-testid="rate-0"]').click()                 # change it: updated, not duplicated
    step2.locator('[data-testid="save-review"]').click()
    page.locator('[data-testid="editor-recorded"]', has_text="Recorded 0").first.wait_for(timeout=20_000)
    now = ui_store.reviews_for_step(turn.steps[1].id, kind=ReviewKind.editor)
    assert [(r.rating, r.source) for r in now] == [(0, ReviewSource.human)]
    assert ui_store.reviews_for_step(turn.steps[2].id, kind=ReviewKind.editor) == []

    page.reload()                                                   # reopen the thread from history
    page.wait_for_selector("#chat-input", timeout=30_000)
    page.locator(f'#thread-history a[href="/thread/{turn.conversation_id}"]').click()
    page.locator('[data-testid="editor-recorded"]', has_text="Recorded 0").first.wait_for(timeout=30_000)
    page.locator('[data-testid="editor-controls"]').nth(taken - 1).wait_for(timeout=30_000)   # JSX loads async
    assert page.locator('[data-testid="editor-controls"]').count() == taken
    assert page.locator(".element-link").count() >= 3
    page.screenshot(path=str(ARTIFACTS / "04_thread_reopened.png"))
    page.close()


def test_reader_gets_thumbs_but_no_editor_controls(browser, ui_server, ui_store):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    login(page, ui_server, "rita")
    pick_profile(page, "Sherlock Holmes", "Pray take a seat")
    # the test library holds one of Holmes's four books: the chat says so and names the fix
    page.get_by_text("Some of my books are not in the library yet").first.wait_for(timeout=20_000)
    assert page.get_by_text("bookbot books sync --from").count() >= 1
    ask(page, "What did Holmes say about his own knowledge of literature?")
    thumbs = page.locator('[data-testid="reader-controls"]')
    thumbs.nth(4).wait_for(timeout=90_000)
    assert page.locator('[data-testid="editor-controls"]').count() == 0
    assert page.locator('[data-testid="rate--1"]').count() == 0
    thumbs.nth(0).locator('[data-testid="thumb-up"]').click()
    page.locator('[data-testid="reader-recorded"]').first.wait_for(timeout=20_000)
    page.screenshot(path=str(ARTIFACTS / "05_reader_view.png"))
    turn = latest_turn(ui_store, "rita")
    got = ui_store.reviews_for_step(turn.steps[0].id)
    assert [(r.kind, r.rating, r.reviewer) for r in got] == [(ReviewKind.reader, 1, "rita")]
    page.click("#chat-profiles")
    assert page.locator('[data-test="select-item:Review desk"]').count() == 0   # desk is for editors
    page.keyboard.press("Escape")
    page.close()


def test_bad_input_gets_a_plain_answer(browser, ui_server):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    login(page, ui_server, "lab")
    pick_profile(page, "Sherlock Holmes", "Pray take a seat")
    ask(page, "x" * 20_000)
    page.get_by_text("the limit is").first.wait_for(timeout=20_000)
    ask(page, "셜록 홈즈는 왓슨이 아프가니스탄에 다녀온 것을 어떻게 알았나요?")
    page.get_by_text("this character's book is in English").first.wait_for(timeout=20_000)
    page.locator('[data-testid="editor-controls"]').nth(4).wait_for(timeout=90_000)   # still answered
    page.get_by_text("the limit is").first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "06_bad_input.png"))
    page.close()


def test_review_desk_shows_queued_turns_with_progress_and_skip(browser, ui_server, ui_store):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    login(page, ui_server, "ed")
    pick_profile(page, "Review desk", "steps reviewed")
    page.get_by_text("Progress (all characters)").first.wait_for(timeout=30_000)
    page.locator('[data-testid="editor-controls"]').nth(4).wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "07_review_desk.png"))
    first = page.locator("blockquote").last.inner_text()
    page.get_by_role("button", name="Next turn").last.click()          # not rated yet: it says so
    page.get_by_text("still has steps you have not rated").first.wait_for(timeout=20_000)
    page.get_by_role("button", name="Skip this turn").last.click()
    page.wait_for_function("(q) => [...document.querySelectorAll('blockquote')].pop()?.innerText !== q",
                           arg=first, timeout=30_000)
    page.get_by_role("button", name="Sherlock Holmes", exact=True).last.click()   # filter by character
    page.get_by_text("Progress (Sherlock Holmes)").first.wait_for(timeout=30_000)
    page.close()


def test_korean_readers_get_the_korean_login_and_welcome_page(browser, ui_server):
    context = browser.new_context(locale="ko-KR")
    page = context.new_page()
    page.goto(ui_server + "/")
    page.get_by_text("사용자 이름").first.wait_for(timeout=20_000)
    page.fill("#email", "rita")
    page.fill("#password", USERS["rita"][1])
    page.click("button[type=submit]")
    page.wait_for_selector("#chat-input", timeout=30_000)
    settings = page.request.get(ui_server + "/project/settings?language=ko-KR").json()
    assert settings["markdown"].startswith("# Bookbot — 책 속 인물에게")
    context.close()
