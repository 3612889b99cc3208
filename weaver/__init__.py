"""The mind's client layer: ask a language model, get an ``Answer``.

Backends share one protocol (``ChatBackend.chat(messages, schema=...)``):
``OpenAIClient`` for an OpenAI-compatible server (vLLM, llama.cpp, Ollama),
``TransformersBackend`` for a local model folder, ``ReplayBackend`` and
``Recorder`` for recorded exchanges. ``mind_from_env`` / ``mind_from_config``
choose one. Boundary: ``weaver`` imports nothing of ``uvm``, ``supervisor``,
``crucible``, ``ui_seed`` or ``batos``; it knows messages, not prompts or images.
torch and transformers are imported only when a ``TransformersBackend`` is built.
"""

from __future__ import annotations

from weaver.chat import Answer, ChatBackend
from weaver.config import MindConfig, mind_from_config, mind_from_env
from weaver.errors import (
    BadAnswer,
    BadMindConfig,
    MindProtocolError,
    MindRejected,
    MindTimeout,
    MindUnavailable,
    NoMind,
    ReplayMiss,
    TransientError,
    WeaverError,
)
from weaver.extract import extract_code, extract_json
from weaver.local import TransformersBackend
from weaver.openai import OpenAIClient
from weaver.replay import Recorder, ReplayBackend, request_key

__all__ = [
    "Answer",
    "BadAnswer",
    "BadMindConfig",
    "ChatBackend",
    "MindConfig",
    "MindProtocolError",
    "MindRejected",
    "MindTimeout",
    "MindUnavailable",
    "NoMind",
    "OpenAIClient",
    "Recorder",
    "ReplayBackend",
    "ReplayMiss",
    "TransformersBackend",
    "TransientError",
    "WeaverError",
    "extract_code",
    "extract_json",
    "mind_from_config",
    "mind_from_env",
    "request_key",
]

