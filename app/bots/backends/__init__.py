"""LLM backends behind one small interface (see ``base``), and ``make_backend(settings)``.

Offline extractive when no LLM is configured; OpenAI-compatible when
``BOOKBOT_LLM_BASE_URL`` or ``BOOKBOT_LLM_MODEL`` is set.  The ``openai``
package is imported only when that backend is built.
"""

from __future__ import annotations

from typing import Any

from app.bots.backends.base import (AnswerRequest, AnswerText, Backend, BackendError, Delta, Draft,
                                    Drafts, StepRequest)
from app.bots.backends.extractive import ExtractiveBackend
from app.bots.backends.scripted import ScriptedBackend

__all__ = ["AnswerRequest", "AnswerText", "Backend", "BackendError", "Delta", "Draft", "Drafts",
           "ExtractiveBackend", "ScriptedBackend", "StepRequest", "make_backend"]


def make_backend(settings: Any) -> Backend:
    """The backend the settings ask for: OpenAI-compatible if an LLM is configured, else extractive."""
    if getattr(settings, "llm_base_url", None) or getattr(settings, "llm_model", None):
        from app.bots.backends.openai_backend import OpenAIBackend
        return OpenAIBackend.from_settings(settings)
    return ExtractiveBackend()
