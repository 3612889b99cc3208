"""What every mind answers: the ``Answer`` record and the ``ChatBackend`` protocol.

A backend takes OpenAI-style chat messages (``[{"role": ..., "content": ...}]``)
and answers with the text of one completion. When a JSON schema is given, the
answer also carries the parsed JSON value: enforced by the server where it can
(``structured=True``), otherwise extracted from the text (``structured=False``).

This module holds only the shared vocabulary; it does no I/O. Backends are
safe to call from several threads unless their docstring says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from weaver.errors import BadAnswer
from weaver.extract import extract_json, loads_whole

__all__ = ["Answer", "ChatBackend", "check_messages", "parse_with_schema"]


@dataclass(frozen=True)
class Answer:
    """One answer of a mind."""

    text: str
    """The raw text of the first choice."""
    parsed: Any | None
    """The JSON value when a schema was given (structured output or extracted from text)."""
    model: str
    """The model or adapter that answered."""
    structured: bool
    """True when the server enforced the schema (``response_format`` json_schema)."""
    elapsed: float
    """Seconds the request took."""
    usage: dict[str, int] = field(default_factory=dict)
    """``prompt_tokens`` / ``completion_tokens`` when known."""


@runtime_checkable
class ChatBackend(Protocol):
    """A mind: answers chat messages, optionally as JSON matching a schema."""

    model: str

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        schema: dict | None = None,
        schema_name: str = "answer",
        max_tokens: int = 1024,
        temperature: float = 0.0,
        model: str | None = None,
    ) -> Answer: ...

    def close(self) -> None: ...


def check_messages(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Messages as plain ``{"role", "content"}`` dicts; a malformed list is a programming error."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content'")
        out.append({"role": str(message["role"]), "content": message["content"]})
    return out


def parse_with_schema(text: str, schema: dict | None, *, enforced: bool = False) -> Any | None:
    """The JSON value in ``text`` when a schema was asked for, else ``None``.

    Raises ``BadAnswer`` (carrying the text) when a schema was asked for and no
    JSON value can be found. ``enforced``: the server constrained the answer to the
    schema, so the whole text must be the value (a fragment found inside garbage is
    not an answer). Validation against the schema is the caller's job:
    the schema language is the caller's, and a wrong value is best reported
    with the caller's own reasons.
    """
    if schema is None:
        return None
    try:
        return loads_whole(text) if enforced else extract_json(text)
    except BadAnswer as exc:
        raise BadAnswer(f"a JSON answer was asked for, but {exc}", text=text) from None
