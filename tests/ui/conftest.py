"""A real Bookbot web server for the UI tests, and a real Chromium to drive it.

Session fixtures: a tmp data dir with a small real library (the opening
chapters of *A Study in Scarlet* from ../shared, embedded with the real MiniLM
model — ``BOOKBOT_TEST_MODEL_DIR``, default ``~/.cache/bookbot/models/all-MiniLM-L6-v2``),
accounts for an editor, a reader and a lab member, then ``bookbot serve`` on a
free loopback port with the offline backend; Debian's chromium through
Playwright.  Screenshots go to ``tests/ui/artifacts/``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
USERS = {"ed": ("editor", "editor-password"), "rita": ("reader", "reader-password"),
         "lab": ("lab", "lab-password")}
sys.path.insert(0, str(Path(__file__).resolve().parent))   # chat_client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def book_opening(path: Path, chapters: int) -> bytes:
    """A real Gutenberg file cut to its header, first ``chapters`` chapters and footer."""
    text = path.read_bytes().decode("latin-1")          # byte-preserving; markers are ASCII
    start = re.search(r"\*\*\* START OF.*\n", text).end()
    end = re.search(r"\*\*\* END OF", text).start()
    heads = [m.start() for m in re.finditer(r"(?m)^\s*CHAPTER [IVX]+\.", text[start:end])]
    body_end = start + heads[chapters] if len(heads) > chapters else end
    return (text[:body_end] + "\n\n" + text[end:]).encode("latin-1")


@pytest.fixture(scope="session")
def ui_model_dir() -> Path:
    from app.library.models import fetch_model, model_ok

    path = Path(os.environ.get("BOOKBOT_TEST_MODEL_DIR",
                               Path.home() / ".cache" / "bookbot" / "models" / "all-MiniLM-L6-v2"))
    if not model_ok(path):
        fetch_model(path)
    return path


@pytest.fixture(scope="session")
def ui_settings(tmp_path_factory: pytest.TempPathFactory, ui_model_dir: Path, shared_dir: Path):
    from app.library import open_library
    from app.review.db import upgrade
    from app.review.store import ReviewStore
    from app.settings import Settings

    base = tmp_path_factory.mktemp("ui")
    (base / "books").mkdir()
    settings = Settings(data_dir=base / "data", books_dir=base / "books", characters_dir=ROOT / "characters",
                        reviews_dir=base / "reviews", embed_model_dir=ui_model_dir, database_url=None,
                        llm_base_url=None, llm_model=None, chroma_url=None)
    settings.ensure_dirs()
    library = open_library(settings)
    library.add_file(shared_dir / "books" / "study_in_scarlet_244.txt",
                     data=book_opening(shared_dir / "books" / "study_in_scarlet_244.txt", 2))
    library.close()
    upgrade(settings.resolved_database_url)
    store = ReviewStore(settings.resolved_database_url)
    for name, (role, password) in USERS.items():
        store.add_user(name, password, role)
    store.close()
    return settings


def server_env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKBOT_")}
    env.update({"BOOKBOT_DATA_DIR": str(settings.data_dir), "BOOKBOT_BOOKS_DIR": str(settings.books_dir),
                "BOOKBOT_CHARACTERS_DIR": str(settings.characters_dir),
                "BOOKBOT_REVIEWS_DIR": str(settings.reviews_dir),
                "BOOKBOT_EMBED_MODEL_DIR": str(settings.embed_model_dir), "PYTHONUNBUFFERED": "1"})
    env.pop("DATABASE_URL", None)
    env.pop("OPENAI_API_KEY", None)
    return env


def start_server(settings, log_path: Path, timeout: float = 90) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = log_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--no-sync-books", "--port", str(port)],
                            cwd=ROOT, env=server_env(settings), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"server did not answer in {timeout}s:\n{log_path.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


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
