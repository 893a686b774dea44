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
        if not body.get("stream"):     # a whole completion: one choice per reply in ``chunks``
            replies = chunks if body.get("n", 1) > 1 else chunks[:1]
            payload = json.dumps({"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
                                  "choices": [{"index": i, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": text}}
                                              for i, text in enumerate(replies)]}).encode()
            self.send_response(200)
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


@pytest.mark.parametrize("candidates", [1, 3])
def test_server_refusing_json_schema_falls_back_to_plain_parsing(fake_server, holmes, retriever, candidates):
    def reply(body):
        if body.get("response_format"):
            return 400, "response_format is not supported"
        if body.get("n", 1) > 1:
            return 400, "n must be 1"
        return 200, _pieces('As [E1] shows, "I perceive" it. And [E2] "invented words" too.')
    srv, url = fake_server(reply)
    backend = OpenAIBackend(model="m", base_url=url, max_retries=0)
    turn = Engine(retriever, backend, candidates=candidates).answer(holmes, "Afghanistan?")
    assert backend.structured_output is False
    assert not any("response_format" in r for r in srv.requests[1:])
    first = turn.steps[0]                 # validated all the same: the invented quote is caught
    assert first.origin == "model" and len(first.candidates) == candidates
    assert [(c.quote, c.valid) for c in first.citations] == [("I perceive", True), ("invented words", False)]
    assert first.citations[1].problem == "quote not in excerpt"
    for step in turn.steps:
        assert all(not c.valid for cand in step.candidates for c in cand.citations if c.quote == "invented words")


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
    assert {s.origin for s in turn.steps} == {"fallback"}
    assert all(c.features["from_model"] == 0.0 for s in turn.steps for c in s.candidates)


def test_ui_and_cli_say_which_steps_the_model_wrote(fake_server, holmes, retriever):
    from rich.console import Console

    from app.bots.render import render_step
    from app.ui.present import step_markdown

    calls = {"n": 0}

    def reply(body):          # the first step comes from the model, then the server breaks
        calls["n"] += 1
        return _constrained_reply(body) if calls["n"] == 1 else (200, ["{{{{"])
    srv, url = fake_server(reply)
    turn = Engine(retriever, OpenAIBackend(model="m", base_url=url, max_retries=0), candidates=1).answer(
        holmes, "Was Watson in Afghanistan?")
    assert [s.origin for s in turn.steps] == ["model", "fallback", "fallback"]
    console = Console(record=True, width=200)
    for step in turn.steps:
        render_step(console, step, len(turn.steps))
    printed = console.export_text()
    assert printed.count("OFFLINE FALLBACK") == 2 and printed.count("model · retrieval") == 1
    assert "Written by the language model." in step_markdown(turn.steps[0], [])
    assert "Offline fallback" in step_markdown(turn.steps[1], [])


@pytest.mark.parametrize("chunks", [["RAW:data: {not json\n\n"], ["{{{{", "]]"], []])
def test_garbage_falls_back_offline(fake_server, holmes, retriever, chunks):
    srv, url = fake_server(lambda body: (200, chunks))
    events = list(Engine(retriever, OpenAIBackend(model="m", base_url=url, max_retries=0)).run(holmes, "q?"))
    assert sum(isinstance(e, Notice) for e in events) == 1
    assert events[-1].turn.backend.startswith("extractive")


def test_make_backend_offline_by_default(settings):
    backend = make_backend(settings)
    assert backend.offline and backend.name == "extractive"


def _constrained_reply(body):
    """Like a grammar-following server: the first excerpt and first sentence the schema allows."""
    if not body.get("response_format"):
        return 200, _pieces("Elementary.")
    items = body["response_format"]["json_schema"]["schema"]["properties"]["citations"]["items"]
    options = items.get("anyOf", [items])
    replies = []
    for k in range(max(body.get("n", 1), 1) if not body.get("stream") else 1):
        option = options[k % len(options)]["properties"]
        step = {"citations": [{"excerpt_id": option["excerpt_id"]["enum"][0],
                               "quote": option["quote"]["enum"][0]}], "text": f"Step {k}."}
        replies.append(json.dumps(step))
    return 200, (_pieces(replies[0]) if body.get("stream") else replies)


def test_constrained_schema_lists_excerpts_and_their_sentences(fake_server, holmes, retriever):
    srv, url = fake_server(_constrained_reply)
    backend = OpenAIBackend(model="m", base_url=url, max_retries=0)
    turn = Engine(retriever, backend, candidates=1, top_k=3).answer(holmes, "Was Watson in Afghanistan?")
    first = srv.requests[0]
    schema = first["response_format"]["json_schema"]["schema"]
    cits = schema["properties"]["citations"]
    assert cits["minItems"] == 1 and schema["properties"]["text"] == {"type": "string"}
    options = cits["items"]["anyOf"]
    shown = first["messages"][1]["content"]
    step0 = turn.steps[0]
    assert [o["properties"]["excerpt_id"]["enum"] for o in options] == [["E1"], ["E2"], ["E3"]]
    for option, excerpt in zip(options, retriever.retrieve("x", top_k=99)):
        quotes = option["properties"]["quote"]["enum"]
        assert quotes and all(q in shown for q in quotes)
    assert step0.excerpts[0].text.startswith(options[0]["properties"]["quote"]["enum"][0])
    assert all(s.grounded and all(c.valid for c in s.citations) and s.origin == "model" for s in turn.steps)


@pytest.mark.parametrize("accepts_n", [True, False])
def test_best_of_n_asks_for_n_or_parallel_requests(fake_server, holmes, retriever, accepts_n):
    def reply(body):
        if body.get("n", 1) > 1 and not accepts_n:
            return 400, "Field 'n': Value must be between 1 <= value <= 1"
        return _constrained_reply(body)
    srv, url = fake_server(reply)
    backend = OpenAIBackend(model="m", base_url=url, max_retries=0)
    turn = Engine(retriever, backend, candidates=4, top_k=3).answer(holmes, "Was Watson in Afghanistan?")
    step_requests = [r for r in srv.requests if r.get("response_format")]
    streamed = [r for r in step_requests if r["stream"]]
    assert len(streamed) == len(holmes.procedure)          # the first candidate of each step streams
    assert all(r["temperature"] == backend.temperature for r in streamed)
    extra = [r for r in step_requests if not r["stream"]]
    assert all(r["temperature"] == backend.candidate_temperature for r in extra)
    if accepts_n:
        assert backend.use_n and [r.get("n") for r in extra] == [3] * len(holmes.procedure)
    else:
        assert not backend.use_n
        assert sum(r.get("n", 1) == 1 for r in extra) == 3 * len(holmes.procedure)
    for step in turn.steps:
        assert len(step.candidates) == 4 and sum(c.chosen for c in step.candidates) == 1
        assert {c.text for c in step.candidates} == ({"Step 0.", "Step 1.", "Step 2."} if accepts_n
                                                     else {"Step 0."})
        assert all(c.features["from_model"] == 1.0 for c in step.candidates)


def test_exemplars_are_in_the_step_prompt(fake_server, holmes, retriever):
    from app.domain import Exemplar

    class Source:
        def exemplars(self, character_id, step_name, question, k=2):
            return [Exemplar(character_id, step_name, "How did you know I was a soldier?",
                             f"For {step_name}: the tan and the stiff left arm say Afghanistan.")]
    srv, url = fake_server(_constrained_reply)
    backend = OpenAIBackend(model="m", base_url=url, max_retries=0)
    Engine(retriever, backend, candidates=1, exemplars=Source()).answer(holmes, "Was Watson in Afghanistan?")
    prompts = [r["messages"][1]["content"] for r in srv.requests if r.get("response_format")]
    assert len(prompts) == len(holmes.procedure)
    for prompt, proc in zip(prompts, holmes.procedure):
        assert f"For {proc.name}: the tan and the stiff left arm say Afghanistan." in prompt
        assert "How did you know I was a soldier?" in prompt
