"""A real Bookbot web server for the UI tests, and a real Chromium to drive it.

Session fixtures: a tmp data dir with a small real library (the opening
chapters of *A Study in Scarlet* from ../shared, embedded with the real MiniLM
model — ``BOOKBOT_TEST_MODEL_DIR``, default ``~/.cache/bookbot/models/all-MiniLM-L6-v2``),
accounts for an editor, a reader and a lab member, then ``bookbot serve`` on a
free loopback port with the offline backend; Debian's chromium through
Playwright.  Screenshots go to ``tests/ui/artifacts/``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Iterator

import pytest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
USERS = {"ed": ("editor", "editor-password"), "rita": ("reader", "reader-password"),
         "lab": ("lab", "lab-password")}
sys.path.insert(0, str(Path(__file__).resolve().parent))   # chat_client, server_harness

from server_harness import prepare_data, start_server, stop_server  # noqa: E402




@pytest.fixture(scope="session")
def ui_settings(tmp_path_factory: pytest.TempPathFactory, model_dir: Path, shared_dir: Path):
    return prepare_data(tmp_path_factory.mktemp("ui"), model_dir,
                        shared_dir / "books" / "study_in_scarlet_244.txt", USERS, chapters=1)


@pytest.fixture(scope="session")
def ui_server(ui_settings) -> Iterator[str]:
    ARTIFACTS.mkdir(exist_ok=True)
    proc, url = start_server(ui_settings, ui_settings.data_dir / "server.log")
    try:
        yield url
    finally:
        stop_server(proc)
        shutil.copy(ui_settings.data_dir / "server.log", ARTIFACTS / "server.log")


@pytest.fixture(scope="session")
def ui_store(ui_settings):
    from app.review.store import ReviewStore

    store = ReviewStore(ui_settings.resolved_database_url)
    yield store
    store.close()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
