"""OpenAIBackend against small loopback HTTP servers: streaming, schema refusal, server down, garbage."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.bots.backends import make_backend
from app.bots.backends.openai_backend import OpenAIBackend
from app.bots.engine import Engine, Notice, StepDelta


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        status, chunks = self.server.reply(body)
        if status != 200:
            payload = json.dumps({"error": {"message": chunks, "type": "invalid_request_error"}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in chunks:
            if piece.startswith("RAW:"):
                self.wfile.write(piece[4:].encode())
                continue
            event = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture()
def fake_server():
    servers = []

    def start(reply):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        srv.reply = reply
        srv.requests = []
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv, f"http://127.0.0.1:{srv.server_address[1]}/v1"
    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _pieces(text, n=7):
    return [text[i:i + n] for i in range(0, len(text), n)]


def test_streams_json_steps_and_validates(fake_server, holmes, retriever):
    def reply(body):
        if body.get("response_format"):
            step = {"citations": [{"excerpt_id": "E1", "quote": "You have been in Afghanistan"},
                                  {"excerpt_id": "E9", "quote": "invented"}],
                    "text": "You have been in Afghanistan, I perceive."}
            return 200, _pieces(json.dumps(step))
        return 200, _pieces("Elementary, my dear fellow.")
    srv, url = fake_server(reply)
    backend = OpenAIBackend(model="m", base_url=url, api_key="k", max_retries=0)
    assert not backend.offline and backend.name == "openai:m"
    events = list(Engine(retriever, backend, candidates=1).run(holmes, "Was Watson in Afghanistan?"))
    deltas = "".join(e.text for e in events if isinstance(e, StepDelta) and e.index == 0)
    assert deltas == "\u201cYou have been in Afghanistan\u201d \u201cinvented\u201d\nYou have been in Afghanistan, I perceive."
    turn = events[-1].turn
    obs = turn.steps[0]
    assert obs.grounded and [c.valid for c in obs.citations] == [True, False]
    assert obs.citations[1].excerpt_id == "E9" and obs.citations[1].problem.startswith("unknown excerpt")
    assert turn.answer == "Elementary, my dear fellow." and turn.backend == "openai:m"
    assert srv.requests[0]["stream"] is True and srv.requests[0]["response_format"]["type"] == "json_schema"


def test_server_refusing_json_schema_falls_back_to_plain_parsing(fake_server, holmes, retriever):
    def reply(body):
        if body.get("response_format"):
            return 400, "response_format is not supported"
        return 200, _pieces('As [E1] shows, "I perceive" it.')
    srv, url = fake_server(reply)
    backend = OpenAIBackend(model="m", base_url=url, max_retries=0)
    turn = Engine(retriever, backend, candidates=1).answer(holmes, "Afghanistan?")
    assert backend.structured_output is False
    assert turn.steps[0].grounded and turn.steps[0].citations[0].quote == "I perceive"
    assert not any("response_format" in r for r in srv.requests[1:])


def test_server_down_falls_back_offline(holmes, retriever, settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.llm_base_url = f"http://127.0.0.1:{port}/v1"
    settings.llm_model = "m"
    settings.llm_max_retries = 0
    settings.llm_timeout_s = 5
    backend = make_backend(settings)
    assert isinstance(backend, OpenAIBackend)
    events = list(Engine(retriever, backend).run(holmes, "Afghanistan?"))
    notices = [e for e in events if isinstance(e, Notice)]
    assert len(notices) == 1 and "cannot reach" in notices[0].message and "OFFLINE MODE" in notices[0].message
    turn = events[-1].turn
    assert turn.backend.startswith("extractive (fallback") and all(s.grounded for s in turn.steps)


@pytest.mark.parametrize("chunks", [["RAW:data: {not json\n\n"], ["{{{{", "]]"], []])
def test_garbage_falls_back_offline(fake_server, holmes, retriever, chunks):
    srv, url = fake_server(lambda body: (200, chunks))
    events = list(Engine(retriever, OpenAIBackend(model="m", base_url=url, max_retries=0)).run(holmes, "q?"))
    assert sum(isinstance(e, Notice) for e in events) == 1
    assert events[-1].turn.backend.startswith("extractive")


def test_make_backend_offline_by_default(settings):
    backend = make_backend(settings)
    assert backend.offline and backend.name == "extractive"
