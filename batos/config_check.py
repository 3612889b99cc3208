"""``[mind]`` and ``[inquiry]`` of config.toml, checked before ``batos up`` starts anything.

The supervisor hands both tables to its incarnations as JSON (``BATOS_MIND_CONFIG``,
``BATOS_INQUIRY_CONFIG``), where ``batos.root.mind`` and ``batos.root.inquiry`` read
them; a wrong key or type used to surface only there, in an incarnation's log, when
the mind or the loop was first built. ``problems(mind, inquiry)`` checks them with the
models that read them: ``weaver.config.MindConfig`` for the chat backend's keys,
``crucible.policy.Policy`` for ``policy``, and the models below for the rest (their
keys are pinned to ``batos.root.mind.MIND_KEYS``, ``weaver.inquiry.InquiryConfig`` and
``batos.root.inquiry.TRAINER_KEYS`` by tests). Each problem is one line naming the
table, the key and what is wrong: ``[inquiry] max_step: not a key of [inquiry] (did you
mean max_steps?)``.

``batos up`` runs the check in a child process (``python -m batos.config_check``, the
tables as JSON on stdin, the problems as a JSON list on stdout), because the
supervisor's own process loads neither the image's layers nor the crucible, which
imports them.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["InquiryTable", "MindOptions", "problems"]


class MindOptions(BaseModel):
    """``[mind]``'s keys beyond the chat backend's (``batos.root.mind.MIND_KEYS``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    attempts: int = Field(default=2, ge=1)
    max_tokens: int = Field(default=1024, ge=1)
    policy: dict[str, Any] = Field(default_factory=dict)  # checked as crucible's Policy
    facet: str = "code_generation"
    max_loras: int = Field(default=1, ge=1)
    max_lora_rank: int = Field(default=16, ge=1)


class InquiryTable(BaseModel):
    """``[inquiry]``: the loop's knobs (``weaver.inquiry.InquiryConfig``), how often it
    checks (``interval``), the trainer's (``batos.root.inquiry.TRAINER_KEYS``), and what
    the supervisor fills in from ``[vllm]`` when it runs the server."""

    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool = True
    idle_seconds: float = Field(default=600.0, ge=0)
    threshold: float = Field(default=0.5, ge=0)
    min_interval: float = Field(default=3600.0, ge=0)
    max_steps: int = Field(default=20, ge=0)
    budget_seconds: float = Field(default=1800.0, gt=0)
    facet: str = "persona response"
    entropy_target: str = "weaver"
    templates: Literal["missing", "all", "none"] = "missing"
    interval: float = Field(default=30.0, gt=0)
    rank: int = Field(default=8, ge=1)
    lr: float = Field(default=2e-4, gt=0)
    max_length: int = Field(default=512, ge=1)
    batch_size: int = Field(default=2, ge=1)
    qlora: bool = False
    eval_max_new_tokens: int = Field(default=48, ge=1)
    eval_limit: int | None = Field(default=8, ge=1)
    base_model: str | None = None
    vllm_url: str | None = None
    max_loras: int | None = Field(default=None, ge=1)
    max_lora_rank: int | None = Field(default=None, ge=1)
    home: str | None = None


def problems(mind: Mapping[str, Any], inquiry: Mapping[str, Any]) -> list[str]:
    """Every problem of the two tables, one line each; [] when both are fine."""
    return _mind(dict(mind)) + _check("inquiry", InquiryTable, dict(inquiry))


def _mind(table: dict[str, Any]) -> list[str]:
    from crucible.policy import Policy
    from weaver.config import MindConfig

    backend_keys = set(MindConfig.model_fields)
    options = {k: v for k, v in table.items() if k not in backend_keys}
    backend = {k: v for k, v in table.items() if k in backend_keys}
    found = _check("mind", MindOptions, options, also=backend_keys)
    if backend:  # none: the backend comes from BATOS_MIND_* (or [vllm])
        found += _check("mind", MindConfig, backend)
    if isinstance(options.get("policy"), dict):
        found += _check("mind", Policy, options["policy"], prefix="policy.")
    return found


def _check(table: str, model: type[BaseModel], data: dict[str, Any], *, prefix: str = "",
           also: set[str] | frozenset[str] = frozenset()) -> list[str]:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        known = sorted(set(model.model_fields) | set(also))
        return [_line(table, prefix, err, known) for err in exc.errors()]
    return []


def _line(table: str, prefix: str, err: Any, known: list[str]) -> str:
    where = prefix + ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        inside = where.rpartition(".")[0]
        close = [] if inside else difflib.get_close_matches(where, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"[{table}] {where}: not a key of [{table}]{' ' + inside if inside else ''}{hint}"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] != "missing" and err["loc"] and not isinstance(err.get("input"), dict):
        message += f", got {err.get('input')!r}"
    return f"[{table}] {where}: {message}" if where else f"[{table}]: {message}"


def main() -> int:
    """The child's end: ``{"mind": {...}, "inquiry": {...}}`` on stdin, the problems out."""
    tables = json.load(sys.stdin)
    print(json.dumps(problems(tables.get("mind") or {}, tables.get("inquiry") or {})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
