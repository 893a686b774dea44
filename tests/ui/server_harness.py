"""Starting a real Bookbot server for tests and benchmarks: free port, env, wait until it answers.

Also cuts a real Gutenberg book to its opening chapters so a small library
imports quickly with the real embedding model.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


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


def server_env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKBOT_")}
    env.update({"BOOKBOT_DATA_DIR": str(settings.data_dir), "BOOKBOT_BOOKS_DIR": str(settings.books_dir),
                "BOOKBOT_CHARACTERS_DIR": str(settings.characters_dir),
                "BOOKBOT_REVIEWS_DIR": str(settings.reviews_dir),
                "BOOKBOT_EMBED_MODEL_DIR": str(settings.embed_model_dir), "PYTHONUNBUFFERED": "1"})
    if settings.database_url:
        env["BOOKBOT_DATABASE_URL"] = settings.database_url
    if settings.chroma_url:
        env["BOOKBOT_CHROMA_URL"] = settings.chroma_url
    if settings.engine_processes is not None:
        env["BOOKBOT_ENGINE_PROCESSES"] = str(settings.engine_processes)
    env.pop("DATABASE_URL", None)
    env.pop("OPENAI_API_KEY", None)
    return env


def _start(name: str, argv: list[str], log_path: Path, health: str, timeout: float,
           **popen) -> tuple[subprocess.Popen, str]:
    """Run ``argv`` (with ``{port}`` filled in) until ``health`` answers 200; (process, base URL)."""
    port = free_port()
    proc = subprocess.Popen([a.format(port=port) for a in argv], stdout=log_path.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True, **popen)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url + health, timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError(f"{name} did not answer in {timeout}s:\n{log_path.read_text()[-3000:]}")


def start_server(settings, log_path: Path, timeout: float = 90) -> tuple[subprocess.Popen, str]:
    argv = [sys.executable, "-m", "app.cli", "serve", "--no-sync-books", "--port", "{port}"]
    return _start("server", argv, log_path, "/", timeout, cwd=ROOT, env=server_env(settings))


def start_chroma(path: Path, log_path: Path, timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """A real ``chroma run`` server on a free loopback port, answering its heartbeat."""
    argv = ["chroma", "run", "--path", str(path), "--host", "127.0.0.1", "--port", "{port}"]
    return _start("chroma", argv, log_path, "/api/v2/heartbeat", timeout)


def process_parents() -> dict[int, int]:
    """Every running process's parent (pid -> ppid, from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    return parents


def engine_children(pid: int) -> list[int]:
    """The engine processes (multiprocessing spawn children) of a running server."""
    found = []
    for child, parent in process_parents().items():
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if parent == pid and "multiprocessing" in cmdline and "spawn_main" in cmdline:
            found.append(child)
    return found


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def prepare_data(base: Path, model_dir: Path, book: Path | None, users: dict[str, tuple[str, str]],
                 chapters: int = 2, database_url: str | None = None, chroma_url: str | None = None):
    """A data dir with the opening of one real book imported (none when ``book`` is None), the
    database migrated, accounts added (those that do not exist yet)."""
    from app.library import open_library
    from app.review.db import upgrade
    from app.review.store import ReviewStore
    from app.settings import Settings

    import shutil

    (base / "books").mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "characters", base / "characters", dirs_exist_ok=True)   # a lab member may edit
    settings = Settings(data_dir=base / "data", books_dir=base / "books", characters_dir=base / "characters",
                        reviews_dir=base / "reviews", embed_model_dir=model_dir, database_url=database_url,
                        llm_base_url=None, llm_model=None, chroma_url=chroma_url)
    settings.ensure_dirs()
    upgrade(settings.resolved_database_url)
    if book is not None:
        library = open_library(settings)
        library.add_file(book, data=book_opening(book, chapters))
        library.close()
    store = ReviewStore(settings.resolved_database_url)
    existing = {u.name for u in store.list_users()}
    for name, (role, password) in users.items():
        if name not in existing:
            store.add_user(name, password, role)
    store.close()
    return settings
