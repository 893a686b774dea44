"""OpenAI-compatible backend (OpenAI, vLLM, Ollama, llama.cpp servers) via the ``openai`` package.

Base URL, model and key come from settings; requests stream; steps are asked
for as JSON-schema constrained output where the server accepts
``response_format`` (if it refuses, the backend stops asking and relies on the
tolerant parser).  Timeouts and retries are the client's.  Connection errors,
server errors and unusable output raise ``BackendError`` so the engine can say
so and finish the turn offline.
"""

from __future__ import annotations

from typing import Any, Iterator

from app.bots.backends.base import (AnswerRequest, AnswerText, BackendError, Delta, Draft, Drafts,
                                    StepRequest)
from app.bots.backends.llmformat import (STEP_SCHEMA, answer_messages, labels_for, parse_step_output,
                                         step_messages, stream_view)


class OpenAIBackend:
    offline = False
    streams = True

    def __init__(self, *, model: str, base_url: str | None = None, api_key: str | None = None,
                 timeout_s: float = 60.0, max_retries: int = 2, structured_output: bool = True,
                 max_tokens: int = 300, answer_max_tokens: int = 400, temperature: float = 0.3,
                 client: Any = None):
        import openai

        self._openai = openai
        self.model = model
        self.base_url = base_url
        self.client = client or openai.OpenAI(base_url=base_url, api_key=api_key or "not-needed",
                                              timeout=timeout_s, max_retries=max_retries)
        self.structured_output = structured_output
        self.max_tokens = max_tokens
        self.answer_max_tokens = answer_max_tokens
        self.temperature = temperature
        self.name = f"openai:{model}"

    @classmethod
    def from_settings(cls, settings: Any) -> "OpenAIBackend":
        return cls(model=settings.llm_model or "default", base_url=settings.llm_base_url,
                   api_key=settings.llm_api_key, timeout_s=settings.llm_timeout_s,
                   max_retries=settings.llm_max_retries,
                   max_tokens=getattr(settings, "llm_max_tokens", 300))

    # ------------------------------------------------------------ transport

    def _create(self, messages: list[dict[str, str]], *, stream: bool, json_mode: bool,
                max_tokens: int, temperature: float):
        kwargs: dict[str, Any] = dict(model=self.model, messages=messages, stream=stream,
                                      max_tokens=max_tokens, temperature=temperature)
        if json_mode and self.structured_output:
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "step", "schema": STEP_SCHEMA, "strict": True}}
        try:
            return self.client.chat.completions.create(**kwargs)
        except self._openai.BadRequestError as exc:
            if "response_format" in kwargs:
                # the server does not do JSON schema: stop asking, rely on the tolerant parser
                self.structured_output = False
                kwargs.pop("response_format")
                try:
                    return self.client.chat.completions.create(**kwargs)
                except self._openai.APIError as exc2:
                    raise BackendError(_describe(exc2, self.base_url)) from exc2
            raise BackendError(_describe(exc, self.base_url)) from exc
        except self._openai.APIError as exc:
            raise BackendError(_describe(exc, self.base_url)) from exc

    def _stream_text(self, messages: list[dict[str, str]], *, json_mode: bool, max_tokens: int,
                     temperature: float) -> Iterator[str]:
        stream = self._create(messages, stream=True, json_mode=json_mode, max_tokens=max_tokens,
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

    # ------------------------------------------------------------ interface

    def step(self, request: StepRequest) -> Iterator[Delta | Drafts]:
        labels = labels_for(request.excerpts)
        drafts: list[Draft] = []
        raw_outputs: list[str] = []
        for i in range(max(request.n, 1)):
            messages = step_messages(request, self.structured_output)
            buffer = ""
            shown = ""
            temperature = self.temperature if i == 0 else min(1.0, self.temperature + 0.5)
            for piece in self._stream_text(messages, json_mode=True, max_tokens=self.max_tokens,
                                           temperature=temperature):
                buffer += piece
                if i:
                    continue
                visible = stream_view(buffer)
                if visible is None and not buffer.lstrip().startswith(("{", "`")):
                    visible = buffer
                if visible and len(visible) > len(shown) and visible.startswith(shown):
                    yield Delta(visible[len(shown):])
                    shown = visible
            raw_outputs.append(buffer)
            draft = parse_step_output(buffer, labels)
            if draft is not None:
                drafts.append(draft)
        if not drafts:
            sample = (raw_outputs[0] if raw_outputs else "")[:120]
            raise BackendError(f"the model's output could not be read as a step (got {sample!r})")
        yield Drafts(drafts)

    def answer(self, request: AnswerRequest) -> Iterator[Delta | AnswerText]:
        parts: list[str] = []
        for piece in self._stream_text(answer_messages(request), json_mode=False,
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
