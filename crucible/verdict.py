"""Verdicts: what each stage found, and what the crucible decided.

A ``StageVerdict`` is one stage's structured answer; ``status`` is

* ``pass``: the stage ran and found nothing wrong;
* ``fail``: the stage ran and rejects the proposal, ``reasons`` say why;
* ``off``: the stage did not run (the policy turned it off, nothing to run it
  against, or an earlier required stage already failed); never a pass;
* ``error``: the stage could not do its job (a reviewer that raised, a worker
  that could not start); for a required stage this rejects too.

``Verdict.approved`` is true when every required stage passed; ``reasons``
gathers the reasons of every required stage that ran and did not pass,
prefixed with the stage's name. ``to_plain()`` is the JSON-able form kept in
image records and printed by the CLI.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["Status", "StageVerdict", "Verdict", "decide", "timed"]

Status = Literal["pass", "fail", "off", "error"]


class StageVerdict(BaseModel):
    stage: str
    status: Status
    required: bool
    reasons: list[str] = Field(default_factory=list)
    detail: dict[str, Any] = Field(default_factory=dict)
    elapsed_ms: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def skipped(self) -> bool:
        return bool(self.detail.get("skipped"))


class Verdict(BaseModel):
    approved: bool
    stages: list[StageVerdict]
    reasons: list[str] = Field(default_factory=list)

    def to_plain(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def stage(self, name: str) -> StageVerdict | None:
        return next((s for s in self.stages if s.stage == name), None)


def decide(stages: list[StageVerdict]) -> Verdict:
    """Approved when every required stage passed; reasons of the required ones that did not."""
    approved = all(s.passed for s in stages if s.required)
    reasons = [
        f"{s.stage}: {reason}"
        for s in stages
        if s.required and not s.passed and not s.skipped
        for reason in (s.reasons or [f"status {s.status}"])
    ]
    return Verdict(approved=approved, stages=stages, reasons=reasons)


class _Clock:
    started: float
    elapsed_ms: float = 0.0


@contextmanager
def timed() -> Iterator[_Clock]:
    """``with timed() as t: ...`` then ``t.elapsed_ms``."""
    clock = _Clock()
    clock.started = time.perf_counter()
    try:
        yield clock
    finally:
        clock.elapsed_ms = (time.perf_counter() - clock.started) * 1000
