"""OpenAI-compatible backend (OpenAI, vLLM, Ollama, llama.cpp servers) via the ``openai`` package.

Base URL, model and key come from settings.  Each step is asked for as JSON-schema
constrained output (``response_format``): with ``constrained`` (the default) the schema
lists the retrieved excerpts' labels and each excerpt's sentences as enums
(``llmformat.step_schema``), so a server that honours schemas cannot cite what was not
retrieved; if a server refuses ``response_format`` the backend stops sending it and relies
on the tolerant parser (the engine validates every citation either way).

Best-of-N: the first candidate streams (the reader watches it arrive); the other N-1 are
sampled at a higher temperature in one request with ``n`` where the server accepts it, else
as parallel requests, and the engine ranks all N with its step scorer.  Timeouts and
retries are the client's.  Connection errors, server errors and unusable output raise
``BackendError`` so the engine can say so and finish the turn offline.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

from app.bots.backends.base import AnswerRequest, AnswerText, BackendError, Delta, Drafts, StepRequest
from app.bots.backends.llmformat import (STEP_SCHEMA, answer_messages, labels_for, parse_step_output,
                                         step_messages, step_schema, stream_view)

log = logging.getLogger(__name__)


class OpenAIBackend:
    offline = False
    streams = True

    def __init__(self, *, model: str, base_url: str | None = None, api_key: str | None = None,
                 timeout_s: float = 60.0, max_retries: int = 2, structured_output: bool = True,
                 constrained: bool = True, max_tokens: int = 300, answer_max_tokens: int = 400,
                 temperature: float = 0.3, candidate_temperature: float | None = None,
                 parallel: int = 4, use_n: bool = True, client: Any = None):
        import openai

        self._openai = openai
        self.model = model
        self.base_url = base_url
        self.client = client or openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed",
                                              timeout=timeout_s, max_retries=max_retries)
        self.structured_output = structured_output   # turned off if the server refuses response_format
        self.constrained = constrained               # excerpt ids and quotes as enums in the schema
        self.max_tokens = max_tokens
        self.answer_max_tokens = answer_max_tokens
        self.temperature = temperature
        self.candidate_temperature = (candidate_temperature if candidate_temperature is not None
                                      else min(1.0, temperature + 0.5))
        self.parallel = max(1, parallel)
        self.use_n = use_n                           # turned off if the server refuses n > 1
        self.name = f"openai:{model}"

    @classmethod
    def from_settings(cls, settings: Any) -> "OpenAIBackend":
        return cls(model=settings.llm_model or "default", base_url=settings.llm_base_url,
                   api_key=settings.llm_api_key, timeout_s=settings.llm_timeout_s,
                   max_retries=settings.llm_max_retries,
                   max_tokens=getattr(settings, "llm_max_tokens", 300))

    # ------------------------------------------------------------ transport

    def _create(self, messages: list[dict[str, str]], *, stream: bool, schema: dict | None,
                max_tokens: int, temperature: float, n: int = 1):
        kwargs: dict[str, Any] = dict(model=self.model, messages=messages, stream=stream,
                                      max_tokens=max_tokens, temperature=temperature)
        if n > 1:
            kwargs["n"] = n
        if schema is not None and self.structured_output:
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "step", "schema": schema, "strict": True}}
        try:
            return self.client.chat.completions.create(**kwargs)
        except self._openai.BadRequestError as exc:
            if n > 1:
                raise                      # the caller asks again one candidate per request
            if "response_format" in kwargs:
                # the server does not do JSON schema: stop asking, rely on the tolerant parser
                log.warning("%s refused response_format (%s); parsing free output from now on",
                            self.base_url or "the server", str(exc)[:120])
                self.structured_output = False
                kwargs.pop("response_format")
                try:
                    return self.client.chat.completions.create(**kwargs)
                except self._openai.APIError as exc2:
                    raise BackendError(_describe(exc2, self.base_url)) from exc2
            raise BackendError(_describe(exc, self.base_url)) from exc
        except self._openai.APIError as exc:
            raise BackendError(_describe(exc, self.base_url)) from exc

    def _stream_text(self, messages: list[dict[str, str]], *, schema: dict | None, max_tokens: int,
                     temperature: float) -> Iterator[str]:
        stream = self._create(messages, stream=True, schema=schema, max_tokens=max_tokens,
                              temperature=temperature)
        try:
            for chunk in stream:
                choices = getattr(chunk, "choices", None) or []
                if not choices:
                    continue
                delta = getattr(choices[0], "delta", None)
                text = getattr(delta, "content", None) if delta is not None else None
                if text:
                    yield text
        except self._openai.APIError as exc:
            raise BackendError(_describe(exc, self.base_url)) from exc
        except (ValueError, KeyError, TypeError) as exc:   # malformed stream
            raise BackendError(f"the server sent a malformed stream ({exc})") from exc

    def _complete(self, messages: list[dict[str, str]], *, schema: dict | None, temperature: float,
                  n: int = 1) -> list[str]:
        """``n`` whole replies of one non-streamed request."""
        response = self._create(messages, stream=False, schema=schema, max_tokens=self.max_tokens,
                                temperature=temperature, n=n)
        out = []
        for choice in getattr(response, "choices", None) or []:
            message = getattr(choice, "message", None)
            out.append(getattr(message, "content", None) or "")
        return out

    def _more_candidates(self, messages: list[dict[str, str]], schema: dict | None, count: int) -> list[str]:
        """``count`` further samples: one request with ``n`` if the server takes it, else in parallel."""
        if count <= 0:
            return []
        texts: list[str] = []
        if self.use_n and count > 1:
            try:
                texts = self._complete(messages, schema=schema, temperature=self.candidate_temperature,
                                       n=count)[:count]
            except self._openai.BadRequestError as exc:
                log.info("%s refused n=%d (%s); sampling candidates as separate requests",
                         self.base_url or "the server", count, str(exc)[:120])
                self.use_n = False
            except self._openai.APIError as exc:
                raise BackendError(_describe(exc, self.base_url)) from exc
        missing = count - len(texts)
        if missing <= 0:
            return texts

        def one(_: int) -> str:
            try:
                replies = self._complete(messages, schema=schema, temperature=self.candidate_temperature)
            except BackendError as exc:        # one lost sample must not lose the step
                log.warning("a candidate request failed: %s", exc)
                return ""
            return replies[0] if replies else ""

        with ThreadPoolExecutor(max_workers=min(self.parallel, missing)) as pool:
            texts += list(pool.map(one, range(missing)))
        return texts

    # ------------------------------------------------------------ interface

    def step(self, request: StepRequest) -> Iterator[Delta | Drafts]:
        labels = labels_for(request.excerpts)
        schema = step_schema(request.excerpts, self.constrained) if self.structured_output else None
        constrained = schema is not None and schema is not STEP_SCHEMA
        messages = step_messages(request, self.structured_output, constrained=constrained)
        n = max(request.n, 1)
        buffer = shown = ""
        extra = None
        with ThreadPoolExecutor(max_workers=1) as starter:
            for piece in self._stream_text(messages, schema=schema, max_tokens=self.max_tokens,
                                           temperature=self.temperature):
                if extra is None and n > 1:    # the first candidate has the server: ask for the rest
                    schema_now = schema if self.structured_output else None
                    extra = starter.submit(self._more_candidates, messages, schema_now, n - 1)
                buffer += piece
                visible = stream_view(buffer)
                if visible is None and not buffer.lstrip().startswith(("{", "`")):
                    visible = buffer
                if visible and len(visible) > len(shown) and visible.startswith(shown):
                    yield Delta(visible[len(shown):])
                    shown = visible
            if extra is None and n > 1:
                extra = starter.submit(self._more_candidates, messages,
                                       schema if self.structured_output else None, n - 1)
            raw_outputs = [buffer] + (extra.result() if extra is not None else [])
        drafts = [d for d in (parse_step_output(raw, labels) for raw in raw_outputs) if d is not None]
        if not drafts:
            sample = (raw_outputs[0] if raw_outputs else "")[:120]
            raise BackendError(f"the model's output could not be read as a step (got {sample!r})")
        yield Drafts(drafts)

    def answer(self, request: AnswerRequest) -> Iterator[Delta | AnswerText]:
        parts: list[str] = []
        for piece in self._stream_text(answer_messages(request), schema=None,
                                       max_tokens=self.answer_max_tokens, temperature=self.temperature):
            parts.append(piece)
            yield Delta(piece)
        text = "".join(parts).strip()
        if not text:
            raise BackendError("the model returned an empty answer")
        yield AnswerText(text)


def _describe(exc: Exception, base_url: str | None) -> str:
    where = base_url or "the OpenAI API"
    name = type(exc).__name__
    if name in ("APIConnectionError", "APITimeoutError"):
        return f"cannot reach {where} ({name}); is the server running? check BOOKBOT_LLM_BASE_URL"
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        return f"{where} refused the key (HTTP {status}); set OPENAI_API_KEY"
    if status == 404:
        return f"{where} does not know this model or path (HTTP 404); check BOOKBOT_LLM_MODEL"
    return f"{where} failed: {name}{f' HTTP {status}' if status else ''}: {str(exc)[:200]}"
