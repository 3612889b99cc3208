"""What the mind proposes: one function's source, or a list of autopoietic_acts.

``Proposal`` is the answer the mind gives to a doesNotUnderstand: prompt and
what the crucible judges. ``proposal_schema()`` is the JSON schema handed to an
OpenAI-compatible server as ``response_format`` so that the answer parses; it
is kept flat (no ``$defs``) because structured-output engines handle flat
schemas best. ``coerce`` turns what callers hand the crucible (a model, a
dict, or a bare function source) into a ``Proposal``.

This module knows nothing of the image; acts are validated against
``uvm.acts``' schema by the static stage, not here.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InvalidProposal

__all__ = ["MAX_SOURCE", "MAX_THOUGHT", "Proposal", "coerce", "proposal_schema"]

MAX_THOUGHT = 4000
MAX_SOURCE = 64_000


class Proposal(BaseModel):
    """The mind's answer: its reasoning plus exactly one of ``source`` or ``acts``."""

    model_config = ConfigDict(extra="forbid")

    thought: str = Field(default="", max_length=MAX_THOUGHT)
    source: str | None = Field(default=None, max_length=MAX_SOURCE)
    acts: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Proposal:
        if (self.source is None) == (self.acts is None):
            raise ValueError(
                "a proposal holds exactly one of 'source' (one Python function) or 'acts' "
                "(a list of autopoietic_acts)"
            )
        if self.source is not None and not self.source.strip():
            raise ValueError("'source' is empty")
        return self

    @property
    def kind(self) -> str:
        return "source" if self.source is not None else "acts"


def proposal_schema() -> dict[str, Any]:
    """The JSON schema for ``response_format``: an object with thought, source, acts."""
    return {
        "type": "object",
        "properties": {
            "thought": {
                "type": "string",
                "maxLength": MAX_THOUGHT,
                "description": "your reasoning, briefly",
            },
            "source": {
                "type": ["string", "null"],
                "description": "Python source of ONE function implementing the missing "
                               "selector; its first parameter is the receiver (self)",
            },
            "acts": {
                "type": ["array", "null"],
                "items": {"type": "object"},
                "description": "instead of source: a list of autopoietic_acts",
            },
        },
        "required": ["thought", "source", "acts"],
        "additionalProperties": False,
    }


def coerce(value: Proposal | dict[str, Any] | str) -> Proposal:
    """A ``Proposal`` from a model, a dict, JSON text of one, or a bare function source."""
    if isinstance(value, Proposal):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise InvalidProposal(f"the proposal looks like JSON but does not parse: {exc}") from exc
        else:
            value = {"source": value}
    if not isinstance(value, dict):
        raise InvalidProposal(
            f"a proposal is a dict with 'source' or 'acts' (or a function's source), got "
            f"{type(value).__name__}"
        )
    try:
        return Proposal.model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "proposal"
        raise InvalidProposal(f"{where}: {err['msg']}") from None
